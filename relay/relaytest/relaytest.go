// Package relaytest holds the helpers the relay's tests share across
// packages: a bounded poll for a condition, a buffer that a process's
// output and the test may use at once, and a signed webhook request.
package relaytest

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// PollInterval is how often Poll and Eventually check their condition.
const PollInterval = 20 * time.Millisecond

// Poll calls cond every PollInterval until it holds or timeout has passed,
// and reports whether it held: for a wait whose failure message needs the
// state cond last saw (use Eventually otherwise).
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(PollInterval)
	}
	return true
}

// Eventually polls cond until it holds, failing the test after timeout
// with "timed out after <timeout> waiting for <what>".
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// LockedBuffer is a strings.Builder safe for concurrent Write and String.
type LockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SignedRequest is a webhook POST of body to url with the Svix headers of
// message id, timestamped at and signed by wh, as Svix sends it.
func SignedRequest(url string, wh *svix.Webhook, id string, at time.Time, body []byte) (*http.Request, error) {
	sig, err := wh.Sign(id, at, body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	return req, nil
}
