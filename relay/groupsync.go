package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// groupSync makes writes durable with one sync for every group of callers
// that wait at the same time (group commit). A caller's write must be
// complete (acknowledged by the store) before it calls wait; the sync that
// answers it starts after the call, so it covers the write.
//
// A group also waits for the writes already under way (begin was called,
// wait not yet), at most as long as the last sync took: a write that
// missed the group would wait for the rest of that sync and all of its
// own, so waiting for it costs the group less than a second sync. Under a
// steady stream of concurrent appends this makes one sync serve every
// request in flight instead of a few.
type groupSync struct {
	sync func() error // flushes every completed write to stable storage

	writing   atomic.Int64  // writes begun whose callers have yet to wait
	gatherFor time.Duration // tests: a fixed bound on the wait for them

	reqs  chan chan error
	ended chan struct{} // a begun write failed (end)
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu    sync.Mutex
	syncs int // how many syncs ran (for tests and metrics)
}

func newGroupSync(syncFn func() error) *groupSync {
	g := makeGroupSync(syncFn)
	go g.run()
	return g
}

// makeGroupSync is newGroupSync without starting its loop.
func makeGroupSync(syncFn func() error) *groupSync {
	return &groupSync{
		sync:  syncFn,
		reqs:  make(chan chan error, 4096),
		ended: make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

var errGroupSyncClosed = errors.New("store closing")

// begin records that a write has started whose caller will wait (or
// call end if the write fails).
func (g *groupSync) begin() { g.writing.Add(1) }

// end records that a write begun failed: its caller will not wait.
func (g *groupSync) end() {
	g.writing.Add(-1)
	select {
	case g.ended <- struct{}{}: // a group may be waiting for it
	default:
	}
}

// run takes every request waiting, and those whose writes are under way
// (see groupSync), syncs once, and answers them all; the requests that
// arrive meanwhile form the next group. It ends on close.
func (g *groupSync) run() {
	defer close(g.done)
	var (
		lastSync time.Duration
		gather   = time.NewTimer(time.Hour)
	)
	gather.Stop()
	for {
		var batch []chan error
		select {
		case <-g.stop:
			g.drain(errGroupSyncClosed)
			return
		case r := <-g.reqs:
			batch = append(batch, r)
		}
	more:
		for {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		limit := lastSync
		if g.gatherFor > 0 {
			limit = g.gatherFor
		}
		if n := g.writing.Load(); n > 0 && limit > 0 {
			// The writes under way now, not those begun meanwhile: under
			// a steady stream some always are.
			want := len(batch) + int(n)
			gather.Reset(limit)
		wait:
			for len(batch) < want && g.writing.Load() > 0 {
				select {
				case r := <-g.reqs:
					batch = append(batch, r)
				case <-g.ended:
				case <-gather.C:
					break wait
				case <-g.stop:
					break wait
				}
			}
			gather.Stop()
		}
		start := time.Now()
		err := g.sync()
		lastSync = time.Since(start)
		g.mu.Lock()
		g.syncs++
		g.mu.Unlock()
		for _, r := range batch {
			r <- err
		}
	}
}

func (g *groupSync) drain(err error) {
	for {
		select {
		case r := <-g.reqs:
			r <- err
		default:
			return
		}
	}
}

// wait returns once every write completed before the call is on stable
// storage, or with the sync's error, or when ctx is done. A caller that
// called begin for its write calls waitBegun instead.
func (g *groupSync) wait(ctx context.Context) error {
	return g.enqueue(ctx, false)
}

// waitBegun is wait for a write announced with begin.
func (g *groupSync) waitBegun(ctx context.Context) error {
	return g.enqueue(ctx, true)
}

func (g *groupSync) enqueue(ctx context.Context, begun bool) error {
	r := make(chan error, 1)
	if begun {
		// Before the request is queued: run, seeing no write under way,
		// syncs at once; it could miss this request, never wait for it.
		g.writing.Add(-1)
	}
	select {
	case g.reqs <- r:
	case <-g.stop:
		return errGroupSyncClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r:
		return err
	case <-g.done: // closed after the request was queued
		return errGroupSyncClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the loop; waiting callers get an error.
func (g *groupSync) close() {
	g.once.Do(func() { close(g.stop) })
	<-g.done
}

func (g *groupSync) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.syncs
}
