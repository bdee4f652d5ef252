package relay

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// held is a message a worker has fetched and not yet settled. From the
// fetch until it is settled, a heartbeat keeps the store from handing it
// out again, however long it waits.
type held struct {
	msg      jetstream.Msg
	rules    []string // the rules that route it to the sink
	stopBeat func()
	size     int // what it counts against the queue's byte limit (heldSize)
}

// heldOverhead is what a held message counts beyond its body: its subject,
// reply subject and headers, generously.
const heldOverhead = 1024

// heldSize is what msg counts against a heldQueue's byte limit.
func heldSize(msg jetstream.Msg) int { return len(msg.Data()) + heldOverhead }

// heldQueue is what a worker holds: the messages waiting for an attempt,
// in the order they were fetched, and the number and bytes held in all
// (waiting or being attempted), which it keeps at or under its limits (a
// fetch asks the store for no more than the room left in both). One
// goroutine takes from it (the worker's dispatcher); others add to it.
// Safe for concurrent use.
type heldQueue struct {
	mu       sync.Mutex
	waiting  []*held
	count    int // waiting + being attempted
	bytes    int // their sizes (heldSize)
	limit    int
	maxBytes int
	closed   bool          // drained: the worker is stopping
	more     chan struct{} // a message was queued (capacity 1)
	room     chan struct{} // count or limit changed (capacity 1)
}

// newHeldQueue returns a queue holding at most limit messages and about
// maxBytes bytes: a fetch is made only with at least maxBytes/2 of room, so
// maxBytes should be at least twice the largest message.
func newHeldQueue(limit, maxBytes int) *heldQueue {
	return &heldQueue{limit: limit, maxBytes: maxBytes, more: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// add queues a newly fetched message.
func (q *heldQueue) add(h *held) {
	q.mu.Lock()
	q.waiting = append(q.waiting, h)
	q.count++
	q.bytes += h.size
	q.mu.Unlock()
	signal(q.more)
}

// requeue puts back, at the end, a message whose attempt ended without
// settling it (a failed probe): it is still held. It reports false, and
// counts the message as settled, once the queue has been drained: the
// caller then hands the message back.
func (q *heldQueue) requeue(h *held) bool {
	q.mu.Lock()
	if q.closed {
		q.count--
		q.bytes -= h.size
		q.mu.Unlock()
		return false
	}
	q.waiting = append(q.waiting, h)
	q.mu.Unlock()
	signal(q.more)
	return true
}

// settled records that h, taken from the queue, was settled.
func (q *heldQueue) settled(h *held) {
	q.mu.Lock()
	q.count--
	q.bytes -= h.size
	q.mu.Unlock()
	signal(q.room)
}

// waitNext waits until a message is waiting; false when ctx ended first.
// The message stays queued: take it with next.
func (q *heldQueue) waitNext(ctx context.Context) bool {
	for ctx.Err() == nil {
		q.mu.Lock()
		n := len(q.waiting)
		q.mu.Unlock()
		if n > 0 {
			return true
		}
		select {
		case <-q.more:
		case <-ctx.Done():
		}
	}
	return false
}

// next takes the first waiting message, or nil.
func (q *heldQueue) next() *held {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 {
		return nil
	}
	h := q.waiting[0]
	q.waiting[0] = nil
	q.waiting = q.waiting[1:]
	return h
}

// waitRoom waits until at most half of each limit is held and returns how
// many more messages, and bytes, may be fetched; 0 messages when ctx ended
// first. Fetching in halves keeps a batch on hand while the next is
// fetched.
func (q *heldQueue) waitRoom(ctx context.Context) (n, bytes int) {
	for ctx.Err() == nil {
		q.mu.Lock()
		count, limit, held, maxBytes := q.count, q.limit, q.bytes, q.maxBytes
		q.mu.Unlock()
		if count <= limit/2 && held <= maxBytes/2 {
			return limit - count, maxBytes - held
		}
		select {
		case <-q.room:
		case <-ctx.Done():
		}
	}
	return 0, 0
}

// setLimit changes how many messages may be held.
func (q *heldQueue) setLimit(n int) {
	q.mu.Lock()
	q.limit = n
	q.mu.Unlock()
	signal(q.room)
}

// drain takes every waiting message, for the worker to hand back, and
// closes the queue to requeue.
func (q *heldQueue) drain() []*held {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	out := q.waiting
	q.waiting = nil
	q.count -= len(out)
	for _, h := range out {
		q.bytes -= h.size
	}
	return out
}

// slots bounds the attempts in flight to a sink; the bound can change
// while attempts run (a reload), and takes effect as they end. Safe for
// concurrent use.
type slots struct {
	mu    sync.Mutex
	limit int
	used  int
	freed chan struct{} // a slot was released or the limit changed (capacity 1)
}

func newSlots(limit int) *slots { return &slots{limit: limit, freed: make(chan struct{}, 1)} }

// acquire waits for a free slot; false when ctx ended first. One goroutine
// acquires (the dispatcher); any may release.
func (s *slots) acquire(ctx context.Context) bool {
	for ctx.Err() == nil {
		s.mu.Lock()
		if s.used < s.limit {
			s.used++
			s.mu.Unlock()
			return true
		}
		s.mu.Unlock()
		select {
		case <-s.freed:
		case <-ctx.Done():
		}
	}
	return false
}

func (s *slots) release() {
	s.mu.Lock()
	s.used--
	s.mu.Unlock()
	signal(s.freed)
}

func (s *slots) setLimit(n int) {
	s.mu.Lock()
	s.limit = n
	s.mu.Unlock()
	signal(s.freed)
}
