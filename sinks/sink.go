// Package sinks defines the contract between the relay's delivery engine and
// the destinations it delivers to, the registry that maps a config "type" to a
// constructor, and the helpers sinks use to classify their errors.
//
// A sink package imports this package and its own client library, nothing
// else of the relay. The relay owns retries, backoff and dead letters: a sink
// makes one attempt per Send and says, through its error, what happened.
package sinks

import (
	"context"
	"time"
)

// Sink delivers one event to one destination. Safe for concurrent use.
type Sink interface {
	// Send makes one attempt to deliver d. It returns promptly when ctx is
	// done. An error that a retry cannot fix is wrapped with Permanent; a wait
	// the server asked for is carried by RetryAfter; any other error is
	// retried with the relay's backoff. Send never sleeps to retry.
	Send(ctx context.Context, d Delivery) error
	// Close releases the sink's resources. Send is not called after Close.
	Close(ctx context.Context) error
}

// Previewer is implemented by sinks that can show, without sending anything,
// what Send would send for d. `relay test` uses it. A sink whose messages
// depend on earlier events (a Slack thread or group) previews a sequence:
// each call shows d as following the deliveries previewed before it on the
// same sink, which keeps that memory in process only.
type Previewer interface {
	Preview(d Delivery) (Preview, error)
}

// Preview is what a sink would send for one delivery.
type Preview struct {
	// Kind names the shape of Body: "slack", "http", "file", ...
	Kind string `json:"kind"`
	// Request is the request line for request-shaped sinks ("POST https://...").
	Request string `json:"request,omitempty"`
	// Headers holds request headers, secret values redacted.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the payload exactly as it would be sent.
	Body string `json:"body"`
	// Then lists the further requests the same delivery makes, in order
	// (a Slack thread reply's update of the thread's parent).
	Then []Preview `json:"then,omitempty"`
}

// Delivery is one event on its way to one sink.
type Delivery struct {
	// MsgID is the sender's message id (the svix-id header).
	MsgID string
	// Source is the name of the configured source that accepted the event.
	Source string
	// Event is the event type ("transcript.failed"), "" when the body has none.
	Event string
	// Rules names the rules that routed the event to this sink, in order.
	Rules []string
	// Body is the verified request body, byte for byte. Sinks must not modify it.
	Body []byte
	// Data is the template data: every name of the rule environment
	// (event, object, status, code, sub_code, updated_at, recording, bot,
	// media, source, msg_id, received_at, payload) plus sub_code_reason.
	Data map[string]any
	// ReceivedAt is when the relay accepted the event.
	ReceivedAt time.Time
	// Attempt counts attempts for this delivery, starting at 1.
	Attempt int
}

// RawSender is implemented by sinks that may not read Delivery.Data: when
// RawOnly reports true, the relay leaves Data nil and does not decode the
// body for them (it still sets Event, Rules and the rest).
type RawSender interface {
	RawOnly() bool
}
