package rules

import (
	"strings"

	"github.com/expr-lang/expr/vm"
)

// knownEvents are the Recall.ai webhook event types the relay knows of.
// Recall may add more; the list is used only to warn about expressions that
// can match none of these. MissedEvent is not one: a missed event starts
// and settles no timer.
var knownEvents = func() []string {
	events := []string{
		"bot.joining_call", "bot.in_waiting_room", "bot.in_call_not_recording",
		"bot.recording_permission_allowed", "bot.recording_permission_denied",
		"bot.in_call_recording", "bot.call_ended", "bot.done", "bot.fatal",
		"bot.breakout_room_entered", "bot.breakout_room_left",
		"bot.breakout_room_opened", "bot.breakout_room_closed",
		"sdk_upload.uploading", "sdk_upload.complete", "sdk_upload.failed",
		"calendar.update", "calendar.sync_events",
	}
	for _, object := range []string{"recording", "transcript", "audio_mixed", "audio_separate",
		"video_mixed", "video_separate", "participant_events", "meeting_metadata"} {
		for _, status := range []string{"processing", "done", "failed", "deleted"} {
			events = append(events, object+"."+status)
		}
	}
	return events
}()

// KnownEvents returns the event types of the catalog: Recall's webhook
// events.
func KnownEvents() []string { return append([]string(nil), knownEvents...) }

// catalogSamples builds one sample environment per known event type and,
// for the types with documented sub-codes, one more per sub-code: a body
// shaped like Recall's, with a recording, a bot and (for media objects)
// the media object, each with an id and empty metadata.
func catalogSamples() []*Env {
	var out []*Env
	for _, event := range knownEvents {
		out = append(out, sampleEnv(event, nil))
		for _, sc := range subCodesOf(event) {
			out = append(out, sampleEnv(event, sc))
		}
	}
	return out
}

// subCodesOf returns the catalog's sub-codes for an event type.
func subCodesOf(event string) []any {
	var out []any
	for _, sc := range subCodes {
		if sc.Event == event {
			out = append(out, sc.Code)
		}
	}
	return out
}

// sampleEnv is a sample environment for event with the given sub_code.
func sampleEnv(event string, subCode any) *Env {
	object, status, _ := strings.Cut(event, ".")
	data := map[string]any{
		"data":      map[string]any{"code": status, "sub_code": subCode, "updated_at": "2025-01-01T00:00:00Z"},
		"recording": map[string]any{"id": "rec_sample", "metadata": map[string]any{}},
		"bot":       map[string]any{"id": "bot_sample", "metadata": map[string]any{}},
	}
	if object != "recording" && object != "bot" {
		data[object] = map[string]any{"id": object + "_sample", "metadata": map[string]any{}}
	}
	return envFromPayload(map[string]any{"event": event, "data": data}, Meta{Source: "sample", MsgID: "msg_sample"})
}

// NeverExpected returns the names of the expectations whose Expect matches
// none of the catalog's samples (see KnownEvents): one per event type, with
// a recording, a bot and a media id, and no sub-code or each documented
// one. Such an expectation would miss every timer it starts. The check is
// simple: an Expect that needs metadata, a particular id or a sub-code the
// catalog does not know is reported too; a run-time error counts as no
// match.
func (x *Expectations) NeverExpected() []string {
	if x == nil {
		return nil
	}
	samples := catalogSamples()
	var out []string
	for _, e := range x.list {
		if !matchesAny(e.expect, samples) {
			out = append(out, e.name)
		}
	}
	return out
}

// matchesAny reports whether p is true for one of the samples.
func matchesAny(p *vm.Program, samples []*Env) bool {
	machine := &vm.VM{}
	for _, env := range samples {
		ok, err := run(machine, p, env)
		if err != nil {
			machine = &vm.VM{}
			continue
		}
		if ok {
			return true
		}
	}
	return false
}
