package main

import (
	"io"
	"sync"
)

// groupWriter hands log lines to one goroutine that writes every line that
// arrived while it was busy in a single write: under load, one syscall
// serves many events' log lines; when idle, a line is written as soon as
// the goroutine wakes. Nothing waits on a timer, so a line is out within
// microseconds; only the lines of that instant are lost if the process is
// killed. Write never fails: output errors are dropped, as a log write to
// a closed stderr would be.
type groupWriter struct {
	out io.Writer

	mu      sync.Mutex
	buf     []byte     // lines waiting for the writer goroutine
	drained *sync.Cond // signalled when buf was taken
	closed  bool
	kick    chan struct{}
	done    chan struct{}
}

// maxPending bounds buf: past it, Write waits for the writer goroutine.
const maxPending = 1 << 20

func newGroupWriter(out io.Writer) *groupWriter {
	w := &groupWriter{out: out, kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.drained = sync.NewCond(&w.mu)
	go w.run()
	return w
}

func (w *groupWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.buf) >= maxPending && !w.closed {
		w.drained.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		<-w.done              // after the last batch,
		_, _ = w.out.Write(p) // write through
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	select {
	case w.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
	w.mu.Unlock()
	return len(p), nil
}

func (w *groupWriter) run() {
	defer close(w.done)
	var spare []byte
	for {
		_, open := <-w.kick
		w.mu.Lock()
		batch := w.buf
		w.buf = spare[:0]
		w.drained.Broadcast()
		w.mu.Unlock()
		if len(batch) > 0 {
			_, _ = w.out.Write(batch)
		}
		spare = batch
		if !open {
			return
		}
	}
}

// Close writes what is pending and stops the writer goroutine; later writes
// go straight to the output.
func (w *groupWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.drained.Broadcast()
	close(w.kick) // under mu: no Write sends on it after this
	w.mu.Unlock()
	<-w.done
	return nil
}
