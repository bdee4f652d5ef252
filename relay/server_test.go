package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/sinks"
)

// harness runs a real Server (embedded JetStream in a temp dir) with fake
// sinks, and talks to it over HTTP.
type harness struct {
	t    *testing.T
	srv  *Server
	tr   *testRegistry
	path string
	wh   *svix.Webhook
}

// testServerConfig is a config with sinks a, b (fake), fast retries and the
// given rules block.
func testServerConfig(dir, extra string) string {
	return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace: 5s
storage:
  dir: %s
  ack_wait: 5s
sources:
  recall:
    secrets: [%s]
retry:
  max_attempts: 3
  initial_interval: 10ms
  max_interval: 50ms
sinks:
  a:
    type: fake
  b:
    type: fake
%s`, dir, testSecret, extra)
}

const twoRules = `
rules:
  - name: failures
    when: status == "failed"
    sinks: [a]
  - name: everything
    when: "true"
    sinks: [a, b]
`

// startServer loads yaml and starts a Server whose sinks come from tr; the
// caller stops it. Each prepare func sees the server before it starts.
func startServer(t *testing.T, tr *testRegistry, yaml string, prepare ...func(*Server)) *Server {
	t.Helper()
	return startServerLogging(t, tr, yaml, newTestLogger(t), prepare...)
}

// startServerLogging is startServer with log as the server's Options.Logger,
// for a test that reads the logs: a logger is fixed when the server is made,
// never swapped on a running worker.
func startServerLogging(t *testing.T, tr *testRegistry, yaml string, log *slog.Logger, prepare ...func(*Server)) *Server {
	t.Helper()
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, Options{Registry: tr.registry(), ConfigPath: path, Environ: []string{}, Logger: log})
	for _, f := range prepare {
		f(srv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return srv
}

// newHarness wraps a started server; it does not stop it.
func newHarness(t *testing.T, srv *Server) *harness {
	wh, _ := svix.NewWebhook(testSecret)
	return &harness{t: t, srv: srv, path: srv.opts.ConfigPath, wh: wh}
}

// startHarness starts a server (stopped at the end of the test).
func startHarness(t *testing.T, tr *testRegistry, yaml string, prepare ...func(*Server)) *harness {
	t.Helper()
	if tr == nil {
		tr = &testRegistry{}
	}
	srv := startServer(t, tr, yaml, prepare...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	h := newHarness(t, srv)
	h.tr = tr
	return h
}

// post sends a signed event and returns the status code and answer.
func (h *harness) post(id, body string) (int, string) {
	h.t.Helper()
	code, answer := h.postRaw(id, body)
	return code, answer.body
}

func (h *harness) mustAccept(id, body string) {
	h.t.Helper()
	if code, answer := h.post(id, body); code != 200 || !strings.Contains(answer, `"accepted"`) {
		h.t.Fatalf("post %s: got %d %s, want 200 accepted", id, code, answer)
	}
}

// admin calls the admin API and decodes a JSON answer into out (if not nil).
func (h *harness) admin(method, path string, out any) int {
	h.t.Helper()
	code, body := h.adminRaw(method, path)
	if out != nil && code/100 == 2 {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			h.t.Fatalf("%s %s: %v in %q", method, path, err, body)
		}
	}
	return code
}

func (h *harness) deadLetters(sink string) []DeadLetter {
	var page struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
	}
	if code := h.admin(http.MethodGet, "/api/v1/dlq?sink="+sink, &page); code != 200 {
		h.t.Fatalf("list dead letters: %d", code)
	}
	return page.DeadLetters
}

// recorder is a fake sink that records deliveries and signals each one.
type recorder struct {
	mu  sync.Mutex
	got []sinks.Delivery
	ch  chan sinks.Delivery
}

func newRecorder() *recorder { return &recorder{ch: make(chan sinks.Delivery, 10000)} }

func (r *recorder) send(_ context.Context, d sinks.Delivery) error {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	r.ch <- d
	return nil
}

// wait returns the next delivery, failing the test after timeout.
func (r *recorder) wait(t *testing.T, timeout time.Duration) sinks.Delivery {
	t.Helper()
	select {
	case d := <-r.ch:
		return d
	case <-time.After(timeout):
		t.Fatalf("no delivery within %s", timeout)
		return sinks.Delivery{}
	}
}

// none checks that nothing more arrives within d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case got := <-r.ch:
		t.Fatalf("unexpected delivery %s (attempt %d)", got.MsgID, got.Attempt)
	case <-time.After(d):
	}
}
