package relay

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// batchWriter gathers messages for one stream and publishes them a batch at
// a time, one message per subject, without waiting for the store: a store
// write per subject and batch instead of one per record, and one wake-up of
// the connection's and the server's goroutines per batch instead of one per
// record. What it holds may be lost in a crash, so it carries only what the
// relay can do without (the delivery trail, each object's latest state).
//
// A subject's records either accumulate, a line each (add), or replace one
// another (put: only the latest is stored).
type batchWriter struct {
	nc *nats.Conn

	mu   sync.Mutex
	msgs map[string][]byte // subject -> what to publish
	size int

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// Batches are published every batchEvery, or as soon as batchBytes are
// waiting.
const (
	batchEvery = 50 * time.Millisecond
	batchBytes = 64 << 10
)

func newBatchWriter(nc *nats.Conn) *batchWriter {
	w := &batchWriter{nc: nc, msgs: map[string][]byte{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// add appends line and a newline to what subject's next message holds.
func (w *batchWriter) add(subject string, line []byte) {
	w.mu.Lock()
	w.msgs[subject] = append(append(w.msgs[subject], line...), '\n')
	w.size += len(line) + 1
	full := w.size >= batchBytes
	w.mu.Unlock()
	if full {
		w.wake()
	}
}

// put makes data subject's next message, replacing what was waiting.
func (w *batchWriter) put(subject string, data []byte) {
	w.mu.Lock()
	w.size += len(data) - len(w.msgs[subject])
	w.msgs[subject] = data
	full := w.size >= batchBytes
	w.mu.Unlock()
	if full {
		w.wake()
	}
}

// wake has the writer publish now rather than at its next tick.
func (w *batchWriter) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *batchWriter) run() {
	defer close(w.done)
	t := time.NewTicker(batchEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			w.flush(true)
			return
		case <-t.C:
		case <-w.kick:
		}
		w.flush(false)
	}
}

// flush publishes what is waiting. With confirm, the last message waits
// (up to publishTimeout) for the store's answer, which comes once the
// stream has stored it and, in order, every message before it; not while
// disconnected (nothing would answer).
func (w *batchWriter) flush(confirm bool) {
	w.mu.Lock()
	msgs := w.msgs
	w.msgs, w.size = make(map[string][]byte, len(msgs)), 0
	w.mu.Unlock()
	confirm = confirm && w.nc.IsConnected()
	n := 0
	for subject, b := range msgs {
		if n++; confirm && n == len(msgs) {
			_, _ = w.nc.Request(subject, b, publishTimeout)
			return
		}
		_ = w.nc.Publish(subject, b)
	}
}

// close publishes what is waiting, waits for the store to have it (see
// flush) and stops the writer.
func (w *batchWriter) close() {
	close(w.stop)
	<-w.done
}
