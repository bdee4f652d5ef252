package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Meta is what the relay knows about an event beyond its body.
type Meta struct {
	// Source is the name of the configured source the event arrived on.
	Source string
	// MsgID is the svix-id header of the delivery.
	MsgID string
	// ReceivedAt is when the relay accepted the delivery.
	ReceivedAt time.Time
}

// Env is the typed rule environment. The expr tags are the public names
// rules refer to, listed in docs/reference.md: they must not change.
//
// Every map field is non-nil after NewEnv. Recording, Bot and Media always
// hold the keys "id" (string) and "metadata" (map[string]any).
type Env struct {
	// Event is the body's "event" field ("" when absent or not a string).
	Event string `expr:"event"`
	// Object is Event before its last dot (all of Event when it has no dot).
	Object string `expr:"object"`
	// Status is Event after its last dot ("" when Event has no dot).
	Status string `expr:"status"`
	// Code is data.data.code ("" when absent or not a string).
	Code string `expr:"code"`
	// SubCode is data.data.sub_code ("" when null, absent or not a string).
	SubCode string `expr:"sub_code"`
	// UpdatedAt is data.data.updated_at (zero when absent or unparseable).
	UpdatedAt time.Time `expr:"updated_at"`
	// Recording is data.recording as {id, metadata}.
	Recording map[string]any `expr:"recording"`
	// Bot is data.bot as {id, metadata}.
	Bot map[string]any `expr:"bot"`
	// Media is data.<object> as {id, metadata} for media-object events
	// (see NewEnv); {id: "", metadata: {}} otherwise.
	Media map[string]any `expr:"media"`
	// Source is Meta.Source.
	Source string `expr:"source"`
	// MsgID is Meta.MsgID.
	MsgID string `expr:"msg_id"`
	// ReceivedAt is Meta.ReceivedAt.
	ReceivedAt time.Time `expr:"received_at"`
	// Payload is the whole decoded body.
	Payload map[string]any `expr:"payload"`
	// Stale is true when the relay already accepted an event for the same
	// object (object type and id) with a later UpdatedAt. NewEnv leaves it
	// false: the relay sets it from what it remembers (see docs/reference.md).
	Stale bool `expr:"stale"`
	// PreviousStatus is the object's status before this event, "" when the
	// relay has seen none. NewEnv leaves it "", the relay sets it.
	PreviousStatus string `expr:"previous_status"`
}

// ErrNotObject is wrapped by the error NewEnv returns for a body that is
// valid JSON but not an object (array, string, number, bool or null).
var ErrNotObject = errors.New("not a JSON object")

// NewEnv decodes body, which must be a single JSON object, and builds the
// rule environment from it and m. It returns an error only when body is not
// valid JSON or not an object; any JSON object, whatever its shape, yields an
// Env.
//
// Field derivation:
//   - object/status split event at its last dot, so real-time events such as
//     "transcript.data" and unknown future events still get both.
//   - code, sub_code and updated_at come from data.data; for the legacy
//     (API v1.10) "bot.status_change" shape, which has no data.data, they come
//     from data.status.{code, sub_code, created_at} and bot.id from
//     data.bot_id.
//   - media is data.<object> for every event whose object is neither
//     "recording" nor "bot" and whose data.<object> is a JSON object: that
//     covers every Recall media object (transcript, video_mixed, ...) and
//     sdk_upload, and future media objects.
//
// Numbers in the payload decode as float64. The returned maps share storage
// with Payload and must not be modified.
func NewEnv(body []byte, m Meta) (*Env, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("decode body: %w", err)
		}
		return nil, fmt.Errorf("decode body: %w", ErrNotObject)
	}
	payload, err := decodeObject(body)
	if err != nil {
		return nil, fmt.Errorf("decode body: %w", err)
	}
	if payload == nil { // unreachable after the '{' check; keep the contract
		return nil, fmt.Errorf("decode body: %w", ErrNotObject)
	}
	return envFromPayload(payload, m), nil
}

// envFromPayload derives every environment field from a decoded body.
func envFromPayload(payload map[string]any, m Meta) *Env {
	e := &Env{
		Payload:    payload,
		Source:     m.Source,
		MsgID:      m.MsgID,
		ReceivedAt: m.ReceivedAt,
	}
	e.Event, _ = payload["event"].(string)
	if i := strings.LastIndexByte(e.Event, '.'); i >= 0 {
		e.Object, e.Status = e.Event[:i], e.Event[i+1:]
	} else {
		e.Object = e.Event
	}

	data, _ := payload["data"].(map[string]any)
	var botRef any
	if data != nil {
		botRef = data["bot"]
		if inner, ok := data["data"].(map[string]any); ok {
			e.Code, _ = inner["code"].(string)
			e.SubCode, _ = inner["sub_code"].(string)
			e.UpdatedAt = parseTime(inner["updated_at"])
		} else if st, ok := data["status"].(map[string]any); ok {
			// Legacy API v1.10 bot.status_change.
			e.Code, _ = st["code"].(string)
			e.SubCode, _ = st["sub_code"].(string)
			e.UpdatedAt = parseTime(st["created_at"])
			if id, ok := data["bot_id"].(string); ok && botRef == nil {
				botRef = map[string]any{"id": id}
			}
		}
	}

	e.Recording = ref(data["recording"])
	e.Bot = ref(botRef)
	if e.Object != "recording" && e.Object != "bot" && e.Object != "" {
		if obj, ok := data[e.Object].(map[string]any); ok {
			e.Media = ref(obj)
		}
	}
	if e.Media == nil {
		e.Media = ref(nil)
	}
	return e
}

// ref normalises a Recall reference to {id: string, metadata: map}.
// Anything that is not a JSON object yields {id: "", metadata: {}}.
func ref(v any) map[string]any {
	obj, _ := v.(map[string]any)
	id, _ := obj["id"].(string)
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
	}
	return map[string]any{"id": id, "metadata": md}
}

// parseTime parses an RFC 3339 timestamp string; anything else is zero.
func parseTime(v any) time.Time {
	s, ok := v.(string)
	if !ok || s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Data returns the environment as template data: every name rules see
// (event, object, status, code, sub_code, updated_at, recording, bot, media,
// source, msg_id, received_at, payload) as a map key, plus
// "sub_code_reason" (the catalog reason, "" when unknown) and
// "sub_code_severity" (the catalog severity as a string, "" when unknown).
// A new map is returned on every call; its nested maps are shared with e.
func (e *Env) Data() map[string]any {
	if e == nil {
		e = &Env{}
	}
	var reason, severity string
	if sc, ok := LookupSubCode(e.Event, e.SubCode); ok {
		reason, severity = sc.Reason, string(sc.Severity)
	}
	return map[string]any{
		"event":             e.Event,
		"object":            e.Object,
		"status":            e.Status,
		"code":              e.Code,
		"sub_code":          e.SubCode,
		"updated_at":        e.UpdatedAt,
		"recording":         e.Recording,
		"bot":               e.Bot,
		"media":             e.Media,
		"source":            e.Source,
		"msg_id":            e.MsgID,
		"received_at":       e.ReceivedAt,
		"payload":           e.Payload,
		"sub_code_reason":   reason,
		"sub_code_severity": severity,
	}
}
