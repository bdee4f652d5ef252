package rules

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var transcriptArrives = ExpectationSpec{
	Name:   "transcript-arrives",
	After:  `event == "recording.done"`,
	Expect: `object == "transcript" && status in ["done", "failed"]`,
	Key:    "recording.id",
	Within: 30 * time.Minute,
}

func TestCompileExpectationsErrors(t *testing.T) {
	specs := []ExpectationSpec{
		transcriptArrives,
		{Name: "transcript-arrives", After: "evnt == 1", Expect: `"x"`, Key: `status == "done"`},
		{Name: "bad name!", After: "true", Expect: "true", Key: "bot.id", Within: time.Second},
		{},
	}
	_, err := CompileExpectations(specs)
	want := []string{
		`expectations[1].name: duplicate expectation name "transcript-arrives" (first at expectations[0])`,
		"expectations[1].after: unknown name evnt (1:1)",
		"expectations[1].expect: expected bool, but got string (1:1)",
		"expectations[1].key: expected string, but got bool (1:1)",
		"expectations[1].within: must be positive",
		`expectations[2].name: invalid name (use 1 to 64 letters, digits, "-" or "_")`,
		"expectations[3].name: required",
		"expectations[3].after: required",
		"expectations[3].expect: required",
		"expectations[3].key: required",
		"expectations[3].within: must be positive",
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func envOf(t *testing.T, body string, at time.Time) *Env {
	t.Helper()
	env, err := NewEnv([]byte(body), Meta{Source: "recall", MsgID: "msg_1", ReceivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestObserve(t *testing.T) {
	x, err := CompileExpectations([]ExpectationSpec{
		transcriptArrives,
		// Every bot event restarts the timer: After and Expect both match.
		{Name: "bot-heartbeat", After: `object == "bot"`, Expect: `object == "bot"`, Key: "bot.id", Within: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		body string
		want []Hit
	}{
		{"after starts", `{"event":"recording.done","data":{"recording":{"id":"rec_1"}}}`,
			[]Hit{{Expectation: "transcript-arrives", Key: "rec_1", Start: true, Deadline: at.Add(30 * time.Minute)}}},
		{"expect settles", `{"event":"transcript.failed","data":{"recording":{"id":"rec_1"},"transcript":{"id":"t"}}}`,
			[]Hit{{Expectation: "transcript-arrives", Key: "rec_1"}}},
		{"no key, no timer", `{"event":"recording.done","data":{}}`, nil},
		{"neither", `{"event":"transcript.processing","data":{"recording":{"id":"rec_1"}}}`, nil},
		{"both restart", `{"event":"bot.done","data":{"bot":{"id":"bot_1"}}}`,
			[]Hit{{Expectation: "bot-heartbeat", Key: "bot_1", Start: true, Deadline: at.Add(time.Minute)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits, errs := x.Observe(envOf(t, tt.body, at))
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if !reflect.DeepEqual(hits, tt.want) {
				t.Errorf("hits %+v, want %+v", hits, tt.want)
			}
		})
	}
}

func TestObserveKeyErrors(t *testing.T) {
	x, err := CompileExpectations([]ExpectationSpec{
		{Name: "k", After: "true", Expect: "false", Key: `payload.k`, Within: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"k":5}`, `{"k":"` + strings.Repeat("x", MaxKeyBytes+1) + `"}`} {
		hits, errs := x.Observe(envOf(t, body, time.Now()))
		if len(hits) != 0 || len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), `rule "expectations[0] (k)": key: `) {
			t.Errorf("%.20s: hits %v, errs %v", body, hits, errs)
		}
	}
	var none *Expectations
	if hits, errs := none.Observe(&Env{}); hits != nil || errs != nil || none.Len() != 0 {
		t.Error("a nil set observes something")
	}
}

func TestMissedEnv(t *testing.T) {
	after := []byte(`{"event":"recording.done","data":{"recording":{"id":"rec_1","metadata":{"m":"v"}},"bot":{"id":"bot_1"}}}`)
	deadline := time.Date(2025, 1, 1, 0, 30, 0, 0, time.UTC)
	body, err := NewMissed("transcript-arrives", "rec_1", deadline, after).Body()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"expectation":"transcript-arrives","key":"rec_1","deadline":"2025-01-01T00:30:00Z","after":` + string(after) + `}`
	if string(body) != want {
		t.Errorf("body %s\nwant %s", body, want)
	}
	id := MissedID("transcript-arrives", "rec_1", "msg_after")
	if id != MissedID("transcript-arrives", "rec_1", "msg_after") || id == MissedID("transcript-arrives", "rec_1", "msg_other") ||
		id == MissedID("transcript-arrives", "rec_2", "msg_after") || !strings.HasPrefix(id, "msg_missed_") {
		t.Errorf("MissedID is not a function of (name, key, after id): %s", id)
	}

	now := time.Now()
	env, err := NewEnvFor(MissedEvent, body, Meta{Source: "recall", MsgID: id, ReceivedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if env.Event != MissedEvent || env.Object != "relay" || env.Status != "expectation_missed" ||
		env.Recording["id"] != "rec_1" || env.Bot["id"] != "bot_1" || env.Media["id"] != "" ||
		env.Source != "recall" || env.MsgID != id || !env.ReceivedAt.Equal(now) {
		t.Errorf("env %+v", env)
	}
	if env.Payload["key"] != "rec_1" || env.Payload["after"].(map[string]any)["event"] != "recording.done" {
		t.Errorf("payload %v", env.Payload)
	}
	// A received event that claims the type is decoded as received.
	forged, err := NewEnvFor(MissedEvent, []byte(`{"event":"relay.expectation_missed","after":{"data":{"bot":{"id":"x"}}}}`), Meta{})
	if err != nil || forged.Bot["id"] != "" {
		t.Errorf("forged: %v %v", forged.Bot, err)
	}
	if _, err := (Missed{After: json.RawMessage("{")}).Body(); err == nil {
		t.Error("an invalid after body encodes")
	}
}

func TestNeverExpected(t *testing.T) {
	x, err := CompileExpectations([]ExpectationSpec{
		transcriptArrives,
		{Name: "typo", After: "true", Expect: `event == "transcript.finished"`, Key: "bot.id", Within: time.Second},
		{Name: "sub-code", After: "true", Expect: `sub_code == "meeting_not_found"`, Key: "bot.id", Within: time.Second},
		{Name: "missed", After: "true", Expect: `event == "relay.expectation_missed" && payload.key != ""`, Key: "bot.id", Within: time.Second},
		{Name: "media", After: "true", Expect: `object == "video_mixed" && media.id != ""`, Key: "bot.id", Within: time.Second},
		{Name: "failing", After: "true", Expect: `payload.nope.deeper == 1`, Key: "bot.id", Within: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := x.NeverExpected(), []string{"typo", "missed", "failing"}; !reflect.DeepEqual(got, want) {
		t.Errorf("NeverExpected() = %v, want %v", got, want)
	}
}

// TestOrderNames: rules can use stale and previous_status; NewEnv leaves
// them at their zero values for the relay to set.
func TestOrderNames(t *testing.T) {
	set, err := Compile([]Spec{{Name: "late", When: `stale && previous_status == "done"`, Sinks: []string{"s"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(t, `{"event":"transcript.processing"}`, time.Now())
	if env.Stale || env.PreviousStatus != "" {
		t.Errorf("NewEnv set stale=%v previous_status=%q", env.Stale, env.PreviousStatus)
	}
	if res := set.Eval(env); len(res.Rules) != 0 {
		t.Errorf("matched %v", res.Rules)
	}
	env.Stale, env.PreviousStatus = true, "done"
	if res := set.Eval(env); len(res.Rules) != 1 {
		t.Errorf("matched %v", res.Rules)
	}
}
