package relay

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig feeds arbitrary files to the config loader: it returns a
// config or an error, never panics, and a config it returns is usable.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte(testServerConfig("./data", twoRules)))
	for _, p := range []string{"../configs/relay.yaml", "../configs/examples/relay.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("sources: [1, 2]\nsinks: x\nrules: {a: b}\n"))
	f.Add([]byte("server: {max_body_bytes: -1, shutdown_grace: x}\nretry: {jitter: NaN}\n"))
	f.Add([]byte("sinks:\n  a: {type: fake, retry: [1], concurrency: 1e99}\n"))
	f.Add([]byte("rules:\n  - {name: x, when: '1 +', sinks: [y], stop: maybe}\n"))
	f.Add([]byte("\x00\xff: ${A:-${B}}\n"))
	tr := &testRegistry{}
	reg := tr.registry()
	f.Fuzz(func(t *testing.T, yaml []byte) {
		path := filepath.Join(t.TempDir(), "relay.yaml")
		if err := os.WriteFile(path, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path, LoadOptions{Environ: []string{"A=1"}, Registry: reg})
		if err != nil {
			return
		}
		if cfg.RuleSet == nil || len(cfg.Sources) == 0 {
			t.Fatalf("a valid config without rules or sources: %+v", cfg)
		}
		if _, err := newIngestRoutes(cfg, maxStoreMessage); err != nil {
			t.Fatalf("a valid config whose routes cannot be built: %v", err)
		}
	})
}
