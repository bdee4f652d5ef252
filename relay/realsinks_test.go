package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/builtin"
)

// realRegistry has the sink types the relay ships.
func realRegistry() *sinks.Registry { return builtin.Registry(sinks.Env{}) }

func startRealHarness(t *testing.T, yaml string) *harness {
	t.Helper()
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: realRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, Options{Registry: realRegistry(), ConfigPath: path, Environ: []string{}, Logger: newTestLogger(t)})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(t.Context()) })
	wh, _ := svix.NewWebhook(testSecret)
	return &harness{t: t, srv: srv, path: path, wh: wh}
}

// capture is an HTTP receiver that records requests and answers with the
// next planned response (200 once the plan is used up).
type capture struct {
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
	plan []func(w http.ResponseWriter)
	got  chan struct{}
}

func newCapture(plan ...func(w http.ResponseWriter)) (*capture, *httptest.Server) {
	c := &capture{plan: plan, got: make(chan struct{}, 100)}
	srv := httptest.NewServer(c)
	return c, srv
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.body = append(c.body, b)
	var answer func(http.ResponseWriter)
	if len(c.plan) > 0 {
		answer, c.plan = c.plan[0], c.plan[1:]
	}
	c.mu.Unlock()
	if answer != nil {
		answer(w)
	}
	c.got <- struct{}{}
}

func (c *capture) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-c.got:
		case <-time.After(15 * time.Second):
			t.Fatalf("got %d requests, want %d", i, n)
		}
	}
}

func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
}

// TestRealSinks delivers one event to each sink type the relay ships, with
// an HTTP receiver that fails twice with 503 and Retry-After: 1 first.
func TestRealSinks(t *testing.T) {
	api, apiSrv := newCapture(unavailable, unavailable)
	defer apiSrv.Close()
	hook, hookSrv := newCapture()
	defer hookSrv.Close()
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive.jsonl")
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: %s/data
sources:
  recall:
    secrets: [%s]
sinks:
  api:
    type: http
    url: %s/events
    signing_secret: %s
  alerts:
    type: slack
    webhook_url: %s/services/T0/B0/XXX
  archive:
    type: file
    path: %s
rules:
  - name: zoom
    when: sub_code startsWith "zoom_"
    sinks: [alerts]
  - name: all
    when: "true"
    sinks: [api, archive]
`, dir, testSecret, apiSrv.URL, oldSecret, hookSrv.URL, archive)
	h := startRealHarness(t, yaml)
	start := time.Now()
	h.mustAccept("msg_real", sampleBody)

	hook.wait(t, 1)
	var msg map[string]any
	if err := json.Unmarshal(hook.body[0], &msg); err != nil || msg["blocks"] == nil {
		t.Errorf("slack: got %s, want a Block Kit message", hook.body[0])
	}

	api.wait(t, 3)
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Errorf("three attempts within %s: Retry-After: 1 was not honoured", elapsed)
	}
	last := api.reqs[2]
	if got := string(api.body[2]); got != sampleBody {
		t.Errorf("http: body %q, want the original bytes", got)
	}
	if got := last.Header.Get("Idempotency-Key"); got != "msg_real" {
		t.Errorf("http: Idempotency-Key %q, want msg_real", got)
	}
	wh, _ := svix.NewWebhook(oldSecret)
	if err := wh.Verify(api.body[2], last.Header); err != nil {
		t.Errorf("http: forwarded signature does not verify: %v", err)
	}

	eventually(t, 10*time.Second, "the archive line", func() bool {
		b, _ := os.ReadFile(archive)
		return strings.Contains(string(b), `"msg_id":"msg_real"`)
	})
	b, _ := os.ReadFile(archive)
	if !strings.Contains(string(b), sampleBody) {
		t.Errorf("file: payload not embedded verbatim: %s", b)
	}
	if !strings.Contains(string(b), `"event":"transcript.failed"`) {
		t.Errorf("file: the event type, stored at ingest, is missing: %s", b)
	}
	eventually(t, 5*time.Second, "delivered and retried counted", func() bool {
		m := h.scrape()
		return strings.Contains(m, `relay_deliveries_total{outcome="retried",sink="api"} 2`) &&
			strings.Contains(m, `relay_deliveries_total{outcome="delivered",sink="api"} 1`)
	})
}

// TestReloadChangedSinkUsesNewSettings: a delivery queued for retry goes to
// the sink's new URL after a reload.
func TestReloadChangedSinkUsesNewSettings(t *testing.T) {
	down := func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }
	old, oldSrv := newCapture(down, down, down, down, down, down, down, down, down, down)
	defer oldSrv.Close()
	fresh, freshSrv := newCapture()
	defer freshSrv.Close()
	dir := t.TempDir()
	yaml := func(url string) string {
		return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: %s/data
sources:
  recall:
    secrets: [%s]
retry:
  max_attempts: 1000
  initial_interval: 100ms
  max_interval: 200ms
sinks:
  api:
    type: http
    url: %s
rules:
  - name: all
    when: "true"
    sinks: [api]
`, dir, testSecret, url)
	}
	h := startRealHarness(t, yaml(oldSrv.URL))
	h.mustAccept("msg_moved", sampleBody)
	old.wait(t, 1)
	h.rewriteConfig(yaml(freshSrv.URL))
	if err := h.srv.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	fresh.wait(t, 1)
	if got := fresh.reqs[0].Header.Get("Idempotency-Key"); got != "msg_moved" {
		t.Errorf("new URL got %q, want msg_moved", got)
	}
}

// TestNoSecretLeavesTheRelay runs a real server whose HTTP sink's URL path
// and query and header carry credentials and whose destination refuses
// every request quoting them back: no log line, dead letter or admin
// answer shows a credential, a webhook secret or a signature.
func TestNoSecretLeavesTheRelay(t *testing.T) {
	const (
		pathSecret  = "T0SECRET/B0SECRET/pathcredential"
		querySecret = "querycredential0123"
		headerToken = "headertoken0123456789"
	)
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // permanent: dead-lettered at once
		fmt.Fprintf(w, "bad request to %s with %s", r.URL.String(), r.Header.Get("Authorization"))
	}))
	defer dest.Close()
	var logs relaytest.LockedBuffer
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: %s
sources:
  recall:
    secrets: [%s]
sinks:
  api:
    type: http
    url: %s/%s?token=%s
    headers:
      Authorization: "Bearer %s"
rules:
  - name: all
    when: "true"
    sinks: [api]
`, t.TempDir(), testSecret, dest.URL, pathSecret, querySecret, headerToken)
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: realRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, Options{Registry: realRegistry(), ConfigPath: path, Environ: []string{},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(t.Context()) })
	wh, _ := svix.NewWebhook(testSecret)
	h := &harness{t: t, srv: srv, path: path, wh: wh}

	now := time.Now()
	sig, _ := wh.Sign("msg_leak", now, []byte(sampleBody))
	h.mustAccept("msg_leak", sampleBody)
	// A request with a wrong signature is logged as rejected.
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.IngestAddr()+"/webhooks/recall", strings.NewReader(sampleBody))
	req.Header.Set("svix-id", "msg_forged")
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", "v1,Zm9yZ2VkLXNpZ25hdHVyZS12YWx1ZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	var dl DeadLetter
	eventually(t, 10*time.Second, "the dead letter", func() bool {
		dls := h.deadLetters("api")
		return len(dls) == 1 && h.admin(http.MethodGet, "/api/v1/dlq/"+strconvU(dls[0].ID), &dl) == 200
	})
	var list bytes.Buffer
	for _, p := range []string{"/api/v1/dlq", "/api/v1/dlq/" + strconvU(dl.ID)} {
		r, err := http.Get("http://" + srv.AdminAddr() + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&list, r.Body)
		r.Body.Close()
	}
	eventually(t, 5*time.Second, "the dead-letter log line", func() bool {
		return strings.Contains(logs.String(), "delivery dead-lettered")
	})
	if !strings.Contains(logs.String(), "webhook rejected") {
		t.Errorf("no log line for the forged request:\n%s", logs.String())
	}
	if !strings.Contains(dl.LastError, "400") {
		t.Errorf("dead letter reason %q does not say what failed", dl.LastError)
	}
	for where, text := range map[string]string{
		"logs":                logs.String(),
		"dead letter (API)":   list.String(),
		"ingest error answer": string(answer),
	} {
		for _, leak := range []string{
			"T0SECRET", "pathcredential", querySecret, headerToken,
			strings.TrimPrefix(testSecret, "whsec_"), sig, "Zm9yZ2VkLXNpZ25hdHVyZS12YWx1ZQ==",
		} {
			if strings.Contains(text, leak) {
				t.Errorf("%s contain %q:\n%s", where, leak, text)
			}
		}
	}
}
