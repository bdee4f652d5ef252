package relay

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/sinks"
)

// The delivery trail: per event and sink, how its delivery went, kept in
// the stream RELAY_TRAIL as a key-value bucket would keep it (the last
// message per subject), under relay.trail.<source>.<msg id, base64url>.<sink>,
// and expiring with history. A worker writes it when it settles an attempt,
// without waiting for the store: the trail may lag a crash by a moment (the
// event and its delivery state in the store do not).

const (
	trailStream  = "RELAY_TRAIL"
	trailSubject = "relay.trail."
)

// Delivery statuses of a sink in an event's trail.
const (
	StatusPending      = "pending"
	StatusRetrying     = "retrying"
	StatusDelivered    = "delivered"
	StatusDeadLettered = "dead_lettered"
)

// SinkTrail is one sink's delivery of an event, as the events API shows it.
type SinkTrail struct {
	// Status is pending (no attempt settled yet), retrying, delivered or
	// dead_lettered.
	Status string `json:"status"`
	// Attempts is the number of attempts made, 0 while pending.
	Attempts int `json:"attempts"`
	// LastError is the last failed attempt's error, "" if none failed.
	LastError string `json:"last_error"`
	// LastAttemptAt is when the last attempt was settled; absent while
	// pending.
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
}

// trailRecord is the stored form of a SinkTrail.
type trailRecord struct {
	Status    string    `json:"s"`
	Attempts  int       `json:"a"`
	LastError string    `json:"e,omitempty"`
	At        time.Time `json:"t"`
}

// trailKey is the subject token of source's msgID for sink. Source and sink
// names are already valid key tokens; message ids are not always.
func trailKey(source, msgID, sink string) string {
	return source + "." + base64.RawURLEncoding.EncodeToString([]byte(msgID)) + "." + sink
}

// trail writes and reads the delivery trail.
type trail struct {
	nc *nats.Conn
	st jetstream.Stream
}

// record notes the outcome of an attempt at delivering d to sink: status,
// and the attempt's error for a failure. It does not wait for the store.
// A nil trail records nothing.
func (t *trail) record(sink string, d sinks.Delivery, status string, attemptErr string) {
	if t == nil {
		return
	}
	b, _ := json.Marshal(trailRecord{Status: status, Attempts: d.Attempt, LastError: oneLine(attemptErr, 512), At: time.Now().UTC()})
	_ = t.nc.Publish(trailSubject+trailKey(d.Source, d.MsgID, sink), b)
}

// get returns sink's trail for source's msgID: pending when nothing was
// recorded.
func (t *trail) get(ctx context.Context, source, msgID, sink string) (SinkTrail, error) {
	st := SinkTrail{Status: StatusPending}
	if t == nil {
		return st, nil
	}
	m, err := t.st.GetLastMsgForSubject(ctx, trailSubject+trailKey(source, msgID, sink))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	var r trailRecord
	if json.Unmarshal(m.Data, &r) != nil || r.Status == "" {
		return st, nil
	}
	at := r.At
	return SinkTrail{Status: r.Status, Attempts: r.Attempts, LastError: r.LastError, LastAttemptAt: &at}, nil
}

// recordTrail notes the settled outcome of an attempt at delivering d to
// sink (see trail.record); a worker calls it as it settles.
func (s *jsStore) recordTrail(sink string, d sinks.Delivery, status, attemptErr string) {
	if s.history != nil {
		s.history.trail.record(sink, d, status, attemptErr)
	}
}
