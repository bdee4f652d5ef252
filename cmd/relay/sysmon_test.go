package main

import (
	"slices"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string // nil: left alone
	}{
		{"no GODEBUG", []string{"HOME=/root"}, []string{"HOME=/root", "GODEBUG=" + sysmonSetting}},
		{"other settings kept", []string{"GODEBUG=http2client=0", "A=b"}, []string{"A=b", "GODEBUG=http2client=0," + sysmonSetting}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=" + sysmonSetting}},
		{"operator's schedtrace wins", []string{"GODEBUG=schedtrace=0"}, nil},
		{"operator's schedtrace among others", []string{"GODEBUG=gctrace=1, schedtrace=1000"}, nil},
		{"the setting itself: no second exec", []string{"GODEBUG=" + sysmonSetting}, nil},
		{"a name that only ends like it", []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + sysmonSetting}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := sysmonEnv(tt.env)
			if tt.want == nil {
				if changed || !slices.Equal(got, tt.env) {
					t.Fatalf("sysmonEnv(%q) = %q, %v; want it left alone", tt.env, got, changed)
				}
				return
			}
			if !changed || !slices.Equal(got, tt.want) {
				t.Fatalf("sysmonEnv(%q) = %q, %v; want %q, true", tt.env, got, changed, tt.want)
			}
		})
	}
}
