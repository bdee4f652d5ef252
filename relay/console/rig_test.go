package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/relay"
	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/builtin"
)

const (
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testToken  = "console-test-admin-token"
	// wait bounds every wait of the suite for something to show up.
	wait = 20 * time.Second
)

// hookSink is the HTTP sink's destination: it answers every request with
// code and records the Idempotency-Key (the event's message id).
type hookSink struct {
	code atomic.Int32
	mu   sync.Mutex
	got  []string
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h.mu.Lock()
	h.got = append(h.got, r.Header.Get("Idempotency-Key"))
	h.mu.Unlock()
	w.WriteHeader(int(h.code.Load()))
}

// received counts the requests that carried msgID.
func (h *hookSink) received(msgID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, id := range h.got {
		if id == msgID {
			n++
		}
	}
	return n
}

// rig is a real relay (embedded JetStream, the built-in sinks) whose "api"
// sink posts to hook.
type rig struct {
	t     *testing.T
	srv   *relay.Server
	admin string // http://127.0.0.1:port
	wh    *svix.Webhook
	hook  *hookSink
	token string // the admin token ("" for none)
}

// startRelay starts the relay with admin token token ("" for none).
func startRelay(t *testing.T, token string) *rig {
	t.Helper()
	hook := &hookSink{}
	hook.code.Store(http.StatusOK)
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  admin_token: "%s"
storage:
  dir: %s/data
  history: 1h
sources:
  recall:
    secrets: [%s]
retry:
  max_attempts: 3
  initial_interval: 50ms
  max_interval: 100ms
sinks:
  api:
    type: http
    url: %s/hooks/recall-events?key=sk_live_abcdefghijkl
    headers:
      Authorization: Bearer hook-credential-0123456789
  archive:
    type: file
    path: %s/archive.jsonl
rules:
  - name: failures
    when: event == "transcript.failed"
    sinks: [api]
  - name: everything
    when: "true"
    sinks: [api, archive]
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript" && status in ["done", "failed"]
    key: recording.id
    within: 30m
`, token, dir, testSecret, hookSrv.URL, dir)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := func() *sinks.Registry { return builtin.Registry(sinks.Env{}) }
	cfg, err := relay.LoadConfig(path, relay.LoadOptions{Environ: []string{}, Registry: reg()})
	if err != nil {
		t.Fatal(err)
	}
	srv := relay.New(cfg, relay.Options{Registry: reg(), ConfigPath: path, Environ: []string{}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	wh, err := svix.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, srv: srv, admin: "http://" + srv.AdminAddr(), wh: wh, hook: hook, token: token}
}

// send posts a signed event and requires the relay to accept it.
func (r *rig) send(msgID, body string) {
	r.t.Helper()
	req, err := relaytest.SignedRequest("http://"+r.srv.IngestAddr()+"/webhooks/recall", r.wh, msgID, time.Now(), []byte(body))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("send %s: %d %s", msgID, resp.StatusCode, b)
	}
}

// stored reports whether the relay's events API has an event with msgID.
func (r *rig) stored(msgID string) bool {
	req, _ := http.NewRequest(http.MethodGet, r.admin+"/api/v1/events?where="+url.QueryEscape(fmt.Sprintf("msg_id == %q", msgID)), nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var page struct {
		Events []struct{} `json:"events"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&page) == nil && len(page.Events) > 0
}

func eventBody(event, recording string) string {
	return fmt.Sprintf(`{"event":%q,"data":{"data":{"code":"%s","sub_code":null,"updated_at":"2026-11-30T12:00:00Z"},"recording":{"id":%q,"metadata":{}},"bot":{"id":"bot_1","metadata":{}}}}`,
		event, strings.TrimPrefix(event[strings.LastIndex(event, ".")+1:], "_"), recording)
}
