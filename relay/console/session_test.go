package console

import (
	"strings"
	"testing"
	"time"
)

func TestValidSession(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	good := NewSession("tok", now)
	tests := []struct {
		name, token, value string
		at                 time.Time
		want               bool
	}{
		{"its own session", "tok", good, now, true},
		{"just before expiry", "tok", good, now.Add(SessionLifetime - time.Second), true},
		{"expired", "tok", good, now.Add(SessionLifetime), false},
		{"another token", "other", good, now, false},
		{"no token in force", "", good, now, false},
		{"the token itself", "tok", "tok", now, false},
		{"empty", "tok", "", now, false},
		{"expiry moved", "tok", strings.Replace(good, ".", ".9", 1), now, false},
		{"mac changed", "tok", good[:len(good)-1] + "A", now, false},
		{"other version", "tok", "v2" + good[2:], now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidSession(tt.token, tt.value, tt.at); got != tt.want {
				t.Errorf("ValidSession(%q, %q) = %v, want %v", tt.token, tt.value, got, tt.want)
			}
		})
	}
	if strings.Contains(good, "tok") {
		t.Errorf("session %q contains the token", good)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "/",
		"/events?where=x":    "/events?where=x",
		"//evil.example/":    "/",
		"/\\evil.example":    "/",
		"https://evil.test/": "/",
		"/a\r\nSet-Cookie:":  "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzValidSession: no cookie value but one the token made is valid, and
// none panics.
func FuzzValidSession(f *testing.F) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Add(NewSession("tok", now))
	f.Add("v1.0.")
	f.Add("tok")
	f.Fuzz(func(t *testing.T, value string) {
		if ValidSession("tok", value, now) && value != NewSession("tok", now) {
			// Another value is valid only if it is a session the token
			// signed with another expiry still ahead.
			if !strings.HasPrefix(value, "v1.") {
				t.Fatalf("%q accepted", value)
			}
		}
	})
}
