package main

import (
	"context"
	"runtime"
	"runtime/metrics"
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
// The CPU a process uses is what the machine grants it. On cores shared
// with busier processes, a relay on one processor may get under procsUp
// however much work waits: its goroutines then wait to run. So a look in
// which a share of them waited procsWaitLong or more also brings the other
// processors back, and the relay goes back to one only when they do not
// wait. (On two cores shared with three busy processes, two processors
// accepted 23-26% more than one at concurrency 16.)
//
// An operator's GOMAXPROCS is left alone.

const (
	procsEvery = 100 * time.Millisecond
	// procsUp: on one processor, the share of a core used over one look
	// that brings the others back.
	procsUp = 0.6
	// procsDown: on all, the share of a core used over procsCalm looks in
	// a row that goes back to one. The same load costs more CPU on all
	// processors than on one (1.3-1.5 times at 1,000 events/s on two
	// cores), so procsDown sits well above the use on one that procsUp
	// leaves: at 0.4, 1,000 events/s used 0.40-0.45 of a core on two
	// processors and a relay that started there often stayed there.
	procsDown = 0.5
	procsCalm = 10
	// procsWaitUp: the share of the goroutines made runnable in a look that
	// waited procsWaitLong or more for a processor that counts as waiting
	// (at 1,000 events/s on one processor: 0-0.1%; starved by busier
	// processes: 2-3%), once procsWaitMin of them did.
	procsWaitUp   = 0.01
	procsWaitLong = time.Millisecond
	procsWaitMin  = 10
)

// procsNext decides after one look whether to run on one processor: one
// says whether it does now, many whether there are more to go back to, use
// is the share of a core used over the look, waiting whether goroutines
// waited to run (procsWaitUp), and calm the looks in a row at low use
// before it. It returns the decision and the new calm count.
func procsNext(one, many bool, use float64, waiting bool, calm int) (bool, int) {
	switch {
	case one && (use >= procsUp || waiting):
		return false, 0
	case !one && many && use < procsDown && !waiting:
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
	waits := newSchedWaits()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used, _ := cpuTime()
			use := float64(used-lastCPU) / float64(now.Sub(lastAt))
			lastCPU, lastAt = used, now
			next, c := procsNext(one, runtime.GOMAXPROCS(0) > 1, use, waits.waiting(), calm)
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

// schedWaits reads how long goroutines waited to run, from the runtime's
// scheduling latencies (a sample of them, cumulative).
type schedWaits struct {
	sample            []metrics.Sample
	lastAll, lastLong uint64
}

func newSchedWaits() *schedWaits {
	w := &schedWaits{sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
	w.lastAll, w.lastLong = w.read()
	return w
}

// read returns the waits counted so far, and those of procsWaitLong or
// more (by the lower bound of their bucket).
func (w *schedWaits) read() (all, long uint64) {
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	h := w.sample[0].Value.Float64Histogram()
	for i, n := range h.Counts {
		all += n
		if h.Buckets[i] >= procsWaitLong.Seconds() {
			long += n
		}
	}
	return all, long
}

// waiting reports whether, since the last call, at least procsWaitMin
// goroutines and a share of procsWaitUp waited procsWaitLong or more.
func (w *schedWaits) waiting() bool {
	all, long := w.read()
	dAll, dLong := all-w.lastAll, long-w.lastLong
	w.lastAll, w.lastLong = all, long
	return dLong >= procsWaitMin && float64(dLong) >= procsWaitUp*float64(dAll)
}
