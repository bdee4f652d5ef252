package slack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer paces the messages of every sink of the process that posts to one
// channel with one credential: Slack rate-limits per channel and token, so
// two sinks on one channel share one budget. chat.update counts like a
// post. A 429's Retry-After holds every sink of the channel.
type pacer struct {
	limiter *rate.Limiter // rate.Inf: no pacing, only Retry-After holds

	mu    sync.Mutex
	until time.Time // no request before this (Retry-After)
}

var (
	pacersMu sync.Mutex
	pacers   = map[string]*pacer{}
)

// sharedPacer returns the process's pacer for credential (a token or a
// webhook URL), endpoint and channel, paced at perSecond (0: no pacing).
// When sinks sharing it ask for different rates, the one built last wins, so
// that a config reload changes the rate. The key holds a hash of the
// credential, never the credential.
func sharedPacer(credential, endpoint, channel string, perSecond float64) *pacer {
	sum := sha256.Sum256([]byte(credential))
	key := hex.EncodeToString(sum[:]) + "|" + endpoint + "|" + channel
	pacersMu.Lock()
	defer pacersMu.Unlock()
	p, ok := pacers[key]
	limit := rate.Inf
	if perSecond > 0 {
		limit = rate.Limit(perSecond)
	}
	if !ok {
		// Burst 1: messages are spread evenly, never bunched.
		p = &pacer{limiter: rate.NewLimiter(limit, 1)}
		pacers[key] = p
	} else if p.limiter.Limit() != limit {
		p.limiter.SetLimit(limit)
	}
	return p
}

// wait returns when the next request may go: after any Retry-After hold,
// then its turn under the rate.
func (p *pacer) wait(ctx context.Context, now func() time.Time) error {
	for {
		p.mu.Lock()
		hold := p.until.Sub(now())
		p.mu.Unlock()
		if hold <= 0 {
			break
		}
		t := time.NewTimer(hold)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("slack pacing: %w", ctx.Err())
		case <-t.C:
		}
	}
	if err := p.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("slack pacing: %w", err)
	}
	return nil
}

// hold stops every request of the channel until until (a Retry-After).
func (p *pacer) hold(until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until.After(p.until) {
		p.until = until
	}
}
