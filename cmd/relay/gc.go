package main

import "runtime/debug"

// defaultGCPercent is the garbage collector's target for relay serve when
// the environment sets no GOGC: the heap may grow to three times what is
// live between collections instead of twice. Every accepted event allocates
// its decoded body and its store messages, so allocation and collection are
// about a tenth of the relay's CPU under load. At 200, interleaved runs of
// docs/bench.sh accepted about 5% more events per second at concurrency 64,
// and with 100,000 events queued behind a dead sink the resident high-water
// mark was 103 MB (76 MB at 100), about half the 200 MB budget (see
// docs/benchmarks.md). Like Prometheus, which sets its own default the same
// way, an operator's GOGC (or GOMEMLIMIT for a hard ceiling) wins.
const defaultGCPercent = 200

// setDefaultGC applies defaultGCPercent unless GOGC is set, and returns the
// percentage in force.
func setDefaultGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		cur := debug.SetGCPercent(-1)
		debug.SetGCPercent(cur)
		return cur
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
