package relay

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

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

// all returns the trail of every sink recorded for source's msgID.
func (t *trail) all(ctx context.Context, s *jsStore, source, msgID string) (map[string]SinkTrail, error) {
	out := map[string]SinkTrail{}
	if t == nil {
		return out, nil
	}
	prefix := trailSubject + trailKey(source, msgID, "")
	err := s.directLastFor(ctx, trailStream, prefix+"*", 1000, func(m *storedMsg) bool {
		if st, ok := decodeTrail(m.Data); ok {
			out[strings.TrimPrefix(m.Subject, prefix)] = st
		}
		return true
	})
	return out, err
}

// decodeTrail reads a stored trail record.
func decodeTrail(data []byte) (SinkTrail, bool) {
	var r trailRecord
	if json.Unmarshal(data, &r) != nil || r.Status == "" {
		return SinkTrail{}, false
	}
	at := r.At
	return SinkTrail{Status: r.Status, Attempts: r.Attempts, LastError: r.LastError, LastAttemptAt: &at}, true
}

// recordTrail notes the settled outcome of an attempt at delivering d to
// sink (see trail.record); a worker calls it as it settles.
func (s *jsStore) recordTrail(sink string, d sinks.Delivery, status, attemptErr string) {
	if s.history != nil {
		s.history.trail.record(sink, d, status, attemptErr)
	}
}
