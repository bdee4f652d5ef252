package sinks

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxErrorBody is how many bytes of a failed response's body ReadErrorBody
// keeps for the error text (and so for the dead-letter reason).
const MaxErrorBody = 1024

// StatusError is a response whose status was not 2xx. Its text carries the
// status and the start of the body, so it makes a useful dead-letter reason.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Status is the status line text, e.g. "404 Not Found".
	Status string
	// Body is the start of the response body, cleaned by ReadErrorBody.
	Body string
}

func (e *StatusError) Error() string {
	status := e.Status
	if status == "" {
		status = strconv.Itoa(e.Code)
		if t := http.StatusText(e.Code); t != "" {
			status += " " + t
		}
	}
	if e.Body == "" {
		return "status " + status
	}
	return "status " + status + ": " + e.Body
}

// RetryableStatus reports whether a response with status code is worth
// retrying: 408 Request Timeout, 425 Too Early, 429 Too Many Requests and
// every 5xx. Every other non-2xx status (1xx, 3xx since redirects are not
// followed, other 4xx) would fail again.
func RetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return true
	case code >= 500 && code <= 599:
		return true
	}
	return false
}

// ClassifyStatus turns a response into a Send result: nil for 2xx; for a
// retryable status (see RetryableStatus) a *StatusError, carried by
// RetryAfter when header has a usable Retry-After; otherwise a Permanent
// *StatusError. body is the already-read start of the body (see
// ReadErrorBody); now resolves an HTTP-date Retry-After.
func ClassifyStatus(code int, status string, header http.Header, body string, now time.Time) error {
	if code >= 200 && code <= 299 {
		return nil
	}
	err := &StatusError{Code: code, Status: status, Body: body}
	if !RetryableStatus(code) {
		return Permanent(err)
	}
	if wait, ok := ParseRetryAfter(header.Get("Retry-After"), now); ok {
		return RetryAfter(err, wait)
	}
	return err
}

// ParseRetryAfter parses a Retry-After header value, either delta-seconds
// ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT") taken relative to
// now. A date in the past gives 0. ok is false for an empty or invalid value.
func ParseRetryAfter(v string, now time.Time) (wait time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		if secs > maxSecs {
			secs = maxSecs
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// ReadErrorBody reads at most MaxErrorBody bytes of r and returns them as
// one line of text for an error message: invalid UTF-8 and control
// characters replaced, spaces collapsed, "…" appended when r had more.
func ReadErrorBody(r io.Reader) string {
	buf, _ := io.ReadAll(io.LimitReader(r, MaxErrorBody+1))
	cut := len(buf) > MaxErrorBody
	if cut {
		buf = buf[:MaxErrorBody]
		// Drop a rune the limit split in two.
		for i := len(buf) - 1; i >= 0 && i >= len(buf)-utf8.UTFMax; i-- {
			if utf8.RuneStart(buf[i]) {
				if !utf8.FullRune(buf[i:]) {
					buf = buf[:i]
				}
				break
			}
		}
	}
	var b strings.Builder
	space := false
	for len(buf) > 0 {
		c, size := utf8.DecodeRune(buf) // utf8.RuneError for invalid bytes
		buf = buf[size:]
		if unicode.IsSpace(c) || unicode.IsControl(c) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(c)
	}
	s := b.String()
	if cut && s != "" {
		s += "…"
	}
	return s
}

// TransportError describes err, a failure to get any response from
// target (*url.Error from an http.Client, a timeout, a refused connection),
// without ever showing the URL the client had: http.Client errors embed the
// full URL, credentials included. safeTarget names the destination in the
// message instead (see RedactURL). The result is a plain, retryable error;
// errors.Is still finds context and net errors in it.
func TransportError(method, safeTarget string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s %s: %w", strings.ToLower(method), safeTarget, err)
}

// RedactURL shows u without secrets, keeping its scheme and host (port
// included) so that an operator can tell destinations apart: its user info
// becomes "xxxxx", a path other than "/" becomes "/[redacted]" (webhook URLs
// carry their token in the path, as https://hooks.example/T000/B000/XXXX
// does), a query "?[redacted]", and the fragment is dropped. For example
// https://user:pw@hooks.example:8443/T000/B000/XXXX?token=t gives
// https://xxxxx@hooks.example:8443/[redacted]?[redacted]. A nil u gives "".
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.Opaque != "" { // scheme:opaque, not a URL any sink can send to
		return u.Scheme + ":" + redacted
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host}
	if u.User != nil {
		c.User = url.User("xxxxx")
	}
	s := c.String()
	switch u.Path {
	case "":
	case "/":
		s += "/"
	default:
		s += "/" + redacted
	}
	if u.RawQuery != "" || u.ForceQuery {
		s += "?" + redacted
	}
	return s
}

// URLSecrets leaves out paths shorter than minURLPath ("/", "/in"), and
// paths without their leading slash, path segments and query values
// shorter than minURLSecretPart: they are too likely to be ordinary words
// of an error message.
const (
	minURLPath       = 4
	minURLSecretPart = 10
)

// URLSecrets lists what RedactURL hides of u, for Redact: the user name and
// password, the path (decoded and as written, from 4 bytes) and the query,
// and the path without its leading slash, each path segment and each query
// value of at least 10 bytes, since a server may quote any of them in an
// error body. Longest first, so that Redact
// replaces a whole before its parts. A nil u gives nil.
func URLSecrets(u *url.URL) []string {
	if u == nil {
		return nil
	}
	var secrets []string
	add := func(min int, ss ...string) {
		for _, s := range ss {
			if len(s) >= min {
				secrets = append(secrets, s)
			}
		}
	}
	if u.User != nil {
		p, _ := u.User.Password()
		add(1, u.User.Username(), p)
	}
	add(1, u.Opaque)
	add(minURLPath, u.Path, u.EscapedPath())
	add(minURLSecretPart, strings.TrimPrefix(u.Path, "/"), strings.TrimPrefix(u.EscapedPath(), "/"))
	for _, seg := range strings.Split(u.Path, "/") {
		add(minURLSecretPart, seg)
	}
	add(1, u.RawQuery)
	q, _ := url.ParseQuery(u.RawQuery) // what parsed, even if some did not
	for _, vs := range q {
		add(minURLSecretPart, vs...)
	}
	slices.SortFunc(secrets, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(secrets)
}

// Redact returns err with each non-empty secret in its text replaced by
// "[redacted]"; errors.Is and errors.As still see err. Use it as a last line
// of defence when an error may quote a secret. Redact(nil, ...) is nil.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, redacted)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{err: err, msg: msg}
}

type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
