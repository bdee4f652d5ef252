package relay

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
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

// isEventSubject reports whether subj is an accepted event's (not a
// replay's) in the events stream.
func isEventSubject(subj string) bool {
	return strings.HasPrefix(subj, routedSubject) || strings.HasPrefix(subj, eventsSubject)
}

// eventFromEvents reads a message of the events stream; ok is false for a
// replay.
func eventFromEvents(m *storedMsg) (StoredEvent, bool) {
	if !isEventSubject(m.Subject) {
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

// scanChunk is how many stored messages one read of a listing takes.
const scanChunk = 256

// listEvents returns up to q.limit of the stored events q selects, newest
// first, and the cursor of the next page (0 when there is none).
func (s *jsStore) listEvents(ctx context.Context, q eventQuery) ([]StoredEvent, uint64, error) {
	lo, hi, err := s.eventRange(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := []StoredEvent{}
	err = s.scanBack(ctx, eventsStream, lo, hi, func(m *storedMsg) bool {
		if e, ok := eventFromEvents(m); ok && q.selects(&e) {
			out = append(out, e)
		}
		return len(out) <= q.limit // one more than the page: is there a next one?
	})
	if err != nil {
		return nil, 0, err
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

// eventRange is the range of the events stream q's time range and cursor
// leave to read: lo > hi when none. Events are stored in the order they
// are received, so since is found by the stream's own index of times.
func (s *jsStore) eventRange(ctx context.Context, q eventQuery) (lo, hi uint64, err error) {
	info, err := s.events.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	lo, hi = info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return 1, 0, nil
	}
	if q.before != 0 {
		hi = min(hi, q.before-1)
	}
	if !q.since.IsZero() {
		m, err := s.directGet(ctx, eventsStream, 0, q.since)
		if errors.Is(err, ErrNotFound) {
			return 1, 0, nil
		}
		if err != nil {
			return 0, 0, err
		}
		lo = max(lo, m.Seq)
	}
	return lo, hi, nil
}

// scanBack calls fn for the messages of stream from hi down to lo, newest
// first, until fn returns false. It reads scanChunk messages at a time.
func (s *jsStore) scanBack(ctx context.Context, stream string, lo, hi uint64, fn func(*storedMsg) bool) error {
	for lo > 0 && hi >= lo {
		from := lo
		if hi-lo >= scanChunk {
			from = hi - scanChunk + 1
		}
		var chunk []*storedMsg
		_, err := s.directBatch(ctx, stream, from, scanChunk, func(m *storedMsg) bool {
			if m.Seq > hi {
				return false
			}
			chunk = append(chunk, m)
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

// scanForward calls fn for the messages of stream from lo up to hi, oldest
// first, until fn returns false.
func (s *jsStore) scanForward(ctx context.Context, stream string, lo, hi uint64, fn func(*storedMsg) bool) error {
	for lo > 0 && lo <= hi {
		stop := false
		next, err := s.directBatch(ctx, stream, lo, scanChunk, func(m *storedMsg) bool {
			if m.Seq > hi || !fn(m) {
				stop = true
			}
			return !stop
		})
		if err != nil || stop || next == 0 {
			return err
		}
		lo = next
	}
	return nil
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

// findEvent reads event id from the events stream.
func (s *jsStore) findEvent(ctx context.Context, id uint64) (StoredEvent, error) {
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
// cursor aside), oldest first. It stops at fn's first error and returns it.
func (s *jsStore) eachEvent(ctx context.Context, q eventQuery, fn func(StoredEvent) error) error {
	q.before = 0
	lo, hi, err := s.eventRange(ctx, q)
	if err != nil {
		return err
	}
	var fnErr error
	err = s.scanForward(ctx, eventsStream, lo, hi, func(m *storedMsg) bool {
		if e, ok := eventFromEvents(m); ok && q.selects(&e) {
			fnErr = fn(e)
		}
		return fnErr == nil
	})
	return errors.Join(err, fnErr)
}
