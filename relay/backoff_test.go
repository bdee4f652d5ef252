package relay

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	p := RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, Multiplier: 2, Jitter: 0.2}
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		min, max   time.Duration
	}{
		{name: "first retry", attempt: 1, min: 800 * time.Millisecond, max: 1200 * time.Millisecond},
		{name: "grows", attempt: 3, min: 3200 * time.Millisecond, max: 4800 * time.Millisecond},
		{name: "capped", attempt: 20, min: 8 * time.Second, max: 10 * time.Second},
		{name: "retry-after honoured", attempt: 1, retryAfter: 5 * time.Second, min: 5 * time.Second, max: 5 * time.Second},
		{name: "retry-after capped", attempt: 1, retryAfter: time.Hour, min: 10 * time.Second, max: 10 * time.Second},
		{name: "shorter retry-after than backoff", attempt: 3, retryAfter: time.Millisecond, min: 3200 * time.Millisecond, max: 4800 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 { // jitter is random: check the bounds many times
				if got := retryDelay(p, tt.attempt, tt.retryAfter); got < tt.min || got > tt.max {
					t.Fatalf("got %v, want within [%v, %v]", got, tt.min, tt.max)
				}
			}
		})
	}
}
