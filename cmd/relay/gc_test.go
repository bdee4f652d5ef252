package main

import (
	"runtime/debug"
	"testing"
)

func TestSetDefaultGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	for _, tc := range []struct {
		name string
		gogc string
		want int
	}{
		{"unset: the relay's default", "", defaultGCPercent},
		{"set: the operator's value stays", "150", 150},
		{"off stays off", "off", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The runtime reads GOGC once at start: stand in for it.
			if tc.gogc != "" {
				debug.SetGCPercent(tc.want)
			}
			got := setDefaultGC(func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			})
			if got != tc.want {
				t.Errorf("setDefaultGC = %d, want %d", got, tc.want)
			}
			if cur := debug.SetGCPercent(100); cur != tc.want {
				t.Errorf("GC percent in force = %d, want %d", cur, tc.want)
			}
		})
	}
}
