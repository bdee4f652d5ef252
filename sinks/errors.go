package sinks

import (
	"errors"
	"fmt"
	"time"
)

// Permanent marks err as one that no retry can fix: the delivery is
// dead-lettered at once with err's text as the reason. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or any error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter marks err as retryable after at least wait, a delay the
// destination asked for (HTTP Retry-After, Slack rate limits). The relay caps
// the wait at the retry policy's max_interval. RetryAfter(nil, d) is nil.
func RetryAfter(err error, wait time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, wait: wait}
}

type retryAfterError struct {
	err  error
	wait time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.err, e.wait)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfterOf returns the wait carried by err (see RetryAfter), if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.wait, true
	}
	return 0, false
}
