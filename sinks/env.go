package sinks

import (
	"context"
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
	// CompileString compiles an expression over the rule environment (the
	// names of Delivery.Data, as in a rule's when) whose result is a
	// string, and returns a function that evaluates it on a Delivery's
	// Data. The relay sets it from its rules package, so a sink can take
	// expressions as options without importing the relay. Errors are
	// one line with the expression's 1-based (line:column). nil: sinks
	// that need it reject such options.
	CompileString func(src string) (func(data map[string]any) (string, error), error)
	// State opens the relay's durable sink state (see State); nil when the
	// relay has none, as in `relay check` and `relay test`, where sinks
	// are built but never send. It may wait for the store; it returns
	// promptly when ctx is done.
	State func(ctx context.Context) (State, error)
	// Count adds one to the relay's counter for what a sink did, by
	// metric name and label values, e.g. Count("slack_messages", sink,
	// "reply") for relay_slack_messages_total{sink,kind}. Unknown names
	// are ignored; nil counts nothing.
	Count func(metric string, labels ...string)
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
	if e.Count == nil {
		e.Count = func(string, ...string) {}
	}
	return e
}
