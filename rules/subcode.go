package rules

// Severity grades how much attention a sub-code deserves.
type Severity string

// Severities used by the sub-code catalog.
const (
	// SeverityInfo is an expected outcome; no action needed.
	SeverityInfo Severity = "info"
	// SeverityWarning is an outcome worth a look; it may need action.
	SeverityWarning Severity = "warning"
	// SeverityCritical is a failure that needs operator action.
	SeverityCritical Severity = "critical"
)

// SubCode is one catalog entry: the explanation of a Recall sub_code for an
// event type.
type SubCode struct {
	// Event is the event type the sub-code is documented for, e.g. "bot.fatal".
	Event string
	// Code is the sub_code value, e.g. "meeting_not_found".
	Code string
	// Reason is a one-line human explanation.
	Reason string
	// Severity grades the outcome.
	Severity Severity
}

// subCodes is the catalog. Reasons for transcript.failed follow the Recall
// documentation; the rest are one-line paraphrases.
var subCodes = []SubCode{
	// transcript.failed
	{"transcript.failed", "provider_connection_failed", "Recall could not connect to the third-party transcription provider (e.g. insufficient funds, paid features on a free account, or the provider is temporarily unavailable)", SeverityCritical},
	{"transcript.failed", "zoom_global_captions_disabled", "Meeting captions are disabled by the Zoom account", SeverityCritical},
	{"transcript.failed", "zoom_host_disabled_meeting_captions", "The host of the Zoom meeting has disabled meeting captions", SeverityCritical},
	{"transcript.failed", "zoom_captions_failure", "There was an error in enabling meeting captions for the Zoom call", SeverityCritical},

	// bot.call_ended
	{"bot.call_ended", "call_ended_by_host", "The host ended the meeting for everyone", SeverityInfo},
	{"bot.call_ended", "call_ended_by_platform_idle", "The meeting platform ended the call because it was idle", SeverityInfo},
	{"bot.call_ended", "call_ended_by_platform_max_length", "The meeting platform ended the call because it reached the platform's maximum meeting length", SeverityInfo},
	{"bot.call_ended", "call_ended_by_platform_waiting_room_timeout", "The meeting platform removed the bot after it waited too long in the waiting room", SeverityInfo},
	{"bot.call_ended", "timeout_exceeded_waiting_room", "The bot left because it was not admitted from the waiting room within the configured timeout", SeverityInfo},
	{"bot.call_ended", "timeout_exceeded_noone_joined", "The bot left because no other participant joined within the configured timeout", SeverityInfo},
	{"bot.call_ended", "timeout_exceeded_everyone_left", "The bot left because every other participant had left the call", SeverityInfo},
	{"bot.call_ended", "timeout_exceeded_silence_detected", "The bot left after detecting silence for longer than the configured timeout", SeverityInfo},
	{"bot.call_ended", "timeout_exceeded_max_duration", "The bot left because the call reached the configured maximum duration", SeverityInfo},
	{"bot.call_ended", "bot_kicked_from_call", "A participant removed the bot from the call", SeverityWarning},
	{"bot.call_ended", "bot_kicked_from_waiting_room", "A participant removed the bot from the waiting room", SeverityWarning},
	{"bot.call_ended", "bot_received_leave_call", "The bot left because it received a Leave Call API request", SeverityInfo},

	// bot.fatal
	{"bot.fatal", "bot_errored", "The bot hit an unexpected error; contact Recall support with the bot ID", SeverityCritical},
	{"bot.fatal", "meeting_not_found", "No meeting was found at the given meeting URL; check the link", SeverityWarning},
	{"bot.fatal", "meeting_not_started", "The meeting had not started before the bot gave up waiting to join", SeverityWarning},
	{"bot.fatal", "meeting_requires_registration", "The meeting requires attendees to register, so the bot could not join", SeverityCritical},
	{"bot.fatal", "meeting_password_incorrect", "The meeting password was missing or incorrect", SeverityCritical},
	{"bot.fatal", "meeting_locked", "The meeting was locked by the host, so the bot could not join", SeverityWarning},
	{"bot.fatal", "meeting_full", "The meeting had reached its participant limit, so the bot could not join", SeverityWarning},
	{"bot.fatal", "meeting_ended", "The meeting had already ended when the bot tried to join", SeverityWarning},
}

// subCodeKey indexes the catalog by event type and sub-code.
type subCodeKey struct{ event, code string }

// subCodeIndex and subCodeByCode are built once from subCodes. The code-only
// index keeps the first entry for a code.
var subCodeIndex, subCodeByCode = indexSubCodes(subCodes)

// indexSubCodes builds the exact and code-only lookup indexes.
func indexSubCodes(list []SubCode) (map[subCodeKey]SubCode, map[string]SubCode) {
	exact := make(map[subCodeKey]SubCode, len(list))
	byCode := make(map[string]SubCode, len(list))
	for _, sc := range list {
		exact[subCodeKey{sc.Event, sc.Code}] = sc
		if _, ok := byCode[sc.Code]; !ok {
			byCode[sc.Code] = sc
		}
	}
	return exact, byCode
}

// LookupSubCode returns the catalog entry for (event, subCode). When there is
// no entry for that event type it falls back to an entry with the same
// sub-code under any event type (so legacy "bot.status_change" events still
// resolve). ok is false when subCode is unknown or empty.
func LookupSubCode(event, subCode string) (SubCode, bool) {
	if subCode == "" {
		return SubCode{}, false
	}
	if sc, ok := subCodeIndex[subCodeKey{event, subCode}]; ok {
		return sc, true
	}
	sc, ok := subCodeByCode[subCode]
	return sc, ok
}
