package main

import (
	"context"
	"runtime"
	"time"
)

// The Go scheduler runs goroutines on GOMAXPROCS processors (P), one per
// core by default. Every event crosses many goroutines (the HTTP handler,
// the in-process NATS connection's, the store's, each sink's), and when a
// goroutine is handed work while a processor is idle, the runtime wakes a
// second thread to look for it: at a steady few hundred events per second
// most of those wake-ups find nothing, and on a 2-core machine they were
// about an eighth of the relay's CPU per event (docs/benchmarks.md, "This
// stop (2026-12-01): cheaper at a steady rate"). adaptProcs therefore runs the relay on one
// processor while it uses little CPU, and on all of them again as soon as
// it uses more than most of one core: a burst waits at most one look
// (procsEvery) for the second core.
//
// An operator's GOMAXPROCS is left alone.

const (
	procsEvery = 100 * time.Millisecond
	// procsUp: on one processor, the share of a core used over one look
	// that brings the others back.
	procsUp = 0.6
	// procsDown: on all, the share of a core used over procsCalm looks in
	// a row that goes back to one.
	procsDown = 0.4
	procsCalm = 10
)

// procsNext decides after one look whether to run on one processor: one
// says whether it does now, many whether there are more to go back to, use
// is the share of a core used over the look and calm the looks in a row at
// low use before it. It returns the decision and the new calm count.
func procsNext(one, many bool, use float64, calm int) (bool, int) {
	switch {
	case one && use >= procsUp:
		return false, 0
	case !one && many && use < procsDown:
		if calm+1 >= procsCalm {
			return true, 0
		}
		return false, calm + 1
	}
	return one, 0
}

// adaptProcs adjusts GOMAXPROCS every procsEvery until ctx is done, then
// goes back to the runtime's default (which follows the machine's cores and
// the container's CPU limit). It does nothing with GOMAXPROCS set in the
// environment, or where the process cannot read its CPU time.
func adaptProcs(ctx context.Context, getenv func(string) string) {
	if _, ok := cpuTime(); !ok || getenv("GOMAXPROCS") != "" {
		return
	}
	t := time.NewTicker(procsEvery)
	defer t.Stop()
	one, calm := false, 0
	defer func() {
		if one {
			runtime.SetDefaultGOMAXPROCS()
		}
	}()
	lastCPU, _ := cpuTime()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, _ := cpuTime()
			use := float64(used-lastCPU) / float64(now.Sub(lastAt))
			lastCPU, lastAt = used, now
			next, c := procsNext(one, runtime.GOMAXPROCS(0) > 1, use, calm)
			calm = c
			switch {
			case next && !one:
				runtime.GOMAXPROCS(1)
			case !next && one:
				runtime.SetDefaultGOMAXPROCS()
			}
			one = next
		}
	}
}
