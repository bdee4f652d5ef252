// Package rules builds the typed rule environment for a Recall.ai webhook
// event, compiles operator rules (expr-lang/expr boolean expressions) and
// evaluates them to decide which sinks an event is routed to.
//
// A rule's "when" expression sees these names (documented for users in
// docs/reference.md; they must not change):
//
//	event        string          the body's "event" field
//	object       string          event before its last dot
//	status       string          event after its last dot
//	code         string          data.data.code ("" when absent)
//	sub_code     string          data.data.sub_code ("" when null or absent)
//	updated_at   time.Time       data.data.updated_at (zero when absent/unparseable)
//	recording    map[string]any  data.recording as {id, metadata}
//	bot          map[string]any  data.bot as {id, metadata}
//	media        map[string]any  data.<object> as {id, metadata} for media objects
//	source       string          the configured source's name
//	msg_id       string          the svix-id header
//	received_at  time.Time       when the relay accepted the event
//	payload      map[string]any  the whole decoded body
//	stale        bool            a later updated_at of the same object was seen
//	previous_status string       the object's status before this event
//
// recording, bot and media always hold id ("" when absent) and metadata
// ({} when absent). A rule that fails at run time counts as not matched and
// is reported in Result.Errors.
//
// The package is a leaf: it depends only on expr and the standard library.
package rules
