package relay

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/rules"
)

// StoredEvent is one accepted event as the events API shows it.
type StoredEvent struct {
	// ID is the event's id: its sequence number in the events stream.
	ID uint64 `json:"id"`
	// MsgID and Source are the sender's message id and the source it came
	// in on.
	MsgID  string `json:"msg_id"`
	Source string `json:"source"`
	// Event is the body's event type ("" when it has none).
	Event      string    `json:"event"`
	ReceivedAt time.Time `json:"received_at"`
	// Rules are the rules that routed it, sorted; empty when it went
	// nowhere.
	Rules []string `json:"rules"`
	// Sinks maps each sink it was routed to onto that delivery's trail.
	Sinks map[string]SinkTrail `json:"sinks"`
	// Payload is the body (for one event only).
	Payload json.RawMessage `json:"payload,omitempty"`

	route map[string][]string
	body  []byte
}

// eventEnv is what a where expression over stored events sees: the rule
// environment plus the rules that routed the event and the sinks it went
// to.
type eventEnv struct {
	rules.Env
	Rules []string `expr:"rules"`
	Sinks []string `expr:"sinks"`
}

// compileEventFilter compiles a where expression over stored events; ""
// matches every event.
func compileEventFilter(where string) (*rules.Condition, error) {
	if strings.TrimSpace(where) == "" {
		return nil, nil
	}
	return rules.CompileCondition(where, eventEnv{})
}

// matches evaluates where over e (a run-time failure is no match).
func (e *StoredEvent) matches(where *rules.Condition) bool {
	if where == nil {
		return true
	}
	env, err := rules.NewEnv(e.body, rules.Meta{Source: e.Source, MsgID: e.MsgID, ReceivedAt: e.ReceivedAt})
	if err != nil {
		return false
	}
	ok, _ := where.Match(&eventEnv{Env: *env, Rules: e.Rules, Sinks: slices.Sorted(maps.Keys(e.route))})
	return ok
}

// eventFromHistory reads a history copy; ok is false for a message that is
// not one.
func eventFromHistory(m *storedMsg) (StoredEvent, bool) {
	id, err := strconv.ParseUint(m.Header.Get(hdrEventsSeq), 10, 64)
	if err != nil {
		return StoredEvent{}, false
	}
	return eventFromHeaders(id, m.Header, m.Data, m.Time), true
}

// eventFromEvents reads a message of the events stream; ok is false for a
// replay.
func eventFromEvents(m *storedMsg) (StoredEvent, bool) {
	if !strings.HasPrefix(m.Subject, routedSubject) && !strings.HasPrefix(m.Subject, eventsSubject) {
		return StoredEvent{}, false
	}
	return eventFromHeaders(m.Seq, m.Header, m.Data, m.Time), true
}

func eventFromHeaders(id uint64, h nats.Header, body []byte, stored time.Time) StoredEvent {
	source, msgID := eventIdentity(h)
	e := StoredEvent{
		ID: id, MsgID: msgID, Source: source, Event: h.Get(hdrEvent),
		ReceivedAt: receivedAt(h, stored),
		route:      parseRoute(h),
		body:       body,
	}
	seen := map[string]bool{}
	for _, names := range e.route {
		for _, n := range names {
			seen[n] = true
		}
	}
	e.Rules = slices.Sorted(maps.Keys(seen))
	return e
}

// eventQuery selects stored events.
type eventQuery struct {
	since, until time.Time // zero: unbounded
	where        *rules.Condition
	limit        int
	// before continues a listing: events whose id is below it; 0 starts
	// from the newest event.
	before uint64
}

func (q *eventQuery) selects(e *StoredEvent) bool {
	return (q.before == 0 || e.ID < q.before) &&
		(q.since.IsZero() || !e.ReceivedAt.Before(q.since)) &&
		(q.until.IsZero() || !e.ReceivedAt.After(q.until)) &&
		e.matches(q.where)
}

// scanChunk is how many history messages one read of a listing takes.
const scanChunk = 256

// listEvents returns up to q.limit of the stored events q selects, newest
// first, and the cursor of the next page (0 when there is none): the
// events not yet copied into history, then history.
func (s *jsStore) listEvents(ctx context.Context, q eventQuery) ([]StoredEvent, uint64, error) {
	out := []StoredEvent{}
	ids := map[uint64]bool{}
	take := func(e StoredEvent) bool { // false once one more than the page is taken
		if !ids[e.ID] && q.selects(&e) {
			out, ids[e.ID] = append(out, e), true
		}
		return len(out) <= q.limit
	}
	tail, err := s.uncopiedEvents(ctx)
	if err != nil {
		return nil, 0, err
	}
	more := true
	for i := len(tail) - 1; i >= 0 && more; i-- {
		more = take(tail[i])
	}
	if more {
		if err := s.scanHistory(ctx, q, take); err != nil {
			return nil, 0, err
		}
	}
	var next uint64
	if len(out) > q.limit {
		out = out[:q.limit]
		next = out[q.limit-1].ID
	}
	if err := s.addTrails(ctx, out); err != nil {
		return nil, 0, err
	}
	return out, next, nil
}

// scanHistory calls fn for the history copies within q's time range and
// below its cursor, newest first, until fn returns false.
func (s *jsStore) scanHistory(ctx context.Context, q eventQuery, fn func(StoredEvent) bool) error {
	info, err := s.history.hist.Info(ctx)
	if err != nil {
		return err
	}
	lo, hi := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 || hi < lo {
		return nil
	}
	if q.before != 0 {
		b, err := s.historyLowerBound(ctx, q.before)
		if err != nil {
			return err
		}
		hi = min(hi, b-1)
	}
	if !q.since.IsZero() {
		// Copies are made after their event was received: none of the
		// events received since q.since was copied before it.
		m, err := s.directGet(ctx, historyStream, 0, q.since)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		lo = max(lo, m.Seq)
	}
	for hi >= lo {
		from := lo
		if hi-lo >= scanChunk {
			from = hi - scanChunk + 1
		}
		var chunk []StoredEvent
		_, err := s.directBatch(ctx, historyStream, from, scanChunk, func(m *storedMsg) bool {
			if m.Seq > hi {
				return false
			}
			if e, ok := eventFromHistory(m); ok {
				chunk = append(chunk, e)
			}
			return true
		})
		if err != nil {
			return err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if !fn(chunk[i]) {
				return nil
			}
		}
		if from <= lo {
			return nil
		}
		hi = from - 1
	}
	return nil
}

// historyLowerBound returns the sequence, in the history stream, of the
// first copy whose event id is id or more; one past the last when none is.
// The copies hold their ids in order: a binary search.
func (s *jsStore) historyLowerBound(ctx context.Context, id uint64) (uint64, error) {
	info, err := s.history.hist.Info(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := info.State.FirstSeq, info.State.LastSeq+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := s.directGet(ctx, historyStream, mid, time.Time{})
		if errors.Is(err, ErrNotFound) {
			hi = mid
			continue
		}
		if err != nil {
			return 0, err
		}
		e, ok := eventFromHistory(m)
		if ok && e.ID >= id {
			hi = mid // m is the first copy at or after mid
		} else {
			lo = m.Seq + 1
		}
	}
	return lo, nil
}

// maxTail bounds the events a listing reads from the events stream that
// are not in history yet (normally a moment's worth).
const maxTail = 10000

// uncopiedEvents returns the events not yet copied into history, oldest
// first.
func (s *jsStore) uncopiedEvents(ctx context.Context) ([]StoredEvent, error) {
	var out []StoredEvent
	seq := s.history.lastCopied.Load() + 1
	for len(out) < maxTail {
		next, err := s.directBatchEvents(ctx, seq, func(m *storedMsg) {
			if e, ok := eventFromEvents(m); ok {
				out = append(out, e)
			}
		})
		if err != nil || next == 0 {
			return out, err
		}
		seq = next
	}
	return out, nil
}

// directBatchEvents reads a batch of the events stream from seq, which does
// not allow direct gets: message by message.
func (s *jsStore) directBatchEvents(ctx context.Context, seq uint64, fn func(*storedMsg)) (uint64, error) {
	next := uint64(0)
	for range scanChunk {
		m, err := s.events.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if isNotFound(err) {
			return next, nil
		}
		if err != nil {
			return 0, err
		}
		fn(&storedMsg{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Header: m.Header, Data: m.Data})
		seq, next = m.Sequence+1, m.Sequence+1
	}
	return next, nil
}

// getEvent returns one event with its payload and trail.
func (s *jsStore) getEvent(ctx context.Context, id uint64) (StoredEvent, error) {
	e, err := s.findEvent(ctx, id)
	if err != nil {
		return StoredEvent{}, err
	}
	e.Payload = payloadJSON(e.body)
	events := []StoredEvent{e}
	err = s.addTrails(ctx, events)
	return events[0], err
}

// findEvent looks id up in history, else in the events stream.
func (s *jsStore) findEvent(ctx context.Context, id uint64) (StoredEvent, error) {
	if id <= s.history.lastCopied.Load() {
		seq, err := s.historyLowerBound(ctx, id)
		if err != nil {
			return StoredEvent{}, err
		}
		m, err := s.directGet(ctx, historyStream, seq, time.Time{})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return StoredEvent{}, err
		}
		if err == nil {
			if e, ok := eventFromHistory(m); ok && e.ID == id {
				return e, nil
			}
		}
	}
	m, err := s.events.GetMsg(ctx, id)
	if isNotFound(err) {
		return StoredEvent{}, ErrNotFound
	}
	if err != nil {
		return StoredEvent{}, err
	}
	e, ok := eventFromEvents(&storedMsg{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Header: m.Header, Data: m.Data})
	if !ok {
		return StoredEvent{}, ErrNotFound
	}
	return e, nil
}

// addTrails fills each event's Sinks: every sink it was routed to
// (pending until an attempt is recorded) and every sink a replay sent it to.
func (s *jsStore) addTrails(ctx context.Context, events []StoredEvent) error {
	ids := make([]uint64, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	recorded, err := s.trails(ctx, ids)
	if err != nil {
		return err
	}
	for i := range events {
		e := &events[i]
		e.Sinks = make(map[string]SinkTrail, len(e.route))
		for sink := range e.route {
			e.Sinks[sink] = SinkTrail{Status: StatusPending}
		}
		for sink, st := range recorded[e.ID] {
			e.Sinks[sink] = st
		}
	}
	return nil
}

// payloadJSON is body as JSON: itself when valid, else as a string.
func payloadJSON(body []byte) json.RawMessage {
	if json.Valid(body) {
		return json.RawMessage(body)
	}
	b, _ := json.Marshal(string(body))
	return b
}

func isNotFound(err error) bool { return errors.Is(err, jetstream.ErrMsgNotFound) }

// eachEvent calls fn for every stored event q selects (its limit and
// cursor aside), oldest first: history, then the events not yet copied into
// it. It stops at fn's first error and returns it.
func (s *jsStore) eachEvent(ctx context.Context, q eventQuery, fn func(StoredEvent) error) error {
	info, err := s.history.hist.Info(ctx)
	if err != nil {
		return err
	}
	seq, last := info.State.FirstSeq, info.State.LastSeq
	if !q.since.IsZero() {
		m, err := s.directGet(ctx, historyStream, 0, q.since)
		switch {
		case errors.Is(err, ErrNotFound):
			seq = last + 1
		case err != nil:
			return err
		default:
			seq = max(seq, m.Seq)
		}
	}
	var lastID uint64
	for info.State.Msgs > 0 && seq <= last {
		var fnErr error
		next, err := s.directBatch(ctx, historyStream, seq, scanChunk, func(m *storedMsg) bool {
			e, ok := eventFromHistory(m)
			if !ok || m.Seq > last {
				return m.Seq <= last
			}
			lastID = max(lastID, e.ID)
			if q.selects(&e) {
				fnErr = fn(e)
			}
			return fnErr == nil
		})
		if err != nil {
			return err
		}
		if fnErr != nil {
			return fnErr
		}
		if next == 0 {
			break
		}
		seq = next
	}
	tail, err := s.uncopiedEvents(ctx)
	if err != nil {
		return err
	}
	for _, e := range tail {
		if e.ID > lastID && q.selects(&e) {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}
