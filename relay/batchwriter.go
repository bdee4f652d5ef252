package relay

import (
	"strconv"
	"sync"
	"sync/atomic"
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

	// Each batch's last message asks the store for an answer at
	// inbox.<batch number>, which comes once the stream has stored it and,
	// in order, every message before it. sent is the last batch number
	// published, last the highest answered (an answer lost in a reconnect
	// is covered by a later one); answered is signalled at each answer
	// (for close).
	flushing sync.Mutex // one flush at a time: batch numbers in publish order
	inbox    string
	answers  *nats.Subscription
	sent     atomic.Uint64
	last     atomic.Uint64
	answered chan struct{}
}

// Batches are published every batchEvery, or as soon as batchBytes are
// waiting.
const (
	batchEvery = 50 * time.Millisecond
	batchBytes = 64 << 10
)

// newBatchWriter returns a writer publishing on nc, running.
func newBatchWriter(nc *nats.Conn) *batchWriter {
	w := makeBatchWriter(nc)
	go w.run()
	return w
}

// makeBatchWriter returns a writer whose loop (run) is not started yet.
func makeBatchWriter(nc *nats.Conn) *batchWriter {
	w := &batchWriter{nc: nc, msgs: map[string][]byte{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), answered: make(chan struct{}, 1)}
	inbox := nc.NewInbox()
	// Only a closed connection refuses the subscription; the writer then
	// publishes without asking for answers, and close does not wait.
	if sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) {
		n, err := strconv.ParseUint(m.Subject[len(inbox)+1:], 10, 64)
		if err != nil {
			return
		}
		for {
			last := w.last.Load()
			if n <= last || w.last.CompareAndSwap(last, n) {
				break
			}
		}
		signal(w.answered)
	}); err == nil {
		w.inbox, w.answers = inbox, sub
	}
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
			w.flush()
			return
		case <-t.C:
		case <-w.kick:
		}
		w.flush()
	}
}

// flush publishes what is waiting, the last message asking for the
// store's answer (see inbox).
func (w *batchWriter) flush() {
	w.flushing.Lock()
	defer w.flushing.Unlock()
	w.mu.Lock()
	msgs := w.msgs
	w.msgs, w.size = make(map[string][]byte, len(msgs)), 0
	w.mu.Unlock()
	n := 0
	for subject, b := range msgs {
		if n++; n == len(msgs) && w.inbox != "" {
			batch := w.sent.Load() + 1
			if w.nc.PublishMsg(&nats.Msg{Subject: subject, Data: b, Reply: w.inbox + "." + strconv.FormatUint(batch, 10)}) == nil {
				w.sent.Store(batch)
			}
			continue
		}
		_ = w.nc.Publish(subject, b)
	}
}

// close publishes what is waiting, waits until the store has answered for
// the last batch published, and so for every one before (a batch a tick
// published just before close included), up to publishTimeout and not
// while disconnected (nothing would answer), and stops the writer.
func (w *batchWriter) close() {
	close(w.stop)
	<-w.done
	if w.answers == nil {
		return
	}
	defer func() { _ = w.answers.Unsubscribe() }()
	deadline := time.NewTimer(publishTimeout)
	defer deadline.Stop()
	for w.last.Load() < w.sent.Load() && w.nc.IsConnected() {
		select {
		case <-w.answered:
		case <-deadline.C:
			return
		}
	}
}
