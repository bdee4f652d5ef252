package sinks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClassifyStatus(t *testing.T) {
	now := time.Date(2025, 3, 19, 17, 44, 6, 0, time.UTC)
	type want int
	const (
		delivered want = iota
		retryable
		permanent
	)
	tests := []struct {
		name       string
		code       int
		retryAfter string
		want       want
		wait       time.Duration
		hasWait    bool
	}{
		{name: "100 continue", code: 100, want: permanent},
		{name: "200 ok", code: 200, want: delivered},
		{name: "201 created", code: 201, want: delivered},
		{name: "204 no content", code: 204, want: delivered},
		{name: "301 moved", code: 301, want: permanent},
		{name: "302 found", code: 302, want: permanent},
		{name: "304 not modified", code: 304, want: permanent},
		{name: "400 bad request", code: 400, want: permanent},
		{name: "401 unauthorized", code: 401, want: permanent},
		{name: "403 forbidden", code: 403, want: permanent},
		{name: "404 not found", code: 404, want: permanent},
		{name: "408 request timeout", code: 408, want: retryable},
		{name: "409 conflict", code: 409, want: permanent},
		{name: "410 gone", code: 410, want: permanent},
		{name: "422 unprocessable", code: 422, want: permanent},
		{name: "425 too early", code: 425, want: retryable},
		{name: "429 without retry-after", code: 429, want: retryable},
		{name: "429 seconds", code: 429, retryAfter: "7", want: retryable, wait: 7 * time.Second, hasWait: true},
		{name: "429 http-date", code: 429, retryAfter: now.Add(90 * time.Second).Format(http.TimeFormat), want: retryable, wait: 90 * time.Second, hasWait: true},
		{name: "429 invalid retry-after", code: 429, retryAfter: "soon", want: retryable},
		{name: "500 internal", code: 500, want: retryable},
		{name: "502 bad gateway", code: 502, want: retryable},
		{name: "503 with retry-after", code: 503, retryAfter: "120", want: retryable, wait: 2 * time.Minute, hasWait: true},
		{name: "504 gateway timeout", code: 504, want: retryable},
		{name: "400 ignores retry-after", code: 400, retryAfter: "5", want: permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			err := ClassifyStatus(tt.code, "", h, "body text", now)
			switch tt.want {
			case delivered:
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			case retryable:
				if err == nil || IsPermanent(err) {
					t.Fatalf("err = %v, want retryable", err)
				}
			case permanent:
				if !IsPermanent(err) {
					t.Fatalf("err = %v, want permanent", err)
				}
			}
			wait, ok := RetryAfterOf(err)
			if ok != tt.hasWait || wait != tt.wait {
				t.Errorf("RetryAfterOf = %v, %v; want %v, %v", wait, ok, tt.wait, tt.hasWait)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Fatalf("err = %#v, want *StatusError with code %d", err, tt.code)
			}
			if !strings.Contains(err.Error(), "body text") || !strings.Contains(err.Error(), fmt.Sprint(tt.code)) {
				t.Errorf("err = %q, want status and body", err)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 19, 17, 44, 6, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{name: "empty", in: "", ok: false},
		{name: "zero", in: "0", want: 0, ok: true},
		{name: "seconds", in: "30", want: 30 * time.Second, ok: true},
		{name: "spaces", in: " 2 ", want: 2 * time.Second, ok: true},
		{name: "negative", in: "-1", ok: false},
		{name: "fraction", in: "1.5", ok: false},
		{name: "huge", in: "99999999999999999", want: time.Duration(1<<63-1) / time.Second * time.Second, ok: true},
		{name: "imf date", in: "Wed, 19 Mar 2025 17:45:06 GMT", want: time.Minute, ok: true},
		{name: "rfc850 date", in: "Wednesday, 19-Mar-25 17:44:16 GMT", want: 10 * time.Second, ok: true},
		{name: "past date", in: "Wed, 19 Mar 2025 17:00:00 GMT", want: 0, ok: true},
		{name: "garbage", in: "tomorrow", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestReadErrorBody(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "plain", in: "channel_not_found", want: "channel_not_found"},
		{name: "whitespace collapsed", in: "  <html>\r\n\t<body>bad</body>\n</html>\n", want: "<html> <body>bad</body> </html>"},
		{name: "control chars", in: "a\x00b\x1bc", want: "a b c"},
		{name: "invalid utf8", in: "a\xffb", want: "a\uFFFDb"},
		{name: "truncated", in: strings.Repeat("x", MaxErrorBody+10), want: strings.Repeat("x", MaxErrorBody) + "…"},
		{name: "exact limit", in: strings.Repeat("x", MaxErrorBody), want: strings.Repeat("x", MaxErrorBody)},
		{name: "split rune dropped", in: strings.Repeat("x", MaxErrorBody-1) + "é" + "tail", want: strings.Repeat("x", MaxErrorBody-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReadErrorBody(strings.NewReader(tt.in)); got != tt.want {
				t.Errorf("ReadErrorBody = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "no path", in: "https://example.com", want: "https://example.com"},
		{name: "root", in: "https://example.com/", want: "https://example.com/"},
		{name: "path", in: "https://example.com/hook", want: "https://example.com/[redacted]"},
		{name: "token in path", in: "https://hooks.example/T000/B000/XXXX", want: "https://hooks.example/[redacted]"},
		{name: "escaped path", in: "https://hooks.example/a%2Fb/s%20c", want: "https://hooks.example/[redacted]"},
		{name: "port kept", in: "http://127.0.0.1:8443/in", want: "http://127.0.0.1:8443/[redacted]"},
		{name: "userinfo", in: "https://user:hunter2@example.com/hook", want: "https://xxxxx@example.com/[redacted]"},
		{name: "token as user", in: "https://tok3n@example.com/", want: "https://xxxxx@example.com/"},
		{name: "query", in: "https://example.com/hook?token=s3cret&x=1", want: "https://example.com/[redacted]?[redacted]"},
		{name: "query on root", in: "https://example.com/?token=s3cret", want: "https://example.com/?[redacted]"},
		{name: "query without path", in: "https://example.com?token=s3cret", want: "https://example.com?[redacted]"},
		{name: "empty query", in: "https://example.com/hook?", want: "https://example.com/[redacted]?[redacted]"},
		{name: "fragment", in: "https://example.com/hook#s3cret", want: "https://example.com/[redacted]"},
		{name: "everything", in: "https://user:pw@hooks.example:8443/T000/B000/XXXX?token=t#f", want: "https://xxxxx@hooks.example:8443/[redacted]?[redacted]"},
		{name: "opaque", in: "mailto:ops@example.com", want: "mailto:[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := RedactURL(u); got != tt.want {
				t.Errorf("RedactURL = %q, want %q", got, tt.want)
			}
		})
	}
	if RedactURL(nil) != "" {
		t.Error("RedactURL(nil) != \"\"")
	}
}

func TestURLSecrets(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{in: "https://example.com/", want: nil},
		{in: "https://example.com/in", want: nil},
		{in: "https://example.com/hook", want: []string{"/hook"}},
		{in: "https://user:hunter2@example.com/", want: []string{"hunter2", "user"}},
		{in: "https://hooks.example/services/T000/B000/XXXXsecretXXXX?token=s3cr3tvalue&x=1",
			want: []string{"/services/T000/B000/XXXXsecretXXXX", "services/T000/B000/XXXXsecretXXXX", "token=s3cr3tvalue&x=1", "XXXXsecretXXXX", "s3cr3tvalue"}},
		{in: "https://example.com/a%2Fb/tok%20en-0123456789", want: []string{"/a%2Fb/tok%20en-0123456789", "a%2Fb/tok%20en-0123456789", "/a/b/tok en-0123456789", "a/b/tok en-0123456789", "tok en-0123456789"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := url.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := URLSecrets(u); !slices.Equal(got, tt.want) {
				t.Errorf("URLSecrets = %q, want %q", got, tt.want)
			}
		})
	}
	if URLSecrets(nil) != nil {
		t.Error("URLSecrets(nil) != nil")
	}
}

func TestTransportErrorHidesURL(t *testing.T) {
	secretURL := "https://user:hunter2@example.com/hook?token=s3cret"
	inner := fmt.Errorf("dial: %w", context.DeadlineExceeded)
	err := TransportError(http.MethodPost, "https://xxxxx@example.com/hook", &url.Error{Op: "Post", URL: secretURL, Err: inner})
	for _, s := range []string{"hunter2", "s3cret", "user"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("err = %q contains %q", err, s)
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if IsPermanent(err) {
		t.Errorf("err = %v, want retryable", err)
	}
}

func TestRedact(t *testing.T) {
	base := errors.New("post https://hooks.example/T0/B0/s3cret: refused")
	err := Permanent(Redact(base, "", "https://hooks.example/T0/B0/s3cret"))
	if got, want := err.Error(), "post [redacted]: refused"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, base) || !IsPermanent(err) {
		t.Error("Redact lost the wrapped error")
	}
	if Redact(base, "absent") != base {
		t.Error("Redact wrapped an error it did not change")
	}
	if Redact(nil, "x") != nil {
		t.Error("Redact(nil) != nil")
	}
}
