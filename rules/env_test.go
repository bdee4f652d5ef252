package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// examplesDir holds the project's sample Recall events.
const examplesDir = "../configs/examples/events"

// envWant is the expected derived part of an Env. An empty updatedAt means
// the zero time.
type envWant struct {
	file        string
	event       string
	object      string
	status      string
	code        string
	subCode     string
	updatedAt   string
	recordingID string
	botID       string
	mediaID     string
}

// loadEnv reads path and builds an Env with fixed Meta.
func loadEnv(t *testing.T, path string) *Env {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	env, err := NewEnv(body, Meta{Source: "recall", MsgID: "msg_1"})
	if err != nil {
		t.Fatalf("NewEnv(%s): got error %v, want nil", path, err)
	}
	return env
}

// checkRef asserts that ref has exactly the keys id and metadata, with the
// given id and a non-nil metadata map.
func checkRef(t *testing.T, name string, ref map[string]any, wantID string) {
	t.Helper()
	if len(ref) != 2 {
		t.Errorf("%s: got keys %v, want exactly [id metadata]", name, slices.Sorted(maps.Keys(ref)))
	}
	id, ok := ref["id"].(string)
	if !ok || id != wantID {
		t.Errorf("%s.id: got %#v, want %q", name, ref["id"], wantID)
	}
	if md, ok := ref["metadata"].(map[string]any); !ok || md == nil {
		t.Errorf("%s.metadata: got %#v, want a non-nil map", name, ref["metadata"])
	}
}

// checkEnv asserts every derived field of env against w.
func checkEnv(t *testing.T, env *Env, w envWant) {
	t.Helper()
	for _, c := range []struct{ name, got, want string }{
		{"event", env.Event, w.event},
		{"object", env.Object, w.object},
		{"status", env.Status, w.status},
		{"code", env.Code, w.code},
		{"sub_code", env.SubCode, w.subCode},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	var wantTime time.Time
	if w.updatedAt != "" {
		var err error
		if wantTime, err = time.Parse(time.RFC3339Nano, w.updatedAt); err != nil {
			t.Fatalf("bad want updatedAt %q: %v", w.updatedAt, err)
		}
	}
	if !env.UpdatedAt.Equal(wantTime) {
		t.Errorf("updated_at: got %v, want %v", env.UpdatedAt, wantTime)
	}
	checkRef(t, "recording", env.Recording, w.recordingID)
	checkRef(t, "bot", env.Bot, w.botID)
	checkRef(t, "media", env.Media, w.mediaID)
	if env.Payload == nil {
		t.Errorf("payload: got nil, want the decoded body")
	}
}

func TestNewEnvExamples(t *testing.T) {
	tests := []envWant{
		{file: "audio_mixed.deleted.json", event: "audio_mixed.deleted", object: "audio_mixed", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.008903Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "3eefb079-158f-4d2a-9905-8ded5f257506"},
		{file: "audio_mixed.done.json", event: "audio_mixed.done", object: "audio_mixed", status: "done", code: "done", subCode: "", updatedAt: "2025-03-14T15:48:40.077164Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "3eefb079-158f-4d2a-9905-8ded5f257506"},
		{file: "audio_mixed.failed.json", event: "audio_mixed.failed", object: "audio_mixed", status: "failed", code: "failed", subCode: "", updatedAt: "2025-03-17T09:31:44.285659Z", recordingID: "dc615444-390d-41b1-8c01-42bfe4bf1d44", botID: "15aac0f7-e42a-4ca2-a1b4-59af607e746c", mediaID: "705348e3-8a9a-4eec-8953-f7adfcbde1f2"},
		{file: "audio_mixed.processing.json", event: "audio_mixed.processing", object: "audio_mixed", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.126023Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "3eefb079-158f-4d2a-9905-8ded5f257506"},
		{file: "audio_separate.deleted.json", event: "audio_separate.deleted", object: "audio_separate", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.010147Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "f213ebaf-ffcd-4f87-82d7-432ef28fa57d"},
		{file: "audio_separate.failed.json", event: "audio_separate.failed", object: "audio_separate", status: "failed", code: "failed", subCode: "", updatedAt: "2025-03-17T09:31:44.286930Z", recordingID: "dc615444-390d-41b1-8c01-42bfe4bf1d44", botID: "15aac0f7-e42a-4ca2-a1b4-59af607e746c", mediaID: "9bd2378e-cdfb-466c-b435-4d8198c0edba"},
		{file: "audio_separate.processing.json", event: "audio_separate.processing", object: "audio_separate", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.127310Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "f213ebaf-ffcd-4f87-82d7-432ef28fa57d"},
		{file: "bot.call_ended.call_ended_by_host.json", event: "bot.call_ended", object: "bot", status: "call_ended", code: "call_ended", subCode: "call_ended_by_host", updatedAt: "2025-03-14T15:46:51.204417Z", recordingID: "", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: ""},
		{file: "bot.fatal.meeting_not_found.json", event: "bot.fatal", object: "bot", status: "fatal", code: "fatal", subCode: "meeting_not_found", updatedAt: "2025-03-18T07:59:31.882406Z", recordingID: "", botID: "5211650a-57d0-4539-ac52-d2ed8c5cfbdb", mediaID: ""},
		{file: "bot.in_call_recording.json", event: "bot.in_call_recording", object: "bot", status: "in_call_recording", code: "in_call_recording", subCode: "", updatedAt: "2025-03-14T15:00:04.512907+00:00", recordingID: "", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: ""},
		{file: "meeting_metadata.deleted.json", event: "meeting_metadata.deleted", object: "meeting_metadata", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.011532Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "949ac645-1848-42c3-a17d-80fd0ff51d18"},
		{file: "meeting_metadata.done.json", event: "meeting_metadata.done", object: "meeting_metadata", status: "done", code: "done", subCode: "", updatedAt: "2025-03-14T15:47:02.361590Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "949ac645-1848-42c3-a17d-80fd0ff51d18"},
		{file: "meeting_metadata.failed.json", event: "meeting_metadata.failed", object: "meeting_metadata", status: "failed", code: "failed", subCode: "", updatedAt: "2025-03-17T09:31:44.288176Z", recordingID: "dc615444-390d-41b1-8c01-42bfe4bf1d44", botID: "15aac0f7-e42a-4ca2-a1b4-59af607e746c", mediaID: "a4071ced-16dd-4a0c-b80a-a50bcd33d7af"},
		{file: "meeting_metadata.processing.json", event: "meeting_metadata.processing", object: "meeting_metadata", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.128954Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "949ac645-1848-42c3-a17d-80fd0ff51d18"},
		{file: "participant_events.deleted.json", event: "participant_events.deleted", object: "participant_events", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.004871Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "282a8fcb-3d65-40cd-b2d3-f8b0cd446266"},
		{file: "participant_events.done.json", event: "participant_events.done", object: "participant_events", status: "done", code: "done", subCode: "", updatedAt: "2025-03-14T15:47:02.339812Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "282a8fcb-3d65-40cd-b2d3-f8b0cd446266"},
		{file: "participant_events.failed.json", event: "participant_events.failed", object: "participant_events", status: "failed", code: "failed", subCode: "", updatedAt: "2025-03-17T09:31:44.281904Z", recordingID: "dc615444-390d-41b1-8c01-42bfe4bf1d44", botID: "15aac0f7-e42a-4ca2-a1b4-59af607e746c", mediaID: "2ae97901-32cc-446d-a043-c61232adec66"},
		{file: "participant_events.processing.json", event: "participant_events.processing", object: "participant_events", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.120117Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "282a8fcb-3d65-40cd-b2d3-f8b0cd446266"},
		{file: "recording.deleted.json", event: "recording.deleted", object: "recording", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.000412Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: ""},
		{file: "recording.done.json", event: "recording.done", object: "recording", status: "done", code: "done", subCode: "", updatedAt: "2025-03-14T15:53:27.902114Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: ""},
		{file: "recording.failed.null_sub_code.json", event: "recording.failed", object: "recording", status: "failed", code: "failed", subCode: "", updatedAt: "2025-03-17T09:31:44.270651Z", recordingID: "dc615444-390d-41b1-8c01-42bfe4bf1d44", botID: "15aac0f7-e42a-4ca2-a1b4-59af607e746c", mediaID: ""},
		{file: "recording.processing.json", event: "recording.processing", object: "recording", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.118342Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: ""},
		{file: "transcript.done.json", event: "transcript.done", object: "transcript", status: "done", code: "done", subCode: "", updatedAt: "2025-03-14T15:47:09.581230Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "16af7532-c7b1-4538-81e5-183640c8ed4c"},
		{file: "transcript.failed.provider_connection_failed.json", event: "transcript.failed", object: "transcript", status: "failed", code: "failed", subCode: "provider_connection_failed", updatedAt: "2025-03-18T13:02:11.408733Z", recordingID: "1c8a4909-b982-4392-b673-960822437c40", botID: "71add510-3fc9-42ba-9dd7-ae201cdd219d", mediaID: "66b87c43-682a-4368-91c0-75751a0cfe7a"},
		{file: "transcript.failed.zoom_captions_failure.json", event: "transcript.failed", object: "transcript", status: "failed", code: "failed", subCode: "zoom_captions_failure", updatedAt: "2025-03-19T17:44:06.535897Z", recordingID: "05cf3a8b-8f61-4dd2-8819-c893d1d9ce45", botID: "d9e964ff-64ae-4db9-a1b2-4e001bc327d3", mediaID: "8d30fcbd-c845-4ae3-8314-006773841121"},
		{file: "transcript.failed.zoom_global_captions_disabled.json", event: "transcript.failed", object: "transcript", status: "failed", code: "failed", subCode: "zoom_global_captions_disabled", updatedAt: "2025-03-18T16:30:58.770145Z", recordingID: "49761975-a444-47b0-b03e-fe59c888cbd7", botID: "0402745d-25a5-4b6e-bb0c-1691441c40e6", mediaID: "d9a2dc29-7782-493d-80a9-212e90a0dcde"},
		{file: "transcript.failed.zoom_host_disabled_meeting_captions.json", event: "transcript.failed", object: "transcript", status: "failed", code: "failed", subCode: "zoom_host_disabled_meeting_captions", updatedAt: "2025-03-19T08:15:23.094512Z", recordingID: "5978d8d0-619b-486c-bc6f-de22d284ee7e", botID: "1e8e98f6-c89b-4ccd-889d-12571d6cda4f", mediaID: "0160269f-6f3c-4611-9e9a-94d37038febf"},
		{file: "transcript.processing.json", event: "transcript.processing", object: "transcript", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.121974Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "16af7532-c7b1-4538-81e5-183640c8ed4c"},
		{file: "video_mixed.deleted.json", event: "video_mixed.deleted", object: "video_mixed", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.006220Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "a2429777-b947-40fb-85fe-7c4cbb17c5f9"},
		{file: "video_mixed.done.json", event: "video_mixed.done", object: "video_mixed", status: "done", code: "done", subCode: "", updatedAt: "2025-03-14T15:53:19.440318Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "a2429777-b947-40fb-85fe-7c4cbb17c5f9"},
		{file: "video_mixed.processing.json", event: "video_mixed.processing", object: "video_mixed", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.123401Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "a2429777-b947-40fb-85fe-7c4cbb17c5f9"},
		{file: "video_separate.deleted.json", event: "video_separate.deleted", object: "video_separate", status: "deleted", code: "deleted", subCode: "", updatedAt: "2025-03-21T15:53:31.007615Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "33511c75-d1b0-4c71-b6f2-5956cfc0a3cd"},
		{file: "video_separate.failed.json", event: "video_separate.failed", object: "video_separate", status: "failed", code: "failed", subCode: "", updatedAt: "2025-03-17T09:31:44.284417Z", recordingID: "dc615444-390d-41b1-8c01-42bfe4bf1d44", botID: "15aac0f7-e42a-4ca2-a1b4-59af607e746c", mediaID: "7778addc-3b75-44c0-9023-97f01dbbc10b"},
		{file: "video_separate.processing.json", event: "video_separate.processing", object: "video_separate", status: "processing", code: "processing", subCode: "", updatedAt: "2025-03-14T15:00:05.124886Z", recordingID: "81a3fd7f-bade-436f-8970-e129e948f81b", botID: "950132d0-41f2-4d79-a2f4-2c14525554e4", mediaID: "33511c75-d1b0-4c71-b6f2-5956cfc0a3cd"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			checkEnv(t, loadEnv(t, filepath.Join(examplesDir, tt.file)), tt)
		})
	}

	// Files added to the examples later have no row yet; they must at
	// least decode and agree with their own event field.
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < len(tests) {
		t.Errorf("examples: got %d files, want at least %d", len(files), len(tests))
	}
	for _, f := range files {
		if seen[filepath.Base(f)] {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			env := loadEnv(t, f)
			if got := env.Object + "." + env.Status; got != env.Event {
				t.Errorf("object.status: got %q, want %q", got, env.Event)
			}
		})
	}
}

func TestNewEnvEdgeCases(t *testing.T) {
	const (
		rec = "0b6f3c7e-5b1a-4a53-9f2d-8a4b0e2c1d10"
		bot = "2c8e4f7a-9d3b-4e61-8a5c-7f0e1d2b3c40"
	)
	tests := []struct {
		want  envWant
		extra func(t *testing.T, env *Env)
	}{
		{want: envWant{file: "bot_null.json", event: "transcript.done", object: "transcript", status: "done", code: "done", updatedAt: "2024-12-04T23:25:56.339940Z", recordingID: rec, mediaID: "6f1b6a2e-2f0c-4bd8-9f39-1b0c3b9a7e01"},
			extra: func(t *testing.T, env *Env) {
				if got := env.Media["metadata"].(map[string]any)["lang"]; got != "en" {
					t.Errorf("media.metadata.lang: got %v, want en", got)
				}
			}},
		{want: envWant{file: "sub_code_absent.json", event: "recording.failed", object: "recording", status: "failed", code: "failed", updatedAt: "2024-12-04T23:25:56.339940Z", recordingID: rec, botID: bot}},
		{want: envWant{file: "sub_code_null.json", event: "bot.fatal", object: "bot", status: "fatal", code: "fatal", updatedAt: "2024-12-04T23:25:56.339940Z", botID: bot}},
		{want: envWant{file: "updated_at_offset.json", event: "bot.joining_call", object: "bot", status: "joining_call", code: "joining_call", updatedAt: "2024-02-17T16:44:00.505440Z", botID: bot}},
		{want: envWant{file: "updated_at_invalid.json", event: "bot.in_waiting_room", object: "bot", status: "in_waiting_room", code: "in_waiting_room", botID: bot}},
		{want: envWant{file: "legacy_bot_status_change.json", event: "bot.status_change", object: "bot", status: "status_change", code: "fatal", subCode: "meeting_password_incorrect", updatedAt: "2024-02-17T16:44:00.505440+00:00", botID: "7e9d2a41-3c5b-4f8e-b1a6-0d4c2e8f9a13"}},
		{want: envWant{file: "calendar_sync_events.json", event: "calendar.sync_events", object: "calendar", status: "sync_events"},
			extra: func(t *testing.T, env *Env) {
				got := env.Payload["data"].(map[string]any)["calendar_id"]
				if got != "5d1c9b8e-0f2a-4c6d-8e3b-1a7f9c2d4e50" {
					t.Errorf("payload.data.calendar_id: got %v, want 5d1c9b8e-0f2a-4c6d-8e3b-1a7f9c2d4e50", got)
				}
			}},
		{want: envWant{file: "calendar_update.json", event: "calendar.update", object: "calendar", status: "update"}},
		{want: envWant{file: "sdk_upload_complete.json", event: "sdk_upload.complete", object: "sdk_upload", status: "complete", code: "complete", updatedAt: "2025-03-14T15:48:40.077164Z", recordingID: "9a3e5c7b-1d2f-4e6a-8b0c-3f5d7e9a1b20", mediaID: "c4e6a8b0-2d4f-4a6c-9e1b-5d7f9b1d3e60"}},
		{want: envWant{file: "realtime_transcript_data.json", event: "transcript.data", object: "transcript", status: "data", recordingID: rec, botID: bot, mediaID: "6f1b6a2e-2f0c-4bd8-9f39-1b0c3b9a7e01"}},
		{want: envWant{file: "realtime_participant_join.json", event: "participant_events.join", object: "participant_events", status: "join", recordingID: rec, botID: bot, mediaID: "282a8fcb-3d65-40cd-b2d3-f8b0cd446266"}},
		{want: envWant{file: "future_event.json", event: "video_separate_png.done", object: "video_separate_png", status: "done", code: "done", subCode: "brand_new_sub_code", updatedAt: "2026-01-02T03:04:05.123456Z", recordingID: rec, botID: bot, mediaID: "b7d9f1a3-5c7e-4a9b-8d0f-2a4c6e8a0b80"},
			extra: func(t *testing.T, env *Env) {
				got := env.Payload["data"].(map[string]any)["extra"]
				want := []any{1.0, 2.5, -300.0, true, false, nil, "x"}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("payload.data.extra: got %#v, want %#v", got, want)
				}
			}},
		{want: envWant{file: "no_event_field.json"},
			extra: func(t *testing.T, env *Env) {
				if got := env.Payload["type"]; got != "ping" {
					t.Errorf("payload.type: got %v, want ping", got)
				}
			}},
		{want: envWant{file: "event_without_dot.json", event: "ping", object: "ping"}},
		{want: envWant{file: "refs_wrong_types.json", event: "recording.done", object: "recording", status: "done"}},
		{want: envWant{file: "metadata_nested_unicode.json", event: "recording.done", object: "recording", status: "done", code: "done", updatedAt: "2024-12-04T23:25:56.339940Z", recordingID: rec, botID: bot},
			extra: func(t *testing.T, env *Env) {
				md := env.Recording["metadata"].(map[string]any)
				for _, c := range []struct{ key, want string }{
					{"title", "Réunion hebdo — 東京オフィス 🚀"},
					{"escaped", "line1\nline2 \"quoted\" é🚀"},
					{"empty", ""},
				} {
					if got := md[c.key]; got != c.want {
						t.Errorf("recording.metadata.%s: got %q, want %q", c.key, got, c.want)
					}
				}
				team := md["nested"].(map[string]any)["team"].(map[string]any)
				if got, want := team["tags"], []any{"α", "β"}; !reflect.DeepEqual(got, want) {
					t.Errorf("recording.metadata.nested.team.tags: got %v, want %v", got, want)
				}
				if got := env.Bot["metadata"].(map[string]any)["customer_id"]; got != "cus_ß" {
					t.Errorf("bot.metadata.customer_id: got %v, want cus_ß", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.want.file, func(t *testing.T) {
			env := loadEnv(t, filepath.Join("testdata", "events", tt.want.file))
			checkEnv(t, env, tt.want)
			if tt.extra != nil {
				tt.extra(t, env)
			}
		})
	}
}

func TestNewEnvMeta(t *testing.T) {
	at := time.Date(2025, 3, 14, 15, 0, 0, 0, time.UTC)
	env, err := NewEnv([]byte(`{"event":"bot.done"}`), Meta{Source: "recall-eu", MsgID: "msg_abc", ReceivedAt: at})
	if err != nil {
		t.Fatalf("NewEnv: got error %v, want nil", err)
	}
	if env.Source != "recall-eu" || env.MsgID != "msg_abc" || !env.ReceivedAt.Equal(at) {
		t.Errorf("meta: got (%q, %q, %v), want (recall-eu, msg_abc, %v)", env.Source, env.MsgID, env.ReceivedAt, at)
	}
}

func TestNewEnvLargeBody(t *testing.T) {
	md := map[string]string{}
	for i := range 300 {
		md[fmt.Sprintf("key_%03d", i)] = strings.Repeat("é", 200) // 400 bytes, the documented max 500 chars
	}
	words := make([]map[string]any, 2000)
	for i := range words {
		words[i] = map[string]any{"text": fmt.Sprintf("word%d", i), "start": float64(i) / 10}
	}
	body, err := json.Marshal(map[string]any{
		"event": "transcript.done",
		"data": map[string]any{
			"data":       map[string]any{"code": "done", "sub_code": nil, "updated_at": "2024-12-04T23:25:56.339940Z"},
			"transcript": map[string]any{"id": "t1", "metadata": md},
			"recording":  map[string]any{"id": "r1", "metadata": md},
			"bot":        map[string]any{"id": "b1", "metadata": map[string]any{"customer_id": "cus_1"}},
			"words":      words,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(body) < 100<<10 {
		t.Fatalf("body: got %d bytes, want at least 100 KiB", len(body))
	}
	env, err := NewEnv(body, Meta{})
	if err != nil {
		t.Fatalf("NewEnv: got error %v, want nil", err)
	}
	checkEnv(t, env, envWant{event: "transcript.done", object: "transcript", status: "done", code: "done", updatedAt: "2024-12-04T23:25:56.339940Z", recordingID: "r1", botID: "b1", mediaID: "t1"})
	if got := len(env.Media["metadata"].(map[string]any)); got != 300 {
		t.Errorf("media.metadata: got %d keys, want 300", got)
	}
}

func TestNewEnvErrors(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		notObject bool // error must wrap ErrNotObject
	}{
		{name: "array", body: `[{"event":"bot.done"}]`, notObject: true},
		{name: "string", body: `"bot.done"`, notObject: true},
		{name: "number", body: ` 42 `, notObject: true},
		{name: "bool", body: `true`, notObject: true},
		{name: "null", body: `null`, notObject: true},
		{name: "empty", body: ``},
		{name: "whitespace only", body: " \n\t"},
		{name: "truncated", body: `{"event":"bot.done"`},
		{name: "missing value", body: `{"event":}`},
		{name: "trailing garbage", body: `{"event":"bot.done"} x`},
		{name: "two objects", body: `{} {}`},
		{name: "single quotes", body: `{'event':'bot.done'}`},
		{name: "trailing comma", body: `{"event":"bot.done",}`},
		{name: "number out of range", body: `{"n": 1e400}`},
		{name: "control character in string", body: "{\"event\":\"bot\x01done\"}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := NewEnv([]byte(tt.body), Meta{})
			if err == nil {
				t.Fatalf("NewEnv(%q): got env %+v, want error", tt.body, env)
			}
			if env != nil {
				t.Errorf("NewEnv(%q): got non-nil env with error", tt.body)
			}
			if got := errors.Is(err, ErrNotObject); got != tt.notObject {
				t.Errorf("errors.Is(%v, ErrNotObject): got %v, want %v", err, got, tt.notObject)
			}
			if !strings.HasPrefix(err.Error(), "decode body: ") {
				t.Errorf("error: got %q, want prefix %q", err, "decode body: ")
			}
		})
	}
}

// TestDecodeObjectMatchesStdlib checks the fast decoder against
// encoding/json on inputs that exercise both the fast path and the fallback.
func TestDecodeObjectMatchesStdlib(t *testing.T) {
	deep := strings.Repeat(`{"a":`, fastMaxDepth+10) + "1" + strings.Repeat("}", fastMaxDepth+10)
	tests := []struct{ name, body string }{
		{"plain", `{"a":"b","n":1.5,"t":true,"f":false,"z":null,"arr":[],"obj":{}}`},
		{"whitespace", " \r\n\t{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \n"},
		{"escapes", `{"a":"x\"y\\z\/\b\f\n\r\t\u00e9\ud83d\ude80"}`},
		{"lone surrogate", `{"a":"\ud800x"}`},
		{"invalid utf8", "{\"a\":\"\xff\xfe\"}"},
		{"invalid utf8 key", "{\"\xc3\":1}"},
		{"non-ascii key", `{"ключ":"значение"}`},
		{"duplicate keys", `{"a":1,"a":{"b":2}}`},
		{"numbers", `{"a":[0,-0,1e3,1E-3,-12.5e+2,123456789012345678901234567890]}`},
		{"bad numbers", `{"a":01}`},
		{"bad fraction", `{"a":1.}`},
		{"bad exponent", `{"a":1e}`},
		{"leading plus", `{"a":+1}`},
		{"bad literal", `{"a":tru}`},
		{"deep nesting", deep},
		{"empty key", `{"":""}`},
		{"unterminated string", `{"a":"b`},
		{"missing colon", `{"a" 1}`},
		{"missing comma", `{"a":1 "b":2}`},
		{"array trailing comma", `{"a":[1,]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want map[string]any
			wantErr := json.Unmarshal([]byte(tt.body), &want)
			got, gotErr := decodeObject([]byte(tt.body))
			if (gotErr != nil) != (wantErr != nil) {
				t.Fatalf("error: got %v, want %v", gotErr, wantErr)
			}
			if gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Errorf("error: got %q, want %q", gotErr, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("value: got %#v, want %#v", got, want)
			}
		})
	}
}

func TestEnvData(t *testing.T) {
	env := loadEnv(t, filepath.Join(examplesDir, "transcript.failed.zoom_captions_failure.json"))
	data := env.Data()
	wantKeys := []string{"bot", "code", "event", "media", "msg_id", "object", "payload", "received_at", "recording", "source", "status", "sub_code", "sub_code_reason", "sub_code_severity", "updated_at"}
	if got := slices.Sorted(maps.Keys(data)); !reflect.DeepEqual(got, wantKeys) {
		t.Errorf("keys: got %v, want %v", got, wantKeys)
	}
	tests := []struct {
		key  string
		want any
	}{
		{"event", "transcript.failed"},
		{"object", "transcript"},
		{"status", "failed"},
		{"code", "failed"},
		{"sub_code", "zoom_captions_failure"},
		{"sub_code_reason", "There was an error in enabling meeting captions for the Zoom call"},
		{"sub_code_severity", "critical"},
		{"source", "recall"},
		{"msg_id", "msg_1"},
		{"updated_at", env.UpdatedAt},
		{"received_at", env.ReceivedAt},
	}
	for _, tt := range tests {
		if got := data[tt.key]; got != tt.want {
			t.Errorf("Data()[%q]: got %#v, want %#v", tt.key, got, tt.want)
		}
	}
	for _, key := range []string{"recording", "bot", "media", "payload"} {
		if _, ok := data[key].(map[string]any); !ok {
			t.Errorf("Data()[%q]: got %T, want map[string]any", key, data[key])
		}
	}

	unknown := (&Env{Event: "bot.fatal", SubCode: "something_new"}).Data()
	if unknown["sub_code_reason"] != "" || unknown["sub_code_severity"] != "" {
		t.Errorf("unknown sub-code: got reason %q severity %q, want both empty", unknown["sub_code_reason"], unknown["sub_code_severity"])
	}
}
