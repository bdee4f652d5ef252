package relay

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

// TestAdminToken: with admin_token set, the API, reload and profiling need
// the bearer token; health, readiness and metrics do not.
func TestAdminToken(t *testing.T) {
	yaml := strings.Replace(testServerConfig(t.TempDir(), twoRules), "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  admin_token: s3cret\n", 1)
	h := startHarness(t, nil, yaml)
	tests := []struct {
		method, path string
		protected    bool
	}{
		{http.MethodGet, "/healthz", false},
		{http.MethodGet, "/readyz", false},
		{http.MethodGet, "/metrics", false},
		{http.MethodGet, "/api/v1/dlq", true},
		{http.MethodGet, "/api/v1/dlq/1", true},
		{http.MethodPost, "/api/v1/dlq/1/replay", true},
		{http.MethodPost, "/api/v1/dlq/replay", true},
		{http.MethodDelete, "/api/v1/dlq/1", true},
		{http.MethodDelete, "/api/v1/dlq", true},
		{http.MethodGet, "/api/v1/events", true},
		{http.MethodGet, "/api/v1/events/1", true},
		{http.MethodPost, "/api/v1/events/replay?sink=a&where=true", true},
		{http.MethodPost, "/api/v1/backtest", true},
		{http.MethodPost, "/-/reload", true},
		{http.MethodGet, "/debug/pprof/", true},
	}
	call := func(method, path, auth string) int {
		req, _ := http.NewRequest(method, "http://"+h.srv.AdminAddr()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			for _, auth := range []string{"", "Bearer wrong", "s3cret"} {
				code := call(tt.method, tt.path, auth)
				if tt.protected && code != http.StatusUnauthorized {
					t.Errorf("with %q: got %d, want 401", auth, code)
				}
				if !tt.protected && code == http.StatusUnauthorized {
					t.Errorf("with %q: got 401, want it open", auth)
				}
			}
			if code := call(tt.method, tt.path, "Bearer s3cret"); code == http.StatusUnauthorized {
				t.Errorf("with the token: got 401")
			}
		})
	}
}

// rawSink is a fake sink that only sends the body as is.
type rawSink struct{ sinkFunc }

func (rawSink) RawOnly() bool { return true }

// TestRawSenderGetsNoData: a sink that says it sends the raw body gets the
// event type (stored at ingest) but no decoded template data.
func TestRawSenderGetsNoData(t *testing.T) {
	got := make(chan sinks.Delivery, 1)
	tr := &testRegistry{}
	reg := tr.registry()
	reg.Register("raw", sinks.Type{New: func(string, map[string]any, sinks.Env) (sinks.Sink, error) {
		return rawSink{func(_ context.Context, d sinks.Delivery) error { got <- d; return nil }}, nil
	}})
	yaml := strings.NewReplacer("  a:\n    type: fake\n", "  a:\n    type: raw\n").Replace(testServerConfig(t.TempDir(), onlyB))
	yaml = strings.Replace(yaml, "sinks: [b]", "sinks: [a]", 1)
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, Options{Registry: reg, Logger: newTestLogger(t)})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	newHarness(t, srv).mustAccept("msg_raw", sampleBody)
	select {
	case d := <-got:
		if d.Data != nil || d.Event != "transcript.failed" || string(d.Body) != sampleBody {
			t.Errorf("got event %q, data %v; want transcript.failed and no data", d.Event, d.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
}
