package relay

import (
	"context"
	"sync"
	"time"
)

// breakerState is where a sink's breaker stands.
type breakerState int

const (
	// breakerClosed: attempts run freely; failures in a row are counted.
	breakerClosed breakerState = iota
	// breakerOpen: no attempt until the cooldown ends, then one probe.
	breakerOpen
	// breakerProbing: the probe is in flight; nothing else starts.
	breakerProbing
)

// breakerChange is what a breaker reports when it opens or closes.
type breakerChange struct {
	Open bool
	// Cause is the failure that opened the breaker (open only).
	Cause error
	// Until is when the first probe may start (open only).
	Until time.Time
	// OpenFor is how long the breaker was open (close only).
	OpenFor time.Duration
}

// breaker is a sink's circuit breaker. It opens after cfg.Failures failed
// attempts in a row, or at once for as long as a destination's Retry-After
// asks; while it is open no attempt starts. When the cooldown has passed
// it lets one attempt through, the probe: a probe that succeeds closes it,
// one that fails opens it for another cooldown.
//
// Only the probe's outcome moves an open breaker: attempts that started
// before it opened and end while it is open neither close it nor count,
// except that a Retry-After they bring back can make it stay open longer.
//
// The clock is injectable; waits for the cooldown are the caller's (admit
// says until when). onChange, when set, is called on each opening and each
// closing, in order, with the breaker's lock held: it must not call back
// into the breaker. Safe for concurrent use.
type breaker struct {
	now      func() time.Time
	onChange func(breakerChange)

	mu     sync.Mutex
	cfg    BreakerConfig
	state  breakerState
	failed int       // failed attempts in a row, while closed
	until  time.Time // open: the earliest probe
	// openedAt is when the current open period began; openBefore adds up
	// the earlier ones (see openTime).
	openedAt   time.Time
	openBefore time.Duration
	changed    chan struct{} // closed and replaced at every change of state
}

func newBreaker(cfg BreakerConfig, now func() time.Time, onChange func(breakerChange)) *breaker {
	return &breaker{cfg: cfg, now: now, onChange: onChange, changed: make(chan struct{})}
}

// configure applies new settings from the next outcome on; the state stays.
func (b *breaker) configure(cfg BreakerConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg = cfg
}

// admit asks to start an attempt. ok reports that it may start now; probe,
// that it is the probe of an open breaker, whose outcome the caller must
// report with probe set. When the attempt may not start, wake is closed at
// the next change of state and retryAt is when the cooldown ends (zero
// while a probe is in flight): ask again at whichever comes first.
func (b *breaker) admit() (probe, ok bool, wake <-chan struct{}, retryAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return false, true, nil, time.Time{}
	case breakerOpen:
		if !b.now().Before(b.until) {
			b.setState(breakerProbing)
			return true, true, nil, time.Time{}
		}
		return false, false, b.changed, b.until
	}
	return false, false, b.changed, time.Time{}
}

// wait waits until an attempt may start (see admit) and reports whether it
// is the probe; ok is false when ctx ended first. The cooldown is waited
// for with the runtime's timers (tests fake them with testing/synctest).
func (b *breaker) wait(ctx context.Context) (probe, ok bool) {
	for {
		probe, ok, wake, retryAt := b.admit()
		if ok {
			return probe, true
		}
		var (
			t      *time.Timer
			cooled <-chan time.Time
		)
		if !retryAt.IsZero() {
			t = time.NewTimer(retryAt.Sub(b.now()))
			cooled = t.C
		}
		select {
		case <-wake:
		case <-cooled:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return false, false
		}
	}
}

// success records an attempt that reached the destination.
func (b *breaker) success(probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe && b.state == breakerProbing:
		b.close()
	case b.state == breakerClosed:
		b.failed = 0
	}
}

// failure records a failed attempt; retryAfter > 0 is a wait the
// destination asked for, and opens the breaker for that long.
func (b *breaker) failure(probe bool, retryAfter time.Duration, cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	wait := b.cfg.Cooldown
	if retryAfter > 0 {
		wait = retryAfter
	}
	switch {
	case probe && b.state == breakerProbing:
		b.until = now.Add(wait)
		b.setState(breakerOpen)
	case b.state == breakerClosed:
		b.failed++
		if retryAfter > 0 || b.failed >= b.cfg.Failures {
			b.open(now, now.Add(wait), cause)
		}
	case b.state == breakerOpen && retryAfter > 0 && now.Add(retryAfter).After(b.until):
		b.until = now.Add(retryAfter)
	}
}

// cancel records a probe that ended without telling anything about the
// destination (the relay stopping, a panic): the next attempt probes again.
func (b *breaker) cancel(probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe && b.state == breakerProbing {
		b.setState(breakerOpen)
	}
}

// reset closes the breaker, whatever its state.
func (b *breaker) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failed = 0
	if b.state != breakerClosed {
		b.close()
	}
}

// isOpen reports whether attempts are held back (open or probing).
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state != breakerClosed
}

// openTime is the total time the breaker has been open (probing included)
// since it was made: the time a delivery's max_age does not count.
func (b *breaker) openTime() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.openBefore
	if b.state != breakerClosed {
		t += b.now().Sub(b.openedAt)
	}
	return t
}

func (b *breaker) open(now, until time.Time, cause error) {
	b.openedAt, b.until = now, until
	b.setState(breakerOpen)
	if b.onChange != nil {
		b.onChange(breakerChange{Open: true, Cause: cause, Until: until})
	}
}

func (b *breaker) close() {
	openFor := b.now().Sub(b.openedAt)
	b.openBefore += openFor
	b.failed = 0
	b.setState(breakerClosed)
	if b.onChange != nil {
		b.onChange(breakerChange{OpenFor: openFor})
	}
}

// setState changes the state and wakes those waiting for a change.
func (b *breaker) setState(s breakerState) {
	b.state = s
	close(b.changed)
	b.changed = make(chan struct{})
}
