package relay

import (
	"context"
	"errors"
	"sync"
)

// groupSync makes writes durable with one sync for every group of callers
// that wait at the same time (group commit). A caller's write must be
// complete (acknowledged by the store) before it calls wait; the sync that
// answers it starts after the call, so it covers the write.
type groupSync struct {
	sync func() error // flushes every completed write to stable storage

	reqs chan chan error
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	syncs int // how many syncs ran (for tests and metrics)
}

func newGroupSync(syncFn func() error) *groupSync {
	g := &groupSync{
		sync: syncFn,
		reqs: make(chan chan error, 4096),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go g.run()
	return g
}

var errGroupSyncClosed = errors.New("store closing")

// run takes every request waiting, syncs once, and answers them all; the
// requests that arrive meanwhile form the next group. It ends on close.
func (g *groupSync) run() {
	defer close(g.done)
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
		err := g.sync()
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
// storage, or with the sync's error, or when ctx is done.
func (g *groupSync) wait(ctx context.Context) error {
	r := make(chan error, 1)
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
