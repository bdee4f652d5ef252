package slack

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/sinkstest"
)

// TestHostileDestinations: a webhook or Web API endpoint that never
// answers, answers a byte at a time or sends 100 MB takes one request no
// longer than the sink's timeout, and what is read of it is bounded; each
// failure says clearly what happened (and shows no secret).
func TestHostileDestinations(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name string
		api  bool // Web API (token) rather than a webhook
		dest func(t *testing.T) *sinkstest.Server
		// want: the error's text, ADDR for the server's host:port; "" for
		// a delivery.
		want    string
		maxRead int64
	}{
		{name: "webhook never answers", dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Hang(t) },
			want: "slack webhook: post http://ADDR/[redacted]: timeout after 300ms awaiting the response"},
		{name: "webhook answers a byte at a time", dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Dribble(t, 50*time.Millisecond) },
			want: "slack webhook: post http://ADDR/[redacted]: timeout after 300ms reading the response"},
		{name: "webhook sends 100 MB", dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Huge(t, http.StatusOK, 100<<20) },
			maxRead: 16 << 20},
		{name: "API never answers", api: true, dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Hang(t) },
			want: "slack chat.postMessage: post http://ADDR/api/chat.postMessage: timeout after 300ms awaiting the response"},
		{name: "API answers a byte at a time", api: true, dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Dribble(t, 50*time.Millisecond) },
			want: "slack chat.postMessage: post http://ADDR/api/chat.postMessage: timeout after 300ms reading the response"},
		{name: "API sends 100 MB", api: true, dest: func(t *testing.T) *sinkstest.Server { return sinkstest.Huge(t, http.StatusOK, 100<<20) },
			want: "slack chat.postMessage: answer larger than 1048576 bytes: response body too large", maxRead: 16 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tt.dest(t)
			opts := map[string]any{"webhook_url": srv.URL + "/services/" + hookSecret, "timeout": timeout.String()}
			if tt.api {
				opts = map[string]any{"token": tokenSecret, "channel": "C1", "api_url": srv.URL + "/api/", "timeout": timeout.String()}
			}
			s := newSink(t, opts)
			start := time.Now()
			err := s.Send(context.Background(), loadDelivery(t, goldenCases[0].path))
			if took := time.Since(start); took > timeout+time.Second {
				t.Errorf("the request took %s with a timeout of %s", took, timeout)
			}
			want := strings.ReplaceAll(tt.want, "ADDR", strings.TrimPrefix(srv.URL, "http://"))
			switch {
			case want == "" && err != nil:
				t.Errorf("Send = %v, want a delivery", err)
			case want != "" && (err == nil || err.Error() != want):
				t.Errorf("Send = %v\nwant %s", err, want)
			case err != nil && sinks.IsPermanent(err):
				t.Errorf("Send = %v, want retryable", err)
			}
			assertNoSecrets(t, err)
			if tt.maxRead > 0 {
				if n := srv.Written(t, 10*time.Second); n > tt.maxRead {
					t.Errorf("the destination got %d bytes out, want at most %d", n, tt.maxRead)
				}
			}
		})
	}
}
