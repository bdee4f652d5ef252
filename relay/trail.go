package relay

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The delivery trail: per event and sink, how its delivery went. A worker
// records each attempt it settles as one line of the stream RELAY_TRAIL
// (a batchWriter stores the lines a batch at a time), without waiting for the
// store: the trail may lag a crash by a moment (the event and its delivery
// state in the store do not). The
// records of trailBucket consecutive event ids share one subject,
// relay.trail.<id / trailBucket>: JetStream keeps an index entry in memory
// per subject (BenchmarkSubjectIndexMemory; docs/benchmarks.md), so a
// subject per event and sink would cost more memory than the dedupe window
// itself; reading an event's trail reads its bucket. The stream expires
// with history.

const (
	trailStream  = "RELAY_TRAIL"
	trailSubject = "relay.trail."
	trailBucket  = 256
	hdrEventID   = "Relay-Event-Id" // a replay's or dead letter's event id
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
	// Attempts is the number of attempts made, 0 while pending; while
	// retrying, as of the last recorded attempt (1, 2, 4, 8, ...).
	Attempts int `json:"attempts"`
	// LastError is the last failed attempt's error, "" if none failed.
	LastError string `json:"last_error"`
	// LastAttemptAt is when the last attempt was settled; absent while
	// pending.
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
}

// trailSubjectOf is the subject of event id's records.
func trailSubjectOf(id uint64) string {
	return trailSubject + strconv.FormatUint(id/trailBucket, 10)
}

// trailLine is a record: "<id> <sink> <status> <attempts> <unix ns> <error>".
func trailLine(id uint64, sink, status string, attempts int, at time.Time, errText string) []byte {
	errText = oneLine(errText, 512)
	b := make([]byte, 0, 3*20+len(sink)+len(status)+len(errText)+5)
	b = strconv.AppendUint(b, id, 10)
	b = append(append(append(b, ' '), sink...), ' ')
	b = append(append(b, status...), ' ')
	b = append(strconv.AppendInt(b, int64(attempts), 10), ' ')
	b = append(strconv.AppendInt(b, at.UnixNano(), 10), ' ')
	return append(b, errText...)
}

// parseTrailLine reads a record.
func parseTrailLine(b []byte) (id uint64, sink string, st SinkTrail, ok bool) {
	f := strings.SplitN(string(b), " ", 6)
	if len(f) != 6 {
		return 0, "", st, false
	}
	id, err1 := strconv.ParseUint(f[0], 10, 64)
	attempts, err2 := strconv.Atoi(f[3])
	ns, err3 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, "", st, false
	}
	at := time.Unix(0, ns).UTC()
	return id, f[1], SinkTrail{Status: f[2], Attempts: attempts, LastError: f[5], LastAttemptAt: &at}, true
}

// eventIDOf is the id of the event msg delivers: a replay's Relay-Event-Id,
// else msg's own sequence in the events stream (from md, its metadata, which
// the worker has parsed already).
func eventIDOf(msg jetstream.Msg, md *jetstream.MsgMetadata) uint64 {
	if v := msg.Headers().Get(hdrEventID); v != "" {
		if id, err := strconv.ParseUint(v, 10, 64); err == nil {
			return id
		}
	}
	return md.Sequence.Stream
}

// recordTrail notes the settled outcome of the attempt at delivering msg to
// sink: status, with the attempt count, and the error for a failure. A
// worker calls it as it settles; it does not wait for the store. Of the
// attempts to be retried only the 1st, 2nd, 4th, 8th... are recorded, so
// that a sink down for a day adds a few records per event, not one per
// retry; the outcome always is.
func (s *jsStore) recordTrail(sink string, msg jetstream.Msg, md *jetstream.MsgMetadata, attempts int, status, attemptErr string) {
	if s.trailw == nil || (status == StatusRetrying && attempts&(attempts-1) != 0) {
		return
	}
	id := eventIDOf(msg, md)
	if id == 0 {
		return
	}
	s.trailw.add(trailSubjectOf(id), trailLine(id, sink, status, attempts, time.Now(), attemptErr))
}

// trails returns the recorded trail of each of ids, per sink: the latest
// record of each. It reads each bucket once.
func (s *jsStore) trails(ctx context.Context, ids []uint64) (map[uint64]map[string]SinkTrail, error) {
	want := make(map[uint64]bool, len(ids))
	buckets := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
		buckets[id/trailBucket] = true
	}
	out := make(map[uint64]map[string]SinkTrail, len(ids))
	for b := range buckets {
		subj := trailSubject + strconv.FormatUint(b, 10)
		seq := uint64(1)
		for {
			next, err := s.directMany(ctx, trailStream, directRequest{Seq: seq, NextFor: subj, Batch: 4096, MaxBytes: directBatchBytes}, func(m *storedMsg) bool {
				for line := range bytes.Lines(m.Data) {
					id, sink, st, ok := parseTrailLine(bytes.TrimSuffix(line, []byte("\n")))
					if ok && want[id] {
						if out[id] == nil {
							out[id] = map[string]SinkTrail{}
						}
						out[id][sink] = st // records are in order: the last wins
					}
				}
				return true
			})
			if err != nil {
				return nil, err
			}
			if next == 0 || next == seq {
				break
			}
			seq = next
		}
	}
	return out, nil
}
