package httpsink

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/sinks"
)

const (
	secretPass   = "hunter2-pass"
	secretHeader = "Bearer sup3r-s3cret-token"
)

// request is what a test server saw.
type request struct {
	method string
	header http.Header
	body   []byte
}

// recorder is an httptest server that records requests and answers with
// respond.
type recorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
}

func newRecorder(t *testing.T, respond http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read request body: %v", err)
		}
		r.mu.Lock()
		r.requests = append(r.requests, request{method: req.Method, header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		if respond != nil {
			respond(w, req)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) got() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.requests...)
}

func newSink(t *testing.T, options map[string]any) *Sink {
	t.Helper()
	return newSinkEnv(t, options, sinks.Env{})
}

func newSinkEnv(t *testing.T, options map[string]any, env sinks.Env) *Sink {
	t.Helper()
	s, err := New("test", options, env)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*Sink)
}

func delivery(body string) sinks.Delivery {
	return sinks.Delivery{
		MsgID:      "msg_2mRBnD3d8Jq0Qz",
		Source:     "recall",
		Event:      "transcript.failed",
		Rules:      []string{"captions"},
		Body:       []byte(body),
		Data:       map[string]any{"event": "transcript.failed", "sub_code": "zoom_captions_failure", "msg_id": "msg_2mRBnD3d8Jq0Qz"},
		ReceivedAt: time.Date(2025, 3, 19, 17, 44, 7, 0, time.UTC),
		Attempt:    1,
	}
}

func newSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// assertNoSecrets fails when err's text shows any of secrets.
func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows secret %q", err, s)
		}
	}
}

func TestNewValidation(t *testing.T) {
	secret := newSecret(t)
	tests := []struct {
		name    string
		options map[string]any
		want    []string // each a line of the joined error
	}{
		{name: "missing url", options: map[string]any{}, want: []string{"url: required"}},
		{name: "bad scheme", options: map[string]any{"url": "ftp://user:" + secretPass + "@example.com/"}, want: []string{"url: scheme must be http or https"}},
		{name: "unparseable url", options: map[string]any{"url": "https://user:" + secretPass + "@exa mple.com/%zz"}, want: []string{"url: invalid URL"}},
		{name: "no host", options: map[string]any{"url": "https:///path"}, want: []string{"url: host required"}},
		{name: "bad method", options: map[string]any{"url": "https://example.com", "method": "PO ST"}, want: []string{"method: invalid HTTP method"}},
		{name: "bad header name", options: map[string]any{"url": "https://example.com", "headers": map[string]any{"Bad Name": secretHeader}}, want: []string{`headers: invalid header name "Bad Name"`}},
		{name: "reserved header", options: map[string]any{"url": "https://example.com", "headers": map[string]any{"idempotency-key": secretHeader}}, want: []string{"headers: Idempotency-Key is set by the sink"}},
		{name: "header value newline", options: map[string]any{"url": "https://example.com", "headers": map[string]any{"X-Token": "a\r\nb" + secretHeader}}, want: []string{"headers: invalid value for X-Token"}},
		{name: "headers not a map", options: map[string]any{"url": "https://example.com", "headers": "x"}, want: []string{"headers: invalid value (want a mapping)"}},
		{name: "zero timeout", options: map[string]any{"url": "https://example.com", "timeout": "0s"}, want: []string{"timeout: must be positive"}},
		{name: "bad timeout", options: map[string]any{"url": "https://example.com", "timeout": "soon"}, want: []string{"timeout: invalid duration (want Go syntax such as 250ms, 10s, 5m)"}},
		{name: "bad template", options: map[string]any{"url": "https://example.com", "body_template": "{{ .event "}, want: []string{"body_template: invalid template: "}},
		{name: "bad signing secret", options: map[string]any{"url": "https://example.com", "signing_secret": "whsec_!!" + secretPass}, want: []string{"signing_secret: invalid (want whsec_ followed by base64)"}},
		{name: "empty signing key", options: map[string]any{"url": "https://example.com", "signing_secret": "whsec_"}, want: []string{"signing_secret: invalid (want whsec_ followed by base64)"}},
		{name: "unknown key", options: map[string]any{"url": "https://example.com", "urls": "x"}, want: []string{"urls: unknown key"}},
		{name: "several problems", options: map[string]any{"method": "", "timeout": "-1s"}, want: []string{"url: required", "method: invalid HTTP method", "timeout: must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("test", tt.options, sinks.Env{})
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("error = %q, want %d problems %q", err, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
				}
			}
			assertNoSecrets(t, err, secretPass, secretHeader, secret)
		})
	}
}

func TestNewValid(t *testing.T) {
	s := newSink(t, map[string]any{
		"url":            "http://127.0.0.1:1/hook",
		"method":         "put",
		"headers":        map[string]any{"X-Api-Key": "k", "Content-Type": "text/plain"},
		"timeout":        "2s",
		"body_template":  `{"e": {{ json .event }}}`,
		"signing_secret": newSecret(t),
	})
	if s.method != http.MethodPut || s.client.Timeout != 2*time.Second || s.tmpl == nil || s.signer == nil {
		t.Errorf("sink = %+v, options not applied", s)
	}
	if Type.New == nil || Type.Concurrency != 0 {
		t.Errorf("Type = %+v", Type)
	}
}

func TestSendStatusClassification(t *testing.T) {
	type class int
	const (
		delivered class = iota
		retryable
		permanent
	)
	tests := []struct {
		name string
		code int
		want class
	}{
		{"200 ok", 200, delivered},
		{"201 created", 201, delivered},
		{"204 no content", 204, delivered},
		{"301 moved permanently", 301, permanent},
		{"302 found", 302, permanent},
		{"400 bad request", 400, permanent},
		{"401 unauthorized", 401, permanent},
		{"403 forbidden", 403, permanent},
		{"404 not found", 404, permanent},
		{"408 request timeout", 408, retryable},
		{"409 conflict", 409, permanent},
		{"410 gone", 410, permanent},
		{"422 unprocessable entity", 422, permanent},
		{"425 too early", 425, retryable},
		{"429 too many requests", 429, retryable},
		{"500 internal server error", 500, retryable},
		{"502 bad gateway", 502, retryable},
		{"503 service unavailable", 503, retryable},
		{"504 gateway timeout", 504, retryable},
	}
	var followed atomic.Int32
	target := newRecorder(t, func(http.ResponseWriter, *http.Request) { followed.Add(1) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.code >= 300 && tt.code < 400 {
					w.Header().Set("Location", target.URL)
				}
				w.WriteHeader(tt.code)
				_, _ = io.WriteString(w, "reason from server")
			})
			s := newSink(t, map[string]any{"url": srv.URL})
			err := s.Send(context.Background(), delivery(`{"event":"x"}`))
			switch tt.want {
			case delivered:
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
				return
			case retryable:
				if err == nil || sinks.IsPermanent(err) {
					t.Fatalf("Send = %v, want retryable", err)
				}
			case permanent:
				if !sinks.IsPermanent(err) {
					t.Fatalf("Send = %v, want permanent", err)
				}
			}
			if _, ok := sinks.RetryAfterOf(err); ok {
				t.Errorf("Send = %v, want no Retry-After", err)
			}
			var se *sinks.StatusError
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Errorf("Send = %v, want a *sinks.StatusError with code %d", err, tt.code)
			}
			if !strings.Contains(err.Error(), "reason from server") {
				t.Errorf("Send = %q, want the response body in the reason", err)
			}
		})
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("redirect target hit %d times, want 0 (redirects must not be followed)", n)
	}
}

func TestSendNetworkFailures(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s := newSink(t, map[string]any{"url": "http://user:" + secretPass + "@" + addr + "/hook?token=" + secretPass})
		err = s.Send(context.Background(), delivery(`{}`))
		if err == nil || sinks.IsPermanent(err) {
			t.Fatalf("Send = %v, want retryable", err)
		}
		if _, ok := sinks.RetryAfterOf(err); ok {
			t.Errorf("Send = %v, want no Retry-After", err)
		}
		var opErr *net.OpError
		if !errors.As(err, &opErr) {
			t.Errorf("Send = %v, want a *net.OpError inside", err)
		}
		if !strings.Contains(err.Error(), "http://xxxxx@"+addr+"/[redacted]?[redacted]") {
			t.Errorf("Send = %q, want the redacted URL", err)
		}
		assertNoSecrets(t, err, secretPass, "user:")
	})
	t.Run("timeout", func(t *testing.T) {
		srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // until the client gives up
		})
		u, _ := url.Parse(srv.URL)
		u.User = url.UserPassword("user", secretPass)
		s := newSink(t, map[string]any{"url": u.String(), "timeout": "50ms"})
		err := s.Send(context.Background(), delivery(`{}`))
		if err == nil || sinks.IsPermanent(err) {
			t.Fatalf("Send = %v, want retryable", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Send = %v, want a timeout", err)
		}
		assertNoSecrets(t, err, secretPass)
	})
	t.Run("context canceled", func(t *testing.T) {
		srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		s := newSink(t, map[string]any{"url": srv.URL})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := s.Send(ctx, delivery(`{}`))
		if !errors.Is(err, context.Canceled) || sinks.IsPermanent(err) {
			t.Errorf("Send = %v, want retryable context.Canceled", err)
		}
	})
}

func TestSendRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 19, 17, 44, 6, 0, time.UTC)
	tests := []struct {
		name       string
		code       int
		retryAfter string
		want       time.Duration
	}{
		{name: "429 seconds", code: 429, retryAfter: "30", want: 30 * time.Second},
		{name: "503 seconds", code: 503, retryAfter: "2", want: 2 * time.Second},
		{name: "429 http-date", code: 429, retryAfter: now.Add(2 * time.Minute).Format(http.TimeFormat), want: 2 * time.Minute},
		{name: "503 past http-date", code: 503, retryAfter: now.Add(-time.Minute).Format(http.TimeFormat), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", tt.retryAfter)
				w.WriteHeader(tt.code)
			})
			s := newSinkEnv(t, map[string]any{"url": srv.URL}, sinks.Env{Now: func() time.Time { return now }})
			err := s.Send(context.Background(), delivery(`{}`))
			wait, ok := sinks.RetryAfterOf(err)
			if !ok || wait != tt.want || sinks.IsPermanent(err) {
				t.Errorf("Send = %v: RetryAfterOf = %v, %v; want %v, true", err, wait, ok, tt.want)
			}
		})
	}
}

func TestSendBodyAndHeaders(t *testing.T) {
	big := make([]byte, 0, 150<<10)
	big = append(big, `{"event":"transcript.data","data":{"words":[`...)
	for i := 0; len(big) < 140<<10; i++ {
		if i > 0 {
			big = append(big, ',')
		}
		big = append(big, `{"text":"word","start":1.25e0,"x":"\u00e9<&>"}`...)
	}
	big = append(big, "]}}"...)
	tests := []struct {
		name string
		body []byte
	}{
		{name: "large body", body: big},
		{name: "unicode", body: []byte(`{"event":"bot.done","data":{"title":"Réunion — 会议 🎙️","raw":"\u00e9\ud83c\udf99","html":"<b>&amp;</b>"}}`)},
		{name: "indented with trailing newline", body: []byte("{\n  \"event\": \"x\",\n  \"n\": 1.50\n}\n")},
		{name: "not json", body: []byte("plain\x00bytes\xff")},
		{name: "empty", body: nil},
	}
	srv := newRecorder(t, nil)
	s := newSinkEnv(t, map[string]any{"url": srv.URL + "/in", "headers": map[string]any{"X-Api-Key": "k-123"}}, sinks.Env{UserAgent: "relay/1.2.3"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(srv.got())
			d := delivery(string(tt.body))
			if err := s.Send(context.Background(), d); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.got()[n]
			if !bytes.Equal(got.body, tt.body) {
				t.Errorf("body differs from input: got %d bytes, want %d", len(got.body), len(tt.body))
			}
			for k, want := range map[string]string{
				"Content-Type":    "application/json",
				"Idempotency-Key": d.MsgID,
				"User-Agent":      "relay/1.2.3",
				"X-Api-Key":       "k-123",
			} {
				if v := got.header.Get(k); v != want {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
			if got.method != http.MethodPost {
				t.Errorf("method = %s, want POST", got.method)
			}
			if got.header.Get("Webhook-Signature") != "" {
				t.Error("unsigned sink sent webhook-signature")
			}
		})
	}
}

func TestSendSigned(t *testing.T) {
	secret := newSecret(t)
	srv := newRecorder(t, nil)
	s := newSink(t, map[string]any{"url": srv.URL, "signing_secret": secret, "method": "PUT"})
	body := `{"event":"recording.done","data":{"title":"Réunion 🎙️"}}`
	d := delivery(body)
	if err := s.Send(context.Background(), d); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.got()[0]
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, got.header); err != nil {
		t.Errorf("svix Verify: %v", err)
	}
	if id := got.header.Get("webhook-id"); id != d.MsgID {
		t.Errorf("webhook-id = %q, want %q", id, d.MsgID)
	}
	if got.method != http.MethodPut {
		t.Errorf("method = %s, want PUT", got.method)
	}
	tampered := append([]byte(nil), got.body...)
	tampered[2] = 'E'
	if err := wh.Verify(tampered, got.header); err == nil {
		t.Error("svix Verify accepted a tampered body")
	}
	other, _ := svix.NewWebhook(newSecret(t))
	if err := other.Verify(got.body, got.header); err == nil {
		t.Error("svix Verify accepted another secret")
	}
}

func TestSendTemplate(t *testing.T) {
	srv := newRecorder(t, nil)
	s := newSink(t, map[string]any{
		"url":           srv.URL,
		"body_template": `{"text": {{ printf "%s: %s" .event .sub_code | json }}}`,
		"headers":       map[string]any{"content-type": "text/plain; charset=utf-8"},
	})
	if err := s.Send(context.Background(), delivery(`{}`)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.got()[0]
	if want := `{"text": "transcript.failed: zoom_captions_failure"}`; string(got.body) != want {
		t.Errorf("body = %s, want %s", got.body, want)
	}
	if ct := got.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q, want the configured one", ct)
	}

	bad := newSink(t, map[string]any{"url": srv.URL, "body_template": `{{ index .payload 3 }}`})
	err := bad.Send(context.Background(), delivery(`{}`))
	if !sinks.IsPermanent(err) {
		t.Errorf("Send with failing template = %v, want permanent", err)
	}
}

func TestSendTemplateInvalidJSON(t *testing.T) {
	tests := []struct {
		name        string
		tmpl        string
		contentType string // "" for the default
		want        string // "" when the body is sent
	}{
		{name: "unquoted string", tmpl: `{"sub_code": {{ .sub_code }}}`, want: "body_template: rendered body is not valid JSON: invalid character 'z' looking for beginning of value (offset 14)"},
		{name: "trailing comma", tmpl: `{"a": 1,}`, want: "body_template: rendered body is not valid JSON: invalid character '}' looking for beginning of object key string (offset 9)"},
		{name: "two values", tmpl: `{} {}`, want: "body_template: rendered body is not valid JSON: invalid character '{' after top-level value (offset 4)"},
		{name: "empty", tmpl: `{{ if false }}x{{ end }}`, want: "body_template: rendered body is not valid JSON: unexpected end of JSON input (offset 0)"},
		{name: "json with charset", tmpl: `{"event": {{ .event }}}`, contentType: "application/json; charset=utf-8", want: "body_template: rendered body is not valid JSON: "},
		{name: "+json type", tmpl: `{"event": {{ .event }}}`, contentType: "application/vnd.api+json", want: "body_template: rendered body is not valid JSON: "},
		{name: "text is not checked", tmpl: `event {{ .event }}`, contentType: "text/plain"},
		{name: "valid", tmpl: `{"event": {{ json .event }}, "n": [1, 2.5, null]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, nil)
			opts := map[string]any{"url": srv.URL, "body_template": tt.tmpl}
			if tt.contentType != "" {
				opts["headers"] = map[string]any{"Content-Type": tt.contentType}
			}
			s := newSink(t, opts)
			err := s.Send(context.Background(), delivery(`{}`))
			_, perr := s.Preview(delivery(`{}`))
			if tt.want == "" {
				if err != nil || perr != nil || len(srv.got()) != 1 {
					t.Fatalf("Send = %v, Preview = %v, %d requests; want the body sent", err, perr, len(srv.got()))
				}
				return
			}
			if !sinks.IsPermanent(err) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Send = %v, want permanent %q", err, tt.want)
			}
			if n := len(srv.got()); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
			if perr == nil || perr.Error() != err.Error() {
				t.Errorf("Preview = %v, want Send's error", perr)
			}
		})
	}
}

// TestSendTemplateJSONValues checks that {{ json ... }} makes valid JSON of
// any value: quotes, newlines, markup and nested metadata.
func TestSendTemplateJSONValues(t *testing.T) {
	srv := newRecorder(t, nil)
	s := newSink(t, map[string]any{
		"url":           srv.URL,
		"body_template": `{"metadata": {{ json .recording.metadata }}, "name": {{ json .recording.metadata.name }}, "n": {{ json .n }}}`,
	})
	metadata := map[string]any{
		"name":   "say \"hi\"\n\tand <b>bye</b> & \\ \u2028",
		"nested": map[string]any{"list": []any{1.5, nil, true, "x\"y"}},
		"empty":  "",
	}
	d := delivery(`{}`)
	d.Data["recording"] = map[string]any{"id": "r1", "metadata": metadata}
	d.Data["n"] = 3.25
	if err := s.Send(context.Background(), d); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var got struct {
		Metadata map[string]any `json:"metadata"`
		Name     string         `json:"name"`
		N        float64        `json:"n"`
	}
	if err := json.Unmarshal(srv.got()[0].body, &got); err != nil {
		t.Fatalf("body %s: %v", srv.got()[0].body, err)
	}
	if !reflect.DeepEqual(got.Metadata, metadata) || got.Name != metadata["name"] || got.N != 3.25 {
		t.Errorf("body decodes to %+v, want the metadata back", got)
	}
}

func TestErrorsNeverShowCredentials(t *testing.T) {
	secret := newSecret(t)
	// A server that echoes every credential it got back into its error body.
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "rejected "+user+":"+pass+" "+r.Header.Get("X-Auth")+" "+r.URL.RawQuery)
	})
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("relay-user", secretPass)
	u.RawQuery = "key=" + secretPass
	s := newSink(t, map[string]any{
		"url":            u.String(),
		"headers":        map[string]any{"X-Auth": secretHeader},
		"signing_secret": secret,
	})
	err := s.Send(context.Background(), delivery(`{}`))
	if !sinks.IsPermanent(err) {
		t.Fatalf("Send = %v, want permanent", err)
	}
	if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("Send = %q, want status and body", err)
	}
	assertNoSecrets(t, err, secretPass, secretHeader, secret, "relay-user")

	p, err := s.Preview(delivery(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	shown := p.Request
	for k, v := range p.Headers {
		shown += "\n" + k + ": " + v
	}
	for _, sec := range []string{secretPass, secretHeader, secret, "relay-user"} {
		if strings.Contains(shown, sec) {
			t.Errorf("preview shows %q:\n%s", sec, shown)
		}
	}
}

// TestErrorsNeverShowURLPath sends to a URL whose path and query are the
// credential, as webhook URLs are, and fails in every way a send can: no
// error text, and so no dead-letter reason or log line, may show them.
func TestErrorsNeverShowURLPath(t *testing.T) {
	const (
		secretPath  = "/T0000000/B0000000/XXXXsecretPathXXXX"
		secretQuery = "token=s3cr3t-query-value&sig=0123456789abcdef"
	)
	secrets := []string{secretPath, "T0000000/B0000000", "XXXXsecretPathXXXX", secretQuery, "s3cr3t-query-value", "0123456789abcdef"}
	// echo answers with status and quotes the whole request URL back, as
	// some servers do in their error pages.
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "no route for "+r.URL.String()+" (path "+r.URL.Path+", segment "+strings.TrimPrefix(r.URL.Path, "/")+", query "+r.URL.RawQuery+")")
		}
	}
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}
	tests := []struct {
		name      string
		base      func(t *testing.T) string
		timeout   string
		permanent bool
	}{
		{name: "connection refused", base: refused},
		{name: "500", base: func(t *testing.T) string { return newRecorder(t, echo(500)).URL }},
		{name: "400", base: func(t *testing.T) string { return newRecorder(t, echo(400)).URL }, permanent: true},
		{name: "404", base: func(t *testing.T) string { return newRecorder(t, echo(404)).URL }, permanent: true},
		{name: "timeout", timeout: "50ms", base: func(t *testing.T) string {
			return newRecorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }).URL
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := tt.base(t)
			opts := map[string]any{"url": base + secretPath + "?" + secretQuery}
			if tt.timeout != "" {
				opts["timeout"] = tt.timeout
			}
			s := newSink(t, opts)
			err := s.Send(context.Background(), delivery(`{}`))
			if err == nil || sinks.IsPermanent(err) != tt.permanent {
				t.Fatalf("Send = %v, want permanent %v", err, tt.permanent)
			}
			if want := "post " + base + "/[redacted]?[redacted]: "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Send = %q, want it to start with %q", err, want)
			}
			assertNoSecrets(t, err, secrets...)

			p, err := s.Preview(delivery(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			if want := "POST " + base + "/[redacted]?[redacted]"; p.Request != want {
				t.Errorf("preview request = %q, want %q", p.Request, want)
			}
		})
	}
}

func TestPreview(t *testing.T) {
	s := newSink(t, map[string]any{"url": "https://user:" + secretPass + "@example.com/in?t=1", "headers": map[string]any{"Authorization": secretHeader}})
	body := `{"event":"bot.done"}`
	p, err := s.Preview(delivery(body))
	if err != nil {
		t.Fatal(err)
	}
	want := sinks.Preview{
		Kind:    "http",
		Request: "POST https://xxxxx@example.com/[redacted]?[redacted]",
		Headers: map[string]string{
			"Authorization":   "[redacted]",
			"Content-Type":    "application/json",
			"Idempotency-Key": "msg_2mRBnD3d8Jq0Qz",
			"User-Agent":      "relay", // the zero Env's
		},
		Body: body,
	}
	if p.Kind != want.Kind || p.Request != want.Request || p.Body != want.Body || len(p.Headers) != len(want.Headers) {
		t.Fatalf("Preview = %+v, want %+v", p, want)
	}
	for k, v := range want.Headers {
		if p.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, p.Headers[k], v)
		}
	}
}
