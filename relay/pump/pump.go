// Package pump provides Writer, a bounded buffer in front of an io.Writer
// that one goroutine empties: a write is copied and returns, and the
// goroutine hands the output everything written while it was busy in a
// single write, in order. Under load one output write serves many writes;
// when idle a write goes out as soon as the goroutine wakes (nothing waits
// on a timer).
//
// The relay uses it twice: to give the in-process connection to the
// embedded NATS server the buffer a socket has (relay/inprocess.go), and to
// batch log lines onto stderr (cmd/relay/logwriter.go).
package pump

import (
	"errors"
	"io"
	"sync"
)

// ErrClosed is returned by Write and Close after Close.
var ErrClosed = errors.New("pump: closed")

// Writer is an io.WriteCloser whose writes go through a bounded buffer to
// an output, written by one goroutine. Its methods may be called
// concurrently; each write reaches the output whole and in the order the
// writes returned.
//
// The first error the output returns is kept: the goroutine stops, what was
// buffered is dropped, and every later Write returns that error. An output
// whose errors should not stop the writer must drop them itself.
type Writer struct {
	out io.Writer
	max int

	mu     sync.Mutex
	space  *sync.Cond // signalled when the goroutine has taken the buffer
	buf    []byte     // written, not yet handed to out
	spare  []byte     // the goroutine's previous buffer, reused
	err    error      // out's write error, for good
	closed bool

	kick chan struct{} // cap 1: there is something to write, or closed
	done chan struct{} // closed when the goroutine has returned
}

// New returns a Writer to out holding at most max bytes before a write
// waits (a single larger write is accepted into an empty buffer), and
// starts its goroutine; Close stops it.
func New(out io.Writer, max int) *Writer {
	w := &Writer{out: out, max: max, kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.space = sync.NewCond(&w.mu)
	go w.pump()
	return w
}

// Write copies p into the buffer, waiting while the buffer is full. It
// returns the output's error once the output has failed, and ErrClosed
// after Close, once everything written before Close has been handed over
// (so a caller may then write to the output directly, in order).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	for w.err == nil && !w.closed && len(w.buf) > 0 && len(w.buf)+len(p) > w.max {
		w.space.Wait()
	}
	switch {
	case w.err != nil:
		err := w.err
		w.mu.Unlock()
		return 0, err
	case w.closed:
		w.mu.Unlock()
		<-w.done
		return 0, ErrClosed
	}
	w.buf = append(w.buf, p...)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
	return len(p), nil
}

// pump hands the buffer to the output until Close has been called and
// everything written before it has been handed over, or a write fails.
func (w *Writer) pump() {
	defer close(w.done)
	for range w.kick {
		for {
			w.mu.Lock()
			if len(w.buf) == 0 {
				closed := w.closed
				w.mu.Unlock()
				if closed {
					return
				}
				break
			}
			out := w.buf
			w.buf, w.spare = w.spare[:0], nil
			w.mu.Unlock()

			_, err := w.out.Write(out)

			w.mu.Lock()
			w.spare = out[:0]
			if err != nil {
				w.err = err
			}
			w.space.Broadcast()
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// Close hands over what was written before it and stops the goroutine; it
// returns the output's error, if a write failed. It waits as long as the
// output takes. Called again, it waits the same and returns ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return ErrClosed
	}
	w.closed = true
	w.space.Broadcast()
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
