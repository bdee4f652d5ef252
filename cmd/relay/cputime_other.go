//go:build !unix

package main

import "time"

// cpuTime is not read here: relay serve keeps the runtime's processor count.
func cpuTime() (time.Duration, bool) { return 0, false }
