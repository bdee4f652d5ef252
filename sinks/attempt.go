package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// MaxResponseBody is the most of a response body a sink reads: an answer
// it needs (Slack's Web API) is far smaller, and the rest of a larger one
// is not read at all (the connection is closed instead of reused).
const MaxResponseBody = 64 << 10

// ErrResponseTooLarge is the read error of a response body past the limit
// LimitResponses set.
var ErrResponseTooLarge = errors.New("response body too large")

// HTTPAttempt follows one HTTP request of a sink (Method to Target, which
// is shown in errors and so must be redacted; see RedactURL) made with an
// http.Client whose Timeout bounds the whole attempt, response body
// included, so that an error can say how far the attempt got. Use Context
// for the request's context. Safe for concurrent use.
type HTTPAttempt struct {
	Method  string
	Target  string
	Timeout time.Duration

	answered atomic.Bool // the first byte of the response arrived
}

// Context returns ctx with a trace that notes when the first byte of the
// response arrives.
func (a *HTTPAttempt) Context(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotFirstResponseByte: func() { a.answered.Store(true) },
	})
}

// TimedOut describes err when it is the attempt running out of Timeout
// (and not ctx, the caller's context, ending): "post <target>: timeout
// after 10s connecting", "... awaiting the response" (not a byte of it
// yet) or "... reading the response" (it came, too slowly). The error is
// retryable and wraps what err wrapped. ok is false for any other error.
func (a *HTTPAttempt) TimedOut(ctx context.Context, err error) (_ error, ok bool) {
	var ne net.Error
	if err == nil || ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
		return nil, false
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // it quotes the URL: never show it
	}
	phase := "awaiting the response"
	var oe *net.OpError
	switch {
	case a.answered.Load():
		phase = "reading the response"
	case errors.As(err, &oe) && oe.Op == "dial":
		phase = "connecting"
	}
	return &timeoutError{
		msg: fmt.Sprintf("%s %s: timeout after %s %s", strings.ToLower(a.Method), a.Target, a.Timeout, phase),
		err: err,
	}, true
}

// RequestError describes err, the failure of http.Client.Do for the
// attempt: as TimedOut does when it is the attempt's timeout, else as
// TransportError does.
func (a *HTTPAttempt) RequestError(ctx context.Context, err error) error {
	if te, ok := a.TimedOut(ctx, err); ok {
		return te
	}
	return TransportError(a.Method, a.Target, err)
}

// ReadFailed adds to err, the outcome of a response whose body could not
// be read to the end, why: "(timeout after 10s reading the response)" when
// readErr is the attempt's timeout. Other read errors leave err as it is
// (the status said enough). Classification (Permanent, RetryAfter) is kept.
func (a *HTTPAttempt) ReadFailed(ctx context.Context, err, readErr error) error {
	if err == nil {
		return nil
	}
	if _, ok := a.TimedOut(ctx, readErr); !ok {
		return err
	}
	return &noteError{err: err, note: fmt.Sprintf("timeout after %s reading the response", a.Timeout)}
}

type timeoutError struct {
	msg string
	err error
}

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Unwrap() error { return e.err }

type noteError struct {
	err  error
	note string
}

func (e *noteError) Error() string { return e.err.Error() + " (" + e.note + ")" }
func (e *noteError) Unwrap() error { return e.err }

// ReadResponseText is ReadErrorBody that also returns the error that ended
// the read early, if any (io.EOF is not one).
func ReadResponseText(r io.Reader) (string, error) {
	er := &errRecorder{r: r}
	text := ReadErrorBody(er)
	return text, er.err
}

// DrainResponse reads what is left of a response body, at most
// MaxResponseBody bytes, so that the connection can be reused, and
// returns the error that ended the read early, if any.
func DrainResponse(r io.Reader) error {
	_, err := io.Copy(io.Discard, io.LimitReader(r, MaxResponseBody))
	return err
}

type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// LimitResponses wraps the transport rt (nil: http.DefaultTransport) so
// that every response body it returns yields at most n bytes, then
// ErrResponseTooLarge: for a client library that reads whole bodies
// itself.
func LimitResponses(rt http.RoundTripper, n int64) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return limitTransport{rt: rt, n: n}
}

type limitTransport struct {
	rt http.RoundTripper
	n  int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: t.n}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a larger one.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, ErrResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
