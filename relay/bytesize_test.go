package relay

import (
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"10737418240", 10 << 30, true},
		{"512MiB", 512 << 20, true},
		{"10GiB", 10 << 30, true},
		{"64 KiB", 64 << 10, true},
		{"1TiB", 1 << 40, true},
		{"100B", 100, true},
		{"1.5GiB", 0, false},
		{"10GB", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"99999999999TiB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if got := ByteSize(10 << 30).String(); got != "10GiB" {
		t.Errorf("String: got %q", got)
	}
}

// TestLoadConfigStorageHistory: the history and size keys, their defaults
// and their problems.
func TestLoadConfigStorageHistory(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, validConfig), LoadOptions{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.History != 168*time.Hour || cfg.Storage.MaxBytes != 10<<30 {
		t.Errorf("defaults: history %v, max_bytes %d", cfg.Storage.History, cfg.Storage.MaxBytes)
	}
	for _, tt := range []struct {
		yaml    string
		environ []string
		history time.Duration
		max     ByteSize
	}{
		{"  history: 0s\n  max_bytes: 512MiB\n", nil, 0, 512 << 20},
		{"  history: 1h\n  max_bytes: 1048576\n", nil, time.Hour, 1 << 20},
		{"", []string{"RELAY_STORAGE__MAX_BYTES=2GiB", "RELAY_STORAGE__HISTORY=24h"}, 24 * time.Hour, 2 << 30},
		{"", []string{"RELAY_STORAGE__MAX_BYTES=1048576"}, 168 * time.Hour, 1 << 20},
	} {
		yaml := strings.Replace(validConfig, "  dir: ./data\n", "  dir: ./data\n"+tt.yaml, 1)
		cfg, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: tt.environ})
		if err != nil {
			t.Fatalf("%q %v: %v", tt.yaml, tt.environ, err)
		}
		if cfg.Storage.History != tt.history || cfg.Storage.MaxBytes != tt.max {
			t.Errorf("%q %v: history %v, max_bytes %d", tt.yaml, tt.environ, cfg.Storage.History, cfg.Storage.MaxBytes)
		}
	}
	for _, tt := range []struct{ yaml, want string }{
		{"  max_bytes: 10GB\n", "storage.max_bytes: invalid size (want a byte count or a size such as 512MiB or 10GiB)"},
		{"  max_bytes: -5\n", "storage.max_bytes: invalid size (want a byte count or a size such as 512MiB or 10GiB)"},
		{"  max_bytes: 1000\n", "storage.max_bytes: must be at least 64KiB"},
		{"  history: -1h\n", "storage.history: must not be negative (0 keeps only what is undelivered)"},
		{"  history: soon\n", "storage.history: invalid duration (want Go syntax such as 250ms, 10s, 5m)"},
	} {
		yaml := strings.Replace(validConfig, "  dir: ./data\n", "  dir: ./data\n"+tt.yaml, 1)
		_, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}})
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: got %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// FuzzParseByteSize: any text parses to a size or the one error, without a
// panic, and a size reads back from what String writes.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"10GiB", "512MiB", " 64 KiB ", "1024", "0", "-1", "9223372036854775807", "8TiB", "GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("%q parsed to a negative size %d", s, b)
		}
		if back, err := ParseByteSize(b.String()); err != nil || back != b {
			t.Fatalf("%q = %d writes as %q, which reads back as %d, %v", s, b, b.String(), back, err)
		}
	})
}
