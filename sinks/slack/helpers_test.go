package slack

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

// reasons stands in for the rules package's sub-code catalog.
var reasons = map[string]string{
	"zoom_captions_failure": "There was an error in enabling meeting captions for the Zoom call",
	"call_ended_by_host":    "The host ended the meeting for everyone",
}

// loadDelivery reads an event body and builds the Delivery the relay would
// hand the sink, Data filled in the way the rules package documents it.
func loadDelivery(t *testing.T, path string) sinks.Delivery {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return deliveryFor(body)
}

func deliveryFor(body []byte) sinks.Delivery {
	d := sinks.Delivery{
		MsgID:      "msg_2mRBnD3d8Jq0QzYw1Xc",
		Source:     "recall",
		Rules:      []string{"transcript-failures", "all-failures"},
		Body:       body,
		ReceivedAt: time.Date(2025, 3, 19, 17, 44, 7, 0, time.UTC),
		Attempt:    1,
	}
	var payload map[string]any
	_ = json.Unmarshal(body, &payload)
	event, _ := payload["event"].(string)
	object, status := event, ""
	if i := strings.LastIndexByte(event, '.'); i >= 0 {
		object, status = event[:i], event[i+1:]
	}
	data, _ := payload["data"].(map[string]any)
	inner, _ := data["data"].(map[string]any)
	code, _ := inner["code"].(string)
	subCode, _ := inner["sub_code"].(string)
	updatedAt := time.Time{}
	if s, ok := inner["updated_at"].(string); ok {
		updatedAt, _ = time.Parse(time.RFC3339Nano, s)
	}
	media := ref0(nil)
	if object != "bot" && object != "recording" && object != "" {
		media = ref0(data[object])
	}
	d.Event = event
	d.Data = map[string]any{
		"event":           event,
		"object":          object,
		"status":          status,
		"code":            code,
		"sub_code":        subCode,
		"updated_at":      updatedAt,
		"recording":       ref0(data["recording"]),
		"bot":             ref0(data["bot"]),
		"media":           media,
		"source":          d.Source,
		"msg_id":          d.MsgID,
		"received_at":     d.ReceivedAt,
		"payload":         payload,
		"sub_code_reason": reasons[subCode],
	}
	return d
}

// ref0 is the rule environment's {id, metadata} view of a JSON object.
func ref0(v any) map[string]any {
	m, _ := v.(map[string]any)
	id, _ := m["id"].(string)
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
	}
	return map[string]any{"id": id, "metadata": md}
}
