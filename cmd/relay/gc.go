package main

import "runtime/debug"

// defaultGCPercent is the garbage collector's target for relay serve when
// the environment sets no GOGC: the heap may grow to three times what is
// live between collections instead of twice. Every accepted event allocates
// its decoded body and its store messages, so allocation and collection are
// a noticeable share of the relay's CPU under load; the higher target buys
// throughput with memory, still well within the memory budget (the
// measurements, both ways, are in docs/benchmarks.md under "GOGC 200 by
// default"). Like Prometheus, which sets its own default the same way, an
// operator's GOGC (or GOMEMLIMIT for a hard ceiling) wins.
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
