package relay

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestGroupSync: callers that arrive while a sync runs share the next one,
// and every caller is answered by a sync that started after its call.
func TestGroupSync(t *testing.T) {
	release := make(chan error)
	started := make(chan int, 10)
	var mu sync.Mutex
	n := 0
	g := newGroupSync(func() error {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		started <- i
		return <-release
	})
	defer g.close()

	first := make(chan error, 1)
	go func() { first <- g.wait(context.Background()) }()
	if i := <-started; i != 1 {
		t.Fatalf("sync %d started, want 1", i)
	}
	// Ten callers arrive while sync 1 runs: none of them may be answered
	// by it.
	const waiters = 10
	errs := make(chan error, waiters)
	for range waiters {
		go func() { errs <- g.wait(context.Background()) }()
	}
	waitQueued(t, g, waiters)
	release <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("a caller was answered by a sync that started before it: %v", err)
	default:
	}
	if i := <-started; i != 2 {
		t.Fatalf("sync %d started, want 2", i)
	}
	boom := errors.New("disk on fire")
	release <- boom
	for range waiters {
		if err := <-errs; !errors.Is(err, boom) {
			t.Errorf("got %v, want the sync's error", err)
		}
	}
	if got := g.count(); got != 2 {
		t.Errorf("%d syncs for 11 callers, want 2", got)
	}
}

func TestGroupSyncContextAndClose(t *testing.T) {
	block := make(chan struct{})
	g := newGroupSync(func() error { <-block; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.wait(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	close(block)
	g.close()
	if err := g.wait(context.Background()); !errors.Is(err, errGroupSyncClosed) {
		t.Errorf("after close: got %v, want errGroupSyncClosed", err)
	}
}

// TestGroupSyncGathers: a group waits for the writes under way (begun, not
// yet waited for), until they wait, fail or the bound passes.
func TestGroupSyncGathers(t *testing.T) {
	tests := []struct {
		name   string
		bound  time.Duration
		settle func(g *groupSync) // what the begun write does
		syncs  int                // syncs that answer both callers
	}{
		{"the begun write joins the group", time.Minute, func(g *groupSync) {
			if err := g.waitBegun(context.Background()); err != nil {
				t.Error(err)
			}
		}, 1},
		{"a failed write lets the group go", time.Minute, func(g *groupSync) { g.end() }, 1},
		{"the wait is bounded", time.Millisecond, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := makeGroupSync(func() error { return nil })
			g.gatherFor = tt.bound
			go g.run()
			defer g.close()
			g.begin()
			// The first caller's request, taken by the loop before the
			// begun write settles: without the gathering it would be
			// synced alone at once.
			first := make(chan error, 1)
			g.reqs <- first
			eventually(t, 5*time.Second, "the first request taken", func() bool { return len(g.reqs) == 0 })
			if tt.settle == nil {
				if err := <-first; err != nil {
					t.Fatal(err)
				}
				g.end()
				return
			}
			tt.settle(g)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if got := g.count(); got != tt.syncs {
				t.Errorf("%d syncs, want %d", got, tt.syncs)
			}
		})
	}
}

// waitQueued waits until n requests are queued.
func waitQueued(t *testing.T, g *groupSync, n int) {
	t.Helper()
	eventually(t, 5*time.Second, strconv.Itoa(n)+" callers queued", func() bool { return len(g.reqs) >= n })
}

// TestAppendGroupSyncAccounting: with sync: always, every Append announces
// its write to the group commit and settles it, whether the write is
// fresh, a duplicate or fails, so that no group waits for a write that
// will never come.
func TestAppendGroupSyncAccounting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := openJetStream(ctx, StorageConfig{Dir: t.TempDir(), SyncAlways: true, DedupeWindow: time.Hour}, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if s.gsync == nil {
		t.Fatal("sync: always without the group commit")
	}
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n + 1 {
		wg.Go(func() {
			id := "msg_" + strconv.Itoa(i%n) // the last one repeats the first
			_, err := s.Append(ctx, Event{Source: "recall", MsgID: id, Body: []byte(sampleBody), ReceivedAt: time.Now(), Route: map[string][]string{"a": {"r"}}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.gsync.writing.Load(); got != 0 {
		t.Errorf("after %d appends, %d writes still counted under way", n+1, got)
	}
	if got := s.gsync.count(); got < 1 || got > n+1 {
		t.Errorf("%d syncs for %d appends", got, n+1)
	}

	s.nc.Close() // every write from here fails
	if _, err := s.Append(ctx, Event{Source: "recall", MsgID: "msg_lost", Body: []byte(sampleBody), ReceivedAt: time.Now()}); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("append on a closed connection: %v, want ErrStoreUnavailable", err)
	}
	if got := s.gsync.writing.Load(); got != 0 {
		t.Errorf("after a failed append, %d writes still counted under way", got)
	}
}
