package main

import "strings"

// The Go runtime has a monitor thread (sysmon) that, while any processor
// runs, wakes every 20 µs to 10 ms to take processors back from goroutines
// blocked in system calls and to preempt long-running ones. When every
// processor is idle it sleeps until a goroutine next enters a system call,
// and then starts again at 20 µs. At a steady few hundred to a few thousand
// events per second the relay's processor goes idle between nearly every
// two events, so the monitor was woken for nearly every event and slept in
// 20 µs steps while the event was handled: three of the relay's five
// context switches per event at 1,000 events/s on this project's 2-core
// VM, and keeping it awake saved about a fifth of the relay's CPU there
// (docs/benchmarks.md, "This stop (2026-12-01, second)").
//
// The runtime keeps the monitor from that deep sleep only while a
// scheduler trace is on (GODEBUG schedtrace), and reads GODEBUG only as
// the process starts. relay serve therefore re-executes itself once, at
// start, with schedtrace at its largest period (a trace line at most once
// every 24.8 days, and none in a host's first 24.8 days up): the monitor
// then backs off to one look per 10 ms while it finds nothing to do, as it
// does under load. The trade: a goroutine that blocks in a system call
// (the store's fsync once a second) while the relay runs on one processor
// may hold the others up to about 20 ms instead of 40 µs before the
// monitor hands the processor on: the end-to-end p99 at 1,000 events/s
// went from about 0.9 to about 1.05 ms. An operator's GODEBUG schedtrace,
// any value, is left alone: schedtrace=0 keeps the runtime's default.

// sysmonSetting is the GODEBUG setting relay serve runs with.
const sysmonSetting = "schedtrace=2147483647"

// sysmonEnv returns env with sysmonSetting added to GODEBUG, and false when
// env's GODEBUG already sets schedtrace.
func sysmonEnv(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	godebug := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
			continue
		}
		out = append(out, kv)
	}
	for _, s := range strings.Split(godebug, ",") {
		if strings.HasPrefix(strings.TrimSpace(s), "schedtrace=") {
			return env, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+sysmonSetting), true
}
