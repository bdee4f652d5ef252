package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The synthetic event the relay emits when an expectation's timer runs out.
const (
	// MissedEvent is its event type; its object is "relay" and its status
	// "expectation_missed".
	MissedEvent = "relay.expectation_missed"
	// missedIDPrefix starts its message id.
	missedIDPrefix = "msg_missed_"
)

// Missed is the body of a synthetic missed event: its rule environment's
// payload. The field order is the JSON order.
type Missed struct {
	// Expectation is the expectation's name.
	Expectation string `json:"expectation"`
	// Key is the key the After event gave.
	Key string `json:"key"`
	// Deadline is when the timer ran out, RFC 3339 in UTC.
	Deadline string `json:"deadline"`
	// After is the body of the event that started the timer, as received.
	After json.RawMessage `json:"after"`
}

// NewMissed builds the body of the missed event of the timer that the event
// with body after started for (name, key), running out at deadline.
func NewMissed(name, key string, deadline time.Time, after []byte) Missed {
	return Missed{
		Expectation: name,
		Key:         key,
		Deadline:    deadline.UTC().Format(time.RFC3339Nano),
		After:       json.RawMessage(after),
	}
}

// Body encodes m as the synthetic event's body.
func (m Missed) Body() ([]byte, error) {
	if !json.Valid(m.After) {
		return nil, errors.New("missed event: the after event's body is not JSON")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("missed event: %w", err)
	}
	return b, nil
}

// MissedID is the message id of the missed event of the timer that the
// event afterMsgID started for (name, key): the same inputs always give the
// same id, so that the store drops a second injection of the same missed
// timer as a duplicate.
func MissedID(name, key, afterMsgID string) string {
	h := sha256.New()
	for _, s := range []string{name, key, afterMsgID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return missedIDPrefix + hex.EncodeToString(h.Sum(nil)[:16])
}

// NewMissedEnv builds the rule environment of a synthetic missed event from
// its body (see Missed): event MissedEvent, object "relay", status
// "expectation_missed"; recording, bot and media those of the After event
// in the body; payload the body itself; source, msg_id and received_at from
// m (the relay passes the After event's source). It fails when body is not
// a JSON object.
func NewMissedEnv(body []byte, m Meta) (*Env, error) {
	payload, err := decodeObject(body)
	if err != nil || payload == nil {
		return nil, fmt.Errorf("decode missed event: %w", ErrNotObject)
	}
	after, _ := payload["after"].(map[string]any)
	if after == nil {
		after = map[string]any{}
	}
	inner := envFromPayload(after, m)
	return &Env{
		Event:      MissedEvent,
		Object:     "relay",
		Status:     "expectation_missed",
		Recording:  inner.Recording,
		Bot:        inner.Bot,
		Media:      inner.Media,
		Source:     m.Source,
		MsgID:      m.MsgID,
		ReceivedAt: m.ReceivedAt,
		Payload:    payload,
	}, nil
}

// NewEnvFor builds the rule environment of a stored event whose type the
// store recorded as eventType: a synthetic missed event (type MissedEvent
// and no "event" field in its body, which no received event can be) gets
// NewMissedEnv, every other event NewEnv.
func NewEnvFor(eventType string, body []byte, m Meta) (*Env, error) {
	if eventType == MissedEvent {
		if payload, err := decodeObject(body); err == nil && payload != nil {
			if _, has := payload["event"]; !has {
				return NewMissedEnv(body, m)
			}
		}
	}
	return NewEnv(body, m)
}
