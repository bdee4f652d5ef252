package rules

import "testing"

func TestLookupSubCode(t *testing.T) {
	tests := []struct {
		name         string
		event, code  string
		wantOK       bool
		wantEvent    string
		wantSeverity Severity
		wantReason   string
	}{
		{name: "exact transcript", event: "transcript.failed", code: "provider_connection_failed", wantOK: true, wantEvent: "transcript.failed", wantSeverity: SeverityCritical,
			wantReason: "Recall could not connect to the third-party transcription provider (e.g. insufficient funds, paid features on a free account, or the provider is temporarily unavailable)"},
		{name: "exact zoom global", event: "transcript.failed", code: "zoom_global_captions_disabled", wantOK: true, wantEvent: "transcript.failed", wantSeverity: SeverityCritical, wantReason: "Meeting captions are disabled by the Zoom account"},
		{name: "exact zoom host", event: "transcript.failed", code: "zoom_host_disabled_meeting_captions", wantOK: true, wantEvent: "transcript.failed", wantSeverity: SeverityCritical, wantReason: "The host of the Zoom meeting has disabled meeting captions"},
		{name: "exact zoom failure", event: "transcript.failed", code: "zoom_captions_failure", wantOK: true, wantEvent: "transcript.failed", wantSeverity: SeverityCritical, wantReason: "There was an error in enabling meeting captions for the Zoom call"},
		{name: "call ended info", event: "bot.call_ended", code: "call_ended_by_host", wantOK: true, wantEvent: "bot.call_ended", wantSeverity: SeverityInfo, wantReason: "The host ended the meeting for everyone"},
		{name: "kicked is warning", event: "bot.call_ended", code: "bot_kicked_from_call", wantOK: true, wantEvent: "bot.call_ended", wantSeverity: SeverityWarning, wantReason: "A participant removed the bot from the call"},
		{name: "fatal", event: "bot.fatal", code: "bot_errored", wantOK: true, wantEvent: "bot.fatal", wantSeverity: SeverityCritical, wantReason: "The bot hit an unexpected error; contact Recall support with the bot ID"},
		{name: "code-only fallback for legacy event", event: "bot.status_change", code: "meeting_not_found", wantOK: true, wantEvent: "bot.fatal", wantSeverity: SeverityWarning, wantReason: "No meeting was found at the given meeting URL; check the link"},
		{name: "code-only fallback with empty event", event: "", code: "timeout_exceeded_everyone_left", wantOK: true, wantEvent: "bot.call_ended", wantSeverity: SeverityInfo, wantReason: "The bot left because every other participant had left the call"},
		{name: "unknown code", event: "bot.fatal", code: "brand_new"},
		{name: "empty code", event: "bot.fatal", code: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := LookupSubCode(tt.event, tt.code)
			if ok != tt.wantOK {
				t.Fatalf("ok: got %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				if got != (SubCode{}) {
					t.Errorf("entry: got %+v, want zero", got)
				}
				return
			}
			want := SubCode{Event: tt.wantEvent, Code: tt.code, Reason: tt.wantReason, Severity: tt.wantSeverity}
			if got != want {
				t.Errorf("entry: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestSubCodeCatalog(t *testing.T) {
	wantCounts := map[string]int{"transcript.failed": 4, "bot.call_ended": 12, "bot.fatal": 8}
	gotCounts := map[string]int{}
	seen := map[string]bool{}
	for _, sc := range subCodes {
		gotCounts[sc.Event]++
		if seen[sc.Code] {
			t.Errorf("%s: duplicate code", sc.Code)
		}
		seen[sc.Code] = true
		switch sc.Severity {
		case SeverityInfo, SeverityWarning, SeverityCritical:
		default:
			t.Errorf("%s: got severity %q, want info, warning or critical", sc.Code, sc.Severity)
		}
		if sc.Reason == "" {
			t.Errorf("%s: got empty reason, want one", sc.Code)
		}
		if got, ok := LookupSubCode(sc.Event, sc.Code); !ok || got != sc {
			t.Errorf("LookupSubCode(%q, %q): got %+v, %v, want %+v, true", sc.Event, sc.Code, got, ok, sc)
		}
	}
	for event, want := range wantCounts {
		if got := gotCounts[event]; got != want {
			t.Errorf("%s: got %d entries, want %d", event, got, want)
		}
	}
}
