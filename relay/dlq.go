package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/rules"
)

// DeadLetter is one delivery the relay gave up on, as the admin API shows it.
type DeadLetter struct {
	ID             uint64          `json:"id"`
	MsgID          string          `json:"msg_id"`
	Source         string          `json:"source"`
	Sink           string          `json:"sink"`
	Rules          []string        `json:"rules"`
	Event          string          `json:"event"`
	Attempts       int             `json:"attempts"`
	ReceivedAt     time.Time       `json:"received_at"`
	FirstAttemptAt time.Time       `json:"first_attempt_at"`
	LastAttemptAt  time.Time       `json:"last_attempt_at"`
	LastError      string          `json:"last_error"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// ErrNotFound is returned for a dead letter that does not exist.
var ErrNotFound = errors.New("not found")

func deadLetterFromMsg(m *jetstream.RawStreamMsg, withPayload bool) DeadLetter {
	h := m.Header
	dl := DeadLetter{
		ID:        m.Sequence,
		MsgID:     h.Get(hdrMsgID),
		Source:    h.Get(hdrSource),
		Sink:      strings.TrimPrefix(m.Subject, deadSubject),
		Event:     h.Get(hdrEvent),
		LastError: h.Get(hdrError),
	}
	_ = json.Unmarshal([]byte(h.Get(hdrRules)), &dl.Rules)
	dl.Attempts, _ = strconv.Atoi(h.Get(hdrAttempts))
	dl.ReceivedAt, _ = time.Parse(time.RFC3339Nano, h.Get(hdrReceivedAt))
	dl.FirstAttemptAt, _ = time.Parse(time.RFC3339Nano, h.Get(hdrFirstAttempt))
	dl.LastAttemptAt, _ = time.Parse(time.RFC3339Nano, h.Get(hdrLastAttempt))
	if dl.Rules == nil {
		dl.Rules = []string{}
	}
	if withPayload {
		if json.Valid(m.Data) {
			dl.Payload = json.RawMessage(m.Data)
		} else {
			b, _ := json.Marshal(string(m.Data))
			dl.Payload = b
		}
	}
	return dl
}

// listDead returns up to limit dead letters, newest first, with ids below
// before (0: from the newest), for one sink or all (sink ""), that where
// matches (nil: all). next is the cursor for the following page, 0 when
// there is none.
func (s *jsStore) listDead(ctx context.Context, sink string, where *rules.Condition, limit int, before uint64) (out []DeadLetter, next uint64, err error) {
	info, err := s.dead.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	seq := info.State.LastSeq
	if before != 0 && before-1 < seq {
		seq = before - 1
	}
	out = []DeadLetter{}
	for ; seq >= info.State.FirstSeq && seq > 0; seq-- {
		m, err := s.dead.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if sink != "" && m.Subject != deadSubject+sink {
			continue
		}
		if !deadMatches(where, m) {
			continue
		}
		if len(out) == limit {
			return out, seq + 1, nil
		}
		out = append(out, deadLetterFromMsg(m, false))
	}
	return out, 0, nil
}

// getDead returns one dead letter with its payload.
func (s *jsStore) getDead(ctx context.Context, id uint64) (DeadLetter, *jetstream.RawStreamMsg, error) {
	m, err := s.dead.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, nil, ErrNotFound
	}
	if err != nil {
		return DeadLetter{}, nil, err
	}
	return deadLetterFromMsg(m, true), m, nil
}

// replayDead puts a dead letter back for delivery to its sink with a fresh
// attempt count, then removes it from the dead letters. isSink says whether
// a sink is configured: a dead letter for an unknown sink is not replayed.
func (s *jsStore) replayDead(ctx context.Context, id uint64, isSink func(string) bool) error {
	dl, m, err := s.getDead(ctx, id)
	if err != nil {
		return err
	}
	if !isSink(dl.Sink) {
		return fmt.Errorf("%w: sink %q is not configured", errConflict, dl.Sink)
	}
	route := encodeRoute(map[string][]string{dl.Sink: dl.Rules}, []string{dl.Sink})
	r := nats.NewMsg(replaySubject + dl.Sink)
	r.Data = m.Data
	r.Header.Set(hdrMsgID, dl.MsgID)
	r.Header.Set(hdrSource, dl.Source)
	r.Header.Set(hdrReceivedAt, m.Header.Get(hdrReceivedAt))
	r.Header.Set(hdrRoute, route)
	if id := deadEventID(m.Header); id != "" {
		r.Header.Set(hdrEventID, id)
	}
	if ev := m.Header.Get(hdrEvent); ev != "" {
		// The stored type, so that a replayed missed event is decoded as
		// one (rules.NewEnvFor).
		r.Header.Set(hdrEvent, ev)
	}
	if _, err := s.js.PublishMsg(ctx, r, jetstream.WithMsgID(fmt.Sprintf("replay:%s:%d", dl.Sink, id)), jetstream.WithExpectStream(eventsStream)); err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	if err := s.dead.DeleteMsg(ctx, id); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove dead letter after requeue: %w", err)
	}
	return nil
}

// deadIDs lists the ids of every dead letter of sink (or all, sink "") that
// where matches (nil: all).
func (s *jsStore) deadIDs(ctx context.Context, sink string, where *rules.Condition) ([]uint64, error) {
	subj := deadSubject + ">"
	if sink != "" {
		subj = deadSubject + sink
	}
	var ids []uint64
	seq := uint64(1)
	for {
		m, err := s.dead.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return ids, nil
		}
		if err != nil {
			return ids, err
		}
		if deadMatches(where, m) {
			ids = append(ids, m.Sequence)
		}
		seq = m.Sequence + 1
	}
}

// deleteDead drops one dead letter.
func (s *jsStore) deleteDead(ctx context.Context, id uint64) error {
	err := s.dead.DeleteMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ErrNotFound
	}
	return err
}

// purgeDead drops every dead letter of sink (or all, sink "") and returns how
// many there were.
func (s *jsStore) purgeDead(ctx context.Context, sink string) (uint64, error) {
	counts, err := s.deadCounts(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	var opts []jetstream.StreamPurgeOpt
	if sink != "" {
		n = counts[sink]
		opts = append(opts, jetstream.WithPurgeSubject(deadSubject+sink))
	} else {
		for _, c := range counts {
			n += c
		}
	}
	return n, s.dead.Purge(ctx, opts...)
}

// deadCounts returns the number of dead letters per sink.
func (s *jsStore) deadCounts(ctx context.Context) (map[string]uint64, error) {
	info, err := s.dead.Info(ctx, jetstream.WithSubjectFilter(deadSubject+">"))
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, deadSubject)] = n
	}
	return out, nil
}

var errConflict = errors.New("conflict")

// deadEventID is the id of the event a dead letter holds: its
// Relay-Event-Id, or, for one stored before dead letters carried it, the
// sequence its message id ("dead:<sink>:<seq>") names.
func deadEventID(h nats.Header) string {
	if id := h.Get(hdrEventID); id != "" {
		return id
	}
	parts := strings.Split(h.Get(jetstream.MsgIDHeader), ":")
	if len(parts) == 3 && parts[0] == "dead" {
		return parts[2]
	}
	return ""
}
