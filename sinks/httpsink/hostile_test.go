package httpsink

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/sinkstest"
)

// TestHostileDestinations: a destination that never answers, answers a
// byte at a time or sends 100 MB takes one attempt no longer than the
// sink's timeout, and what is read of it is bounded; each failure says
// clearly what happened.
func TestHostileDestinations(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name string
		dest func(t *testing.T) *sinkstest.Server
		// want: the error's text, with ADDR for the server's host:port; ""
		// for a delivery.
		want      string
		permanent bool
		maxRead   int64 // the most the server may have written
	}{
		{
			name: "never answers",
			dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Hang(t) },
			want: "post http://ADDR/[redacted]: timeout after 300ms awaiting the response",
		},
		{
			name: "answers a byte at a time",
			dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Dribble(t, 50*time.Millisecond) },
			want: "post http://ADDR/[redacted]: timeout after 300ms reading the response",
		},
		{
			name: "fails, and sends the reason a byte at a time",
			dest: func(t *testing.T) *sinkstest.Server {
				return sinkstest.DribbleBody(t, http.StatusServiceUnavailable, 50*time.Millisecond)
			},
			want: "post http://ADDR/[redacted]: status 503 Service Unavailable: xxxxxx (timeout after 300ms reading the response)",
		},
		{
			name:    "accepts, with a 100 MB body",
			dest:    func(t *testing.T) *sinkstest.Server { return sinkstest.Huge(t, http.StatusOK, 100<<20) },
			maxRead: 16 << 20,
		},
		{
			name: "fails, with a 100 MB body",
			dest: func(t *testing.T) *sinkstest.Server {
				return sinkstest.Huge(t, http.StatusInternalServerError, 100<<20)
			},
			want:    "post http://ADDR/[redacted]: status 500 Internal Server Error", // blank, so no text
			maxRead: 16 << 20,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tt.dest(t)
			s := newSink(t, map[string]any{"url": srv.URL + "/hook/secret-token", "timeout": timeout.String()})
			start := time.Now()
			err := s.Send(context.Background(), delivery(`{}`))
			took := time.Since(start)
			if took > timeout+time.Second {
				t.Errorf("the attempt took %s with a timeout of %s", took, timeout)
			}
			want := strings.ReplaceAll(tt.want, "ADDR", strings.TrimPrefix(srv.URL, "http://"))
			switch {
			case want == "" && err != nil:
				t.Errorf("Send = %v, want a delivery", err)
			case want != "" && (err == nil || !matchesUpTo(err.Error(), want)):
				t.Errorf("Send = %v\nwant %s", err, want)
			case err != nil && sinks.IsPermanent(err) != tt.permanent:
				t.Errorf("Send = %v: permanent %v, want %v", err, sinks.IsPermanent(err), tt.permanent)
			}
			if tt.maxRead > 0 {
				if n := srv.Written(t, 10*time.Second); n > tt.maxRead {
					t.Errorf("the destination got %d bytes out, want at most %d", n, tt.maxRead)
				}
			}
		})
	}
}

// matchesUpTo reports whether got is want, where "xxxxxx" in want stands
// for the part of a dribbled body that arrived in time: one x or more.
func matchesUpTo(got, want string) bool {
	i := strings.Index(want, "xxxxxx")
	if i < 0 {
		return got == want
	}
	prefix, suffix := want[:i], want[i+len("xxxxxx"):]
	if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, suffix) {
		return false
	}
	mid := got[len(prefix) : len(got)-len(suffix)]
	return mid != "" && strings.Trim(mid, "x") == ""
}
