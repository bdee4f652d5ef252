package relay

import (
	"time"

	"github.com/cenkalti/backoff/v5"
)

// retryDelay is the wait before the next attempt of a delivery whose attempt
// number `attempt` (1-based) just failed: exponential in the attempt number,
// randomised by the policy's jitter and capped at its max_interval. A wait the
// destination asked for (retryAfter > 0) is honoured when longer, but never
// past max_interval either.
func retryDelay(p RetryPolicy, attempt int, retryAfter time.Duration) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxInterval,
	}
	b.Reset()
	var d time.Duration
	for i := 0; i < attempt; i++ {
		d = b.NextBackOff()
	}
	if retryAfter > d {
		d = retryAfter
	}
	return min(d, p.MaxInterval)
}
