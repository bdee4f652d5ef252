package sinks

import (
	"log/slog"
	"time"
)

// Env is what the relay gives every sink it builds, in place of globals a
// sink would otherwise read. Its zero value is usable: each zero field
// stands for its default (see WithDefaults).
type Env struct {
	// UserAgent is the User-Agent header request-shaped sinks send,
	// typically "relay/<version>"; "" means "relay".
	UserAgent string
	// Logger receives what a sink has to say beyond its errors, already
	// tagged with the sink's name by the relay when it matters; nil
	// discards.
	Logger *slog.Logger
	// Now tells the time (Retry-After dates, request signatures); nil
	// means time.Now.
	Now func() time.Time
}

// WithDefaults returns e with each zero field set to its default, so a sink
// may use every field without checking it.
func (e Env) WithDefaults() Env {
	if e.UserAgent == "" {
		e.UserAgent = "relay"
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	return e
}
