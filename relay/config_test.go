package relay

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

const validConfig = `
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: ./data
sources:
  recall:
    secrets: [` + testSecret + `]
sinks:
  a:
    type: fake
rules:
  - name: all
    when: "true"
    sinks: [a]
`

func TestLoadConfigDefaults(t *testing.T) {
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, validConfig), LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Sources["recall"].Path, "/webhooks/recall"; got != want {
		t.Errorf("source path: got %q, want %q", got, want)
	}
	if got, want := cfg.Sources["recall"].Tolerance, 5*time.Minute; got != want {
		t.Errorf("tolerance: got %v, want %v", got, want)
	}
	if got, want := cfg.Server.MaxBodyBytes, int64(1<<20); got != want {
		t.Errorf("max_body_bytes: got %d, want %d", got, want)
	}
	if !cfg.Storage.SyncAlways || cfg.Storage.DedupeWindow != 24*time.Hour {
		t.Errorf("storage: got %+v, want sync always and a 24h dedupe window", cfg.Storage)
	}
	if got, want := cfg.Sinks["a"].Concurrency, defaultSinkConcurrency; got != want {
		t.Errorf("sink concurrency: got %d, want %d", got, want)
	}
	if got, want := cfg.Sinks["a"].Retry, DefaultRetry(); got != want {
		t.Errorf("sink retry: got %+v, want %+v", got, want)
	}
	if cfg.RuleSet == nil || cfg.RuleSet.Len() != 1 {
		t.Errorf("rules not compiled")
	}
	want := IngestPriority{BusyAt: 6 * runtime.GOMAXPROCS(0), MaxHold: 50 * time.Millisecond}
	if got := cfg.Server.IngestPriority; got != want {
		t.Errorf("ingest_priority: got %+v, want %+v", got, want)
	}
}

// TestLoadConfigIngestPriority: either key may be set alone; busy_at 0
// turns it off.
func TestLoadConfigIngestPriority(t *testing.T) {
	def := DefaultIngestPriority()
	tests := []struct {
		yaml string
		want IngestPriority
	}{
		{"  ingest_priority: {busy_at: 32}\n", IngestPriority{BusyAt: 32, MaxHold: def.MaxHold}},
		{"  ingest_priority: {max_hold: 10ms}\n", IngestPriority{BusyAt: def.BusyAt, MaxHold: 10 * time.Millisecond}},
		{"  ingest_priority: {busy_at: 0}\n", IngestPriority{BusyAt: 0, MaxHold: def.MaxHold}},
	}
	for _, tt := range tests {
		yaml := strings.Replace(validConfig, "server:\n", "server:\n"+tt.yaml, 1)
		cfg, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}})
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if got := cfg.Server.IngestPriority; got != tt.want {
			t.Errorf("%q: got %+v, want %+v", tt.yaml, got, tt.want)
		}
	}
}

func TestLoadConfigEnvironment(t *testing.T) {
	yaml := strings.Replace(validConfig, "secrets: ["+testSecret+"]", "secrets: [\"${SECRET}\", \"${OTHER:-"+testSecret+"}\"]", 1)
	yaml = strings.Replace(yaml, "type: fake", "type: fake\n    label: ${LABEL:-x}-${UNSET}\n    retry: {max_attempts: 3}", 1)
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, yaml), LoadOptions{
		Registry: tr.registry(),
		Environ: []string{
			"SECRET=" + testSecret,
			"RELAY_SERVER__MAX_BODY_BYTES=2048",
			"RELAY_STORAGE__SYNC=1s",
			"RELAY_SINKS__A__CONCURRENCY=7",
			"RELAY_ADMIN_TOKEN=not-an-override",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.Sources["recall"].Secrets); got != 2 {
		t.Errorf("secrets: got %d, want 2", got)
	}
	if got, want := cfg.Sinks["a"].Options["label"], "x-"; got != want {
		t.Errorf("label: got %q, want %q", got, want)
	}
	if got, want := cfg.Server.MaxBodyBytes, int64(2048); got != want {
		t.Errorf("max_body_bytes override: got %d, want %d", got, want)
	}
	if cfg.Storage.SyncAlways || cfg.Storage.SyncInterval != time.Second {
		t.Errorf("sync override: got %+v", cfg.Storage)
	}
	if got, want := cfg.Sinks["a"].Concurrency, 7; got != want {
		t.Errorf("concurrency override: got %d, want %d", got, want)
	}
	if got, want := cfg.Sinks["a"].Retry.MaxAttempts, 3; got != want {
		t.Errorf("sink retry override: got %d, want %d", got, want)
	}
	if got, want := cfg.Sinks["a"].Retry.InitialInterval, DefaultRetry().InitialInterval; got != want {
		t.Errorf("sink retry keeps the defaults it does not set: got %v, want %v", got, want)
	}
}

// TestLoadConfigSinkRetry: a sink's retry block overrides the top-level
// policy key by key, and the top-level policy overrides the defaults.
func TestLoadConfigSinkRetry(t *testing.T) {
	yaml := strings.Replace(validConfig, "    type: fake\n", "    type: fake\n    retry: {max_attempts: 4}\n  b:\n    type: fake\n", 1) +
		"retry:\n  initial_interval: 3s\n  jitter: 0\n"
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	top := DefaultRetry()
	top.InitialInterval, top.Jitter = 3*time.Second, 0
	if got := cfg.Retry; got != top {
		t.Errorf("retry: got %+v, want %+v", got, top)
	}
	if got := cfg.Sinks["b"].Retry; got != top {
		t.Errorf("sink b retry: got %+v, want %+v", got, top)
	}
	own := top
	own.MaxAttempts = 4
	if got := cfg.Sinks["a"].Retry; got != own {
		t.Errorf("sink a retry: got %+v, want %+v", got, own)
	}
}

// TestLoadConfigErrors has one case per kind of config problem, checked
// against the exact message.
func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		environ []string
		want    []string
	}{
		{
			name: "unknown keys",
			edit: func(s string) string {
				return strings.Replace(strings.Replace(s, "listen:", "listn: x\n  listen:", 1), "    type: fake", "    type: fake\n    colour: red", 1) + "extra: 1\n"
			},
			want: []string{"extra: unknown key", "server.listn: unknown key", "sinks.a.colour: unknown key"},
		},
		{
			name: "negative ingest priority",
			edit: func(s string) string {
				return strings.Replace(s, "server:\n", "server:\n  ingest_priority: {busy_at: -1, max_hold: -1s, after: 1}\n", 1)
			},
			want: []string{
				"server.ingest_priority.after: unknown key",
				"server.ingest_priority.busy_at: must not be negative (0 turns it off)",
				"server.ingest_priority.max_hold: must not be negative",
			},
		},
		{
			name: "unknown key in a source",
			edit: func(s string) string { return strings.Replace(s, "  recall:\n", "  recall:\n    pathh: /x\n", 1) },
			want: []string{"sources.recall.pathh: unknown key"},
		},
		{
			name: "empty secret from an unset variable",
			edit: func(s string) string { return strings.Replace(s, testSecret, `"${RECALL_WEBHOOK_SECRET}"`, 1) },
			want: []string{"sources.recall.secrets[0]: empty secret"},
		},
		{
			name: "malformed secrets",
			edit: func(s string) string {
				return strings.Replace(s, "["+testSecret+"]", "["+testSecret+", whsec_not*base64, MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_]", 1)
			},
			want: []string{
				"sources.recall.secrets[1]: malformed secret (want whsec_ followed by base64)",
				"sources.recall.secrets[2]: malformed secret (want whsec_ followed by base64)",
				"sources.recall.secrets[3]: malformed secret (want whsec_ followed by base64)",
			},
		},
		{
			name: "no secrets",
			edit: func(s string) string { return strings.Replace(s, "secrets: ["+testSecret+"]", "secrets: []", 1) },
			want: []string{"sources.recall.secrets: at least one secret required"},
		},
		{
			name: "no sources",
			edit: func(s string) string {
				return strings.Replace(s, "sources:\n  recall:\n    secrets: ["+testSecret+"]\n", "", 1)
			},
			want: []string{"sources: at least one source required"},
		},
		{
			name: "bad source path and duplicate path",
			edit: func(s string) string {
				return strings.Replace(s, "  recall:\n", "  other:\n    path: /webhooks/recall\n    secrets: ["+testSecret+"]\n  third:\n    path: nope\n    secrets: ["+testSecret+"]\n  recall:\n", 1)
			},
			want: []string{
				`sources.recall.path: "/webhooks/recall" is also the path of sources.other`,
				`sources.third.path: must start with "/"`,
			},
		},
		{
			name: "bad values",
			edit: func(s string) string {
				return strings.Replace(s, "  dir: ./data\n", "  dir: ./data\n  sync: sometimes\n  dedupe_window: forever\n  replicas: 9\n", 1) +
					"retry:\n  multiplier: 0.5\n  jitter: 2\n  max_attempts: 0\n"
			},
			want: []string{
				"retry.max_attempts: must be at least 1",
				"retry.multiplier: must be at least 1",
				"retry.jitter: must be between 0 and 1",
				"storage.dedupe_window: invalid duration (want Go syntax such as 250ms, 10s, 5m)",
				`storage.sync: invalid value (want "always" or an interval such as 1s)`,
				"storage.replicas: must be between 1 and 5",
			},
		},
		{
			name: "wrong types",
			edit: func(s string) string {
				return strings.Replace(s, "  listen:", "  max_body_bytes: lots\n  listen:", 1)
			},
			want: []string{"server.max_body_bytes: invalid integer"},
		},
		{
			name: "sink type missing and unknown",
			edit: func(s string) string {
				return strings.Replace(s, "sinks:\n  a:\n    type: fake\n", "sinks:\n  a:\n    type: fake\n  b:\n    label: x\n  c:\n    type: pigeon\n", 1)
			},
			want: []string{
				"sinks.b.type: required",
				`sinks.c.type: unknown sink type "pigeon" (known: fake)`,
			},
		},
		{
			name: "sink concurrency and retry",
			edit: func(s string) string {
				return strings.Replace(s, "    type: fake\n", "    type: fake\n    concurrency: 0\n    retry:\n      max_attempts: 0\n      backoff: 1s\n", 1)
			},
			want: []string{
				"sinks.a.concurrency: must be a whole number of at least 1",
				"sinks.a.retry.backoff: unknown key",
				"sinks.a.retry.max_attempts: must be at least 1",
			},
		},
		{
			name: "sink type and concurrency of the wrong kind",
			edit: func(s string) string {
				return strings.Replace(s, "    type: fake\n", "    type: fake\n    concurrency: 2.5\n  b:\n    type: 5\n", 1)
			},
			want: []string{
				"sinks.a.concurrency: must be a whole number of at least 1",
				"sinks.b.type: must be a string",
				"sinks.b.type: required",
			},
		},
		{
			name: "a sink whose retry block does not decode is still a sink",
			edit: func(s string) string {
				return strings.Replace(s, "    type: fake\n", "    type: fake\n    retry: {max_age: forever}\n", 1)
			},
			want: []string{"sinks.a.retry.max_age: invalid duration (want Go syntax such as 250ms, 10s, 5m)"},
		},
		{
			name: "a sink's own keys in another case are options",
			edit: func(s string) string {
				return strings.Replace(s, "    type: fake\n", "    type: fake\n    Concurrency: 3\n", 1)
			},
			want: []string{"sinks.a.Concurrency: unknown key"},
		},
		{
			name: "derived fields are not keys",
			edit: func(s string) string {
				return strings.Replace(s, "  dir: ./data\n", "  dir: ./data\n  syncalways: true\n", 1) + "ruleset: 1\n"
			},
			want: []string{"ruleset: unknown key", "storage.syncalways: unknown key"},
		},
		{
			name: "names that cannot be subjects",
			edit: func(s string) string {
				s = strings.Replace(s, "  recall:\n", "  \"re call\":\n", 1)
				s = strings.Replace(s, "sinks:\n  a:\n", "sinks:\n  a.b:\n", 1)
				return strings.Replace(s, "sinks: [a]", "sinks: [a.b]", 1)
			},
			want: []string{
				`sources.re call: invalid name (use 1 to 64 letters, digits, "-" or "_")`,
				`sinks.a.b: invalid name (use 1 to 64 letters, digits, "-" or "_")`,
			},
		},
		{
			name: "unknown sink in a rule",
			edit: func(s string) string { return strings.Replace(s, "sinks: [a]", "sinks: [a, slak]", 1) },
			want: []string{`rules[0] (all).sinks[1]: unknown sink "slak"`},
		},
		{
			name: "rule does not compile",
			edit: func(s string) string { return strings.Replace(s, `when: "true"`, `when: sub_cod == "x"`, 1) },
			want: []string{"rules[0] (all).when: unknown name sub_cod (1:1)"},
		},
		{
			name: "every problem at once",
			edit: func(s string) string {
				s = strings.Replace(s, testSecret, `""`, 1)
				return strings.Replace(s, "sinks: [a]", "sinks: [b]", 1)
			},
			want: []string{
				"sources.recall.secrets[0]: empty secret",
				`rules[0] (all).sinks[0]: unknown sink "b"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr testRegistry
			_, err := LoadConfig(writeConfig(t, tt.edit(validConfig)), LoadOptions{Environ: tt.environ, Registry: tr.registry()})
			if err == nil {
				t.Fatal("got no error")
			}
			got := errorLines(err)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("missing problem %q\ngot:\n  %s", w, strings.Join(got, "\n  "))
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n  %s", len(got), len(tt.want), strings.Join(got, "\n  "))
			}
		})
	}
}

func TestLoadConfigNeverPrintsSecrets(t *testing.T) {
	yaml := strings.Replace(validConfig, testSecret, "whsec_s3cr3t!!", 1)
	yaml = strings.Replace(yaml, "type: fake", "type: fake\n    label: [whsec_s3cr3t!!]", 1)
	yaml = strings.Replace(yaml, "  listen:", "  admin_token: [whsec_s3cr3t!!]\n  listen:", 1)
	var tr testRegistry
	_, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err == nil {
		t.Fatal("got no error")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error shows a secret: %v", err)
	}
}
