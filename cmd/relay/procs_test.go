package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestProcsNext(t *testing.T) {
	tests := []struct {
		name      string
		one, many bool
		use       float64
		waiting   bool
		calm      int
		wantOne   bool
		wantCalm  int
	}{
		{"busy on all stays", false, true, 0.9, false, 0, false, 0},
		{"idle on all counts a calm look", false, true, 0.1, false, 3, false, 4},
		{"the last calm look goes to one", false, true, 0.1, false, procsCalm - 1, true, 0},
		{"a busier look starts the count again", false, true, procsDown, false, procsCalm - 1, false, 0},
		{"1,000 events/s on two processors (0.40-0.45 of a core) counts as calm", false, true, 0.45, false, procsCalm - 1, true, 0},
		{"goroutines waiting start the count again", false, true, 0.1, true, procsCalm - 1, false, 0},
		{"a single core never changes", false, false, 0.0, false, procsCalm - 1, false, 0},
		{"a single core never changes, waiting", false, false, 0.0, true, 0, false, 0},
		{"one while under procsUp", true, true, procsUp - 0.01, false, 0, true, 0},
		{"back to all at procsUp", true, true, procsUp, false, 0, false, 0},
		{"back to all in a burst", true, true, 1.0, false, 0, false, 0},
		{"back to all when starved: little CPU, goroutines waiting", true, true, 0.35, true, 0, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			one, calm := procsNext(tt.one, tt.many, tt.use, tt.waiting, tt.calm)
			if one != tt.wantOne || calm != tt.wantCalm {
				t.Errorf("procsNext(%v, %v, %v, %v, %d) = %v, %d; want %v, %d", tt.one, tt.many, tt.use, tt.waiting, tt.calm, one, calm, tt.wantOne, tt.wantCalm)
			}
		})
	}
}

// The band between procsDown and procsUp keeps a steady load from
// switching back and forth: a load just under procsDown on all processors
// uses at most as much on one (less, as a rule), a fifth under procsUp.
func TestProcsBand(t *testing.T) {
	if procsDown*1.2 > procsUp {
		t.Fatalf("procsDown %v too close to procsUp %v", procsDown, procsUp)
	}
}

// With GOMAXPROCS in the environment, adaptProcs leaves it alone.
func TestAdaptProcsHonoursEnvironment(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	adaptProcs(ctx, func(k string) string {
		if k == "GOMAXPROCS" {
			return "3"
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d, want %d", got, before)
	}
}

// TestProcessorsFollowLoad runs the real binary: idle, it goes down to one
// processor; under a burst of webhooks, back to all of them; idle again,
// down to one.
func TestProcessorsFollowLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: nothing to adapt")
	}
	dir := t.TempDir()
	config := writeArchiveConfig(t, dir, "true")
	p := startRelay(t, dir, config)
	defer p.stop(syscall.SIGTERM, 30*time.Second)
	procs := func() string { return p.metric("go_sched_gomaxprocs_threads") }
	eventually(t, 30*time.Second, "one processor while idle", func() bool { return procs() == "1" })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"event":"bot.done","data":{"bot":{"id":"b%d-%d"}}}`, w, i)
				if postSigned(client, "http://"+p.ingest+"/webhooks/recall", testSecret, fmt.Sprintf("msg_%d_%d", w, i), body) == nil {
					sent.Add(1)
				}
			}
		}()
	}
	busy := poll(2*time.Minute, func() bool { v := procs(); return v != "" && v != "1" })
	close(stop)
	wg.Wait()
	if !busy {
		t.Fatalf("still one processor after %d webhooks under load", sent.Load())
	}
	eventually(t, 30*time.Second, "one processor once the load stopped", func() bool { return procs() == "1" })
}

// schedWaits sees goroutines that wait their turn on one processor.
func TestSchedWaits(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	w := newSchedWaits()
	// 256 goroutines that each compute for half a millisecond on the one
	// processor: most wait far longer than procsWaitLong for their turn.
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for start := time.Now(); time.Since(start) < 500*time.Microsecond; {
			}
		})
	}
	wg.Wait()
	if !w.waiting() {
		t.Error("256 goroutines queued on one processor: not seen waiting")
	}
}
