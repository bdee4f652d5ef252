package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeQuietsSysmon runs the real binary: relay serve re-executes
// itself, keeping its process id, with sysmonSetting in GODEBUG, and leaves
// an operator's schedtrace alone.
func TestServeQuietsSysmon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	godebug := func(p *relayProcess) string {
		t.Helper()
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(string(raw), "\x00")
		i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
		if i < 0 {
			return ""
		}
		return strings.TrimPrefix(env[i], "GODEBUG=")
	}
	for _, tt := range []struct {
		name, env, want string
	}{
		{"default", "GODEBUG=gctrace=0", "gctrace=0," + sysmonSetting},
		{"operator's setting", "GODEBUG=schedtrace=0", "schedtrace=0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := startRelay(t, dir, writeArchiveConfig(t, dir, "true"), tt.env)
			defer p.stop(syscall.SIGTERM, 30*time.Second)
			// The relay answered its start-up line from the process we
			// started: an exec keeps the id, so this is the running image.
			if got := godebug(p); got != tt.want {
				t.Errorf("GODEBUG %q, want %q", got, tt.want)
			}
		})
	}
}
