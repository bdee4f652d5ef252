package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// memStore is a test fake of Store that dedupes by source and message id.
type memStore struct {
	mu     sync.Mutex
	events []Event
	seen   map[string]bool
	err    error
}

func (m *memStore) Append(_ context.Context, e Event) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if m.seen == nil {
		m.seen = make(map[string]bool)
	}
	key := e.Source + ":" + e.MsgID
	if m.seen[key] {
		return true, nil
	}
	m.seen[key] = true
	m.events = append(m.events, e)
	return false, nil
}

func (m *memStore) Ready(context.Context) error { return m.err }

// The three test vectors of the Svix documentation.
var svixVectors = []struct {
	secret, id string
	ts         int64
	body, sig  string
}{
	{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
		`{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
	{"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553,
		`{"email":"test@example.com","username":"test_user"}`, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="},
	{"whsec_plJ3nmyCDGBKInavdOK15jsl", "msg_loFOjxBNrRLzqYUf", 1731705121,
		`{"event_type":"ping","data":{"success":true}}`, "v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0="},
}

const (
	oldSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	maxBody   = 4096
)

var testNow = time.Unix(1_750_000_000, 0)

// newTestIngest returns an ingest handler with one source, "recall", that
// accepts testSecret and oldSecret (key rotation), and a rule routing
// transcript.failed to sink "alerts".
func newTestIngest(t testing.TB, store Store, more ...SourceConfig) *ingestHandler {
	t.Helper()
	specs := []rules.Spec{
		{Name: "failures", When: `status == "failed"`, Sinks: []string{"alerts"}},
		{Name: "all", When: "true", Sinks: []string{"archive", "alerts"}},
	}
	set, err := rules.Compile(specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Server:  ServerConfig{MaxBodyBytes: maxBody},
		Sources: map[string]SourceConfig{"recall": {Path: "/webhooks/recall", Secrets: []sinks.Secret{testSecret, oldSecret}, Tolerance: 5 * time.Minute}},
		Rules:   specs,
		RuleSet: set,
	}
	for i, sc := range more {
		cfg.Sources[fmt.Sprintf("more%d", i)] = sc
	}
	routes, err := newIngestRoutes(cfg, maxStoreMessage)
	if err != nil {
		t.Fatal(err)
	}
	h := &ingestHandler{store: store, metrics: NewMetrics(), log: discardLogger(), now: func() time.Time { return testNow }, load: newIngestLoad(IngestPriority{})}
	h.routes.Store(routes)
	return h
}

// signed builds a POST signed with secret at time ts, with the svix-* or
// webhook-* header family.
func signed(t testing.TB, secret, id string, ts time.Time, body string, family string) *http.Request {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/webhooks/recall", strings.NewReader(body))
	r.Header.Set(family+"-id", id)
	r.Header.Set(family+"-timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set(family+"-signature", sig)
	return r
}

const sampleBody = `{"event":"transcript.failed","data":{"data":{"code":"failed","sub_code":"zoom_captions_failure","updated_at":"2025-03-19T17:44:06.535897Z"},"transcript":{"id":"t1","metadata":{}},"recording":{"id":"r1","metadata":{}},"bot":{"id":"b1","metadata":{}}}}`

func TestIngest(t *testing.T) {
	jsonObject := func(n int) string { // a JSON object of exactly n bytes
		return `{"pad":"` + strings.Repeat("x", n-10) + `"}`
	}
	tests := []struct {
		name       string
		req        func(t *testing.T) *http.Request
		storeErr   error
		draining   bool
		wantCode   int
		wantStatus string // "status" of a 200 answer
		wantStored int
	}{
		{name: "svix headers", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "standard webhooks headers", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, sampleBody, "webhook")
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "rotated secret", req: func(t *testing.T) *http.Request {
			return signed(t, oldSecret, "msg_1", testNow, sampleBody, "svix")
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "several signatures, one valid", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Header.Set("svix-signature", "v1a,abc v1,bm90IGl0 "+r.Header.Get("svix-signature"))
			return r
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "timestamp 4m old", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow.Add(-4*time.Minute), sampleBody, "svix")
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "stale timestamp", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow.Add(-6*time.Minute), sampleBody, "svix")
		}, wantCode: 401},
		{name: "future timestamp", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow.Add(6*time.Minute), sampleBody, "svix")
		}, wantCode: 401},
		{name: "unknown secret", req: func(t *testing.T) *http.Request {
			return signed(t, "whsec_plJ3nmyCDGBKInavdOK15jsl", "msg_1", testNow, sampleBody, "svix")
		}, wantCode: 401},
		{name: "tampered body", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Body = httpBody(strings.Replace(sampleBody, "failed", "done", 1))
			return r
		}, wantCode: 401},
		{name: "tampered id", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Header.Set("svix-id", "msg_2")
			return r
		}, wantCode: 401},
		{name: "only v1a signature", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Header.Set("svix-signature", strings.Replace(r.Header.Get("svix-signature"), "v1,", "v1a,", 1))
			return r
		}, wantCode: 401},
		{name: "missing headers", req: func(t *testing.T) *http.Request {
			return httptest.NewRequest(http.MethodPost, "/webhooks/recall", strings.NewReader(sampleBody))
		}, wantCode: 401},
		{name: "missing signature", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Header.Del("svix-signature")
			return r
		}, wantCode: 401},
		{name: "malformed timestamp", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Header.Set("svix-timestamp", "yesterday")
			return r
		}, wantCode: 401},
		{name: "malformed signature", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.Header.Set("svix-signature", "garbage")
			return r
		}, wantCode: 401},
		{name: "body at the limit", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, jsonObject(maxBody), "svix")
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "body one byte over the limit", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, jsonObject(maxBody+1), "svix")
		}, wantCode: 413},
		{name: "body at the limit, length not declared", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, jsonObject(maxBody), "svix")
			r.ContentLength = -1 // as a chunked request arrives
			return r
		}, wantCode: 200, wantStatus: "accepted", wantStored: 1},
		{name: "body over the limit, length not declared", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, jsonObject(maxBody+1), "svix")
			r.ContentLength = -1
			return r
		}, wantCode: 413},
		{name: "JSON array", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, `[{"event":"x"}]`, "svix")
		}, wantCode: 400},
		{name: "JSON string", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, `"hello"`, "svix")
		}, wantCode: 400},
		{name: "not JSON", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, `{"event":`, "svix")
		}, wantCode: 400},
		{name: "empty body", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, ``, "svix")
		}, wantCode: 400},
		{name: "unknown path", req: func(t *testing.T) *http.Request {
			r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
			r.URL.Path = "/webhooks/other"
			return r
		}, wantCode: 404},
		{name: "wrong method", req: func(t *testing.T) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/webhooks/recall", nil)
		}, wantCode: 405},
		{name: "store unavailable", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
		}, storeErr: ErrStoreUnavailable, wantCode: 503},
		{name: "shutting down", req: func(t *testing.T) *http.Request {
			return signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
		}, draining: true, wantCode: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &memStore{err: tt.storeErr}
			h := newTestIngest(t, store)
			h.draining.Store(tt.draining)
			req := tt.req(t)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tt.wantCode)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q, want application/json", ct)
			}
			var answer map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatalf("answer is not JSON: %q", rec.Body)
			}
			if tt.wantCode == 200 {
				if answer["status"] != tt.wantStatus || answer["id"] != "msg_1" {
					t.Errorf("got %v, want id msg_1 and status %s", answer, tt.wantStatus)
				}
			} else if answer["error"] == "" {
				t.Errorf("error answer without an error: %q", rec.Body)
			}
			if tt.wantCode == 503 && rec.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if tt.wantCode == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("405 Allow: got %q, want POST", rec.Header().Get("Allow"))
			}
			if sig := req.Header.Get("svix-signature"); sig != "" && strings.Contains(rec.Body.String(), sig) {
				t.Error("answer echoes the signature")
			}
			if got := len(store.events); got != tt.wantStored {
				t.Errorf("stored %d events, want %d", got, tt.wantStored)
			}
		})
	}
}

// stallingBody is a request body that returns data, then blocks in Read
// (closing stalled) until release is closed, then reports EOF: a sender that
// declared more than it sends.
type stallingBody struct {
	data             []byte
	stalled, release chan struct{}
	once             sync.Once
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		return n, nil
	}
	b.once.Do(func() { close(b.stalled) })
	<-b.release
	return 0, io.EOF
}

func (b *stallingBody) Close() error { return nil }

// TestIngestAllocatesWhatArrives: a request that declares a Content-Length
// of max_body_bytes but sends 10 bytes and stalls does not make the handler
// allocate the declared size; the buffer grows with what arrives.
func TestIngestAllocatesWhatArrives(t *testing.T) {
	const limit = 1 << 20
	h := newTestIngest(t, &memStore{})
	routes := *h.routes.Load()
	routes.maxBodyBytes = limit
	h.routes.Store(&routes)
	r := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
	body := &stallingBody{data: []byte(`{"a":"bc"}`), stalled: make(chan struct{}), release: make(chan struct{})}
	r.Body, r.ContentLength = body, limit
	rec := httptest.NewRecorder()

	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, r)
	}()
	select {
	case <-body.stalled:
	case <-time.After(10 * time.Second):
		close(body.release)
		t.Fatal("the handler did not read the body within 10s")
	}
	runtime.ReadMemStats(&during)
	close(body.release)
	<-done
	if got := during.TotalAlloc - before.TotalAlloc; got >= limit/4 {
		t.Errorf("allocated %d bytes for a body that declared %d and sent 10; want well under %d", got, limit, limit/4)
	}
	if rec.Code != http.StatusUnauthorized { // the 10 bytes are not what was signed
		t.Errorf("got %d %s, want 401", rec.Code, rec.Body)
	}
}

func TestIngestSvixVectors(t *testing.T) {
	for _, v := range svixVectors {
		t.Run(v.id, func(t *testing.T) {
			store := &memStore{}
			h := newTestIngest(t, store)
			routes := *h.routes.Load()
			wh, _ := svix.NewWebhook(v.secret)
			src := *routes.byPath["/webhooks/recall"]
			src.verifiers = []*svix.Webhook{wh}
			routes.byPath = map[string]*ingestSource{"/webhooks/recall": &src}
			h.routes.Store(&routes)
			h.now = func() time.Time { return time.Unix(v.ts, 0) }

			r := httptest.NewRequest(http.MethodPost, "/webhooks/recall", strings.NewReader(v.body))
			r.Header.Set("svix-id", v.id)
			r.Header.Set("svix-timestamp", strconv.FormatInt(v.ts, 10))
			r.Header.Set("svix-signature", v.sig)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != 200 {
				t.Fatalf("got %d %s, want 200", rec.Code, rec.Body)
			}
			if got := string(store.events[0].Body); got != v.body {
				t.Errorf("stored body %q, want %q", got, v.body)
			}
		})
	}
}

func TestIngestDuplicateAndRoute(t *testing.T) {
	store := &memStore{}
	h := newTestIngest(t, store)
	for i, want := range []string{"accepted", "duplicate"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, signed(t, testSecret, "msg_dup", testNow.Add(time.Duration(i)*time.Second), sampleBody, "svix"))
		if !strings.Contains(rec.Body.String(), `"status":"`+want+`"`) {
			t.Errorf("delivery %d: got %d %s, want %s", i+1, rec.Code, rec.Body, want)
		}
	}
	if len(store.events) != 1 {
		t.Fatalf("stored %d events, want 1", len(store.events))
	}
	e := store.events[0]
	want := map[string][]string{"alerts": {"failures", "all"}, "archive": {"all"}}
	if got, _ := json.Marshal(e.Route); string(got) != mustJSON(want) {
		t.Errorf("route: got %s, want %s", got, mustJSON(want))
	}
	if e.Source != "recall" || e.MsgID != "msg_dup" || !e.ReceivedAt.Equal(testNow) {
		t.Errorf("event: got %+v", e)
	}
}

// FuzzIngest feeds arbitrary headers and bodies to the ingest handler: it
// never panics and answers only the codes of docs/reference.md.
func FuzzIngest(f *testing.F) {
	wh, _ := svix.NewWebhook(testSecret)
	sig, _ := wh.Sign("msg_1", testNow, []byte(sampleBody))
	ts := strconv.FormatInt(testNow.Unix(), 10)
	f.Add("/webhooks/recall", "msg_1", ts, sig, []byte(sampleBody))
	f.Add("/webhooks/recall", "msg_1", ts, sig, []byte(`[1]`))
	f.Add("/webhooks/recall", "", "", "", []byte(``))
	f.Add("/webhooks/recall", "msg_1", "-99999999999999999999", "v1,", []byte(`{}`))
	f.Add("/nope", "msg_1", ts, "v1,AAAA v1a,BBBB", []byte(`{"a":1}`))
	f.Add("/webhooks/recall", strings.Repeat("x", 300), ts, sig, bytes.Repeat([]byte("{"), 5000))
	f.Add("/webhooks/allowed", "10.1.2.3", ts, sig, []byte(sampleBody))
	f.Add("/webhooks/allowed", "10.1.2.3, [2001:db8::1]:443, 192.0.2.9", ts, sig, []byte(sampleBody))
	allowed := SourceConfig{Path: "/webhooks/allowed", Secrets: []sinks.Secret{testSecret}, Tolerance: 5 * time.Minute,
		AllowIPs: []string{"10.0.0.0/8", "2001:db8::/32"}, TrustedProxies: []string{"192.0.2.0/24"}}
	f.Fuzz(func(t *testing.T, path, id, tsHeader, sigHeader string, body []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		h := newTestIngest(t, &memStore{}, allowed)
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.URL.Path = path
		// httptest's peer is 192.0.2.1, a trusted proxy of the allowed
		// source: the forwarded-for header, from the id, decides there.
		r.Header.Set("X-Forwarded-For", id)
		r.Header.Set("svix-id", id)
		r.Header.Set("svix-timestamp", tsHeader)
		r.Header.Set("svix-signature", sigHeader)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		switch rec.Code {
		case 200, 400, 401, 403, 404, 405, 413, 503:
		default:
			t.Fatalf("answered %d, not an ingest code of docs/reference.md", rec.Code)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
	})
}

func httpBody(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestIngestLogsNoSecrets: the log lines of accepted and rejected webhooks
// carry neither the signature, nor a secret, nor the body.
func TestIngestLogsNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	h := newTestIngest(t, &memStore{})
	h.log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	good := signed(t, testSecret, "msg_1", testNow, sampleBody, "svix")
	bad := signed(t, testSecret, "msg_2", testNow, sampleBody, "svix")
	bad.Header.Set("svix-signature", "v1,c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ==")
	stale := signed(t, testSecret, "msg_3", testNow.Add(-time.Hour), sampleBody, "svix")
	for _, r := range []*http.Request{good, bad, stale} {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"event accepted"`) || !strings.Contains(out, `"msg":"webhook rejected"`) {
		t.Fatalf("expected log lines missing:\n%s", out)
	}
	for _, leak := range []string{
		good.Header.Get("svix-signature"), "c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ==",
		strings.TrimPrefix(testSecret, "whsec_"), strings.TrimPrefix(oldSecret, "whsec_"),
		`"zoom_captions_failure"`, // from the body
	} {
		if strings.Contains(out, leak) {
			t.Errorf("logs contain %q:\n%s", leak, out)
		}
	}
}
