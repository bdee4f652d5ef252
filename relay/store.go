package relay

import (
	"context"
	"errors"
	"time"
)

// Event is one accepted webhook, as stored.
type Event struct {
	Source     string
	MsgID      string
	Body       []byte
	ReceivedAt time.Time
	// Type is the event's type ("transcript.failed"), "" when it has none.
	Type string
	// Route maps each sink the event goes to onto the names of the rules
	// that sent it there, as decided when the event was accepted.
	Route map[string][]string
}

// Store keeps accepted events durably. Safe for concurrent use.
type Store interface {
	// Append stores e and returns once the store has confirmed the write.
	// It reports duplicate when an event with the same source and message id
	// was stored within the dedupe window; nothing is stored then.
	Append(ctx context.Context, e Event) (duplicate bool, err error)
	// Ready reports whether the store can take writes.
	Ready(ctx context.Context) error
}

// ErrStoreUnavailable is returned by stores that cannot take writes now.
var ErrStoreUnavailable = errors.New("store unavailable")
