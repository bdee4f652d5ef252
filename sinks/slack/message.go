package slack

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	goslack "github.com/slack-go/slack"

	"github.com/relay-dev/relay/sinks"
)

// Slack's Block Kit limits, in characters.
const (
	maxHeader        = 150
	maxSectionText   = 3000
	maxFields        = 10
	maxFieldText     = 2000
	maxContextText   = 2000
	maxContextElems  = 10
	maxBlocks        = 50
	maxText          = 40000
	maxMetadataValue = 300
	maxPayloadQuote  = 2500
)

// buildMessage is the default Block Kit alert for d, laid out for a phone:
// everything that matters is above Slack's "show more" fold.
//
//   - a header saying what failed and for whom, the event with its
//     sub-code (else code) and the bot (else recording, else media) id
//     ("Webhook event" when the body has none);
//   - a section whose fields are the sub-code and its reason (else the
//     code), the bot, recording and media ids that are set, and updated_at;
//   - a section per object (bot, recording, media) with non-empty metadata;
//   - for a body with none of the above (not a Recall event), a section
//     quoting the start of the body;
//   - a context line with the svix message id, the source and the rules.
//
// Text is the notification fallback, e.g.
// "transcript.failed: zoom_captions_failure — bot d9e964ff-…".
// Every part is cut to Slack's limits. Every value from the event or the
// delivery that lands in mrkdwn (the fields, the metadata, the quoted body,
// the context line and the fallback text) is escaped, so that a bot name
// of <!channel> pings no one; the header is plain_text, which Slack does
// not parse for mentions or links.
func buildMessage(d sinks.Delivery) payload {
	event := d.Event
	if event == "" {
		event = str(d.Data, "event")
	}
	object := str(d.Data, "object")
	code, subCode, reason := str(d.Data, "code"), str(d.Data, "sub_code"), str(d.Data, "sub_code_reason")
	bot, recording, media := ref(d.Data, "bot"), ref(d.Data, "recording"), ref(d.Data, "media")
	updated := timeOf(d.Data["updated_at"])

	title := event
	if title == "" {
		title = "Webhook event"
		if d.Source != "" {
			title += " from " + d.Source
		}
	}
	// The first line, on a phone too, says what failed and for whom.
	what, whom := title, ""
	switch {
	case subCode != "":
		what += ": " + subCode
	case code != "":
		what += ": " + code
	}
	switch {
	case bot.id != "":
		whom = "bot " + bot.id
	case recording.id != "":
		whom = "recording " + recording.id
	case media.id != "":
		whom = strings.ToLower(mediaLabel(object)) + " " + media.id
	}
	header := what
	if whom != "" {
		header += " — " + whom
	}
	blocks := []goslack.Block{
		goslack.NewHeaderBlock(goslack.NewTextBlockObject(goslack.PlainTextType, truncate(oneLine(header), maxHeader), true, false)),
	}

	var fields []*goslack.TextBlockObject
	field := func(label, value string) { // value is mrkdwn already
		if len(fields) < maxFields {
			fields = append(fields, mrkdwn(truncate("*"+escape(label)+"*\n"+value, maxFieldText)))
		}
	}
	switch {
	case subCode != "":
		v := mono(subCode)
		if reason != "" {
			v += "\n" + escape(reason)
		}
		field("Sub-code", v)
	case code != "":
		field("Code", mono(code))
	}
	if bot.id != "" {
		field("Bot", mono(bot.id))
	}
	if recording.id != "" {
		field("Recording", mono(recording.id))
	}
	if media.id != "" {
		field(mediaLabel(object), mono(media.id))
	}
	if !updated.IsZero() {
		u := updated.UTC()
		field("Updated", fmt.Sprintf("<!date^%d^{date_short_pretty} {time_secs}|%s>", u.Unix(), u.Format("2006-01-02 15:04:05 UTC")))
	}
	if len(fields) > 0 {
		blocks = append(blocks, goslack.NewSectionBlock(nil, fields, nil))
	}

	for _, o := range []struct {
		label string
		r     objectRef
	}{{"Bot", bot}, {"Recording", recording}, {mediaLabel(object), media}} {
		if text := metadataText(o.label+" metadata", o.r.metadata); text != "" {
			blocks = append(blocks, goslack.NewSectionBlock(mrkdwn(text), nil, nil))
		}
	}

	if len(fields) == 0 {
		blocks = append(blocks, goslack.NewSectionBlock(mrkdwn(quoteBody(d.Body)), nil, nil))
	}

	var ctxElems []goslack.MixedElement
	if d.MsgID != "" {
		ctxElems = append(ctxElems, mrkdwn(truncate("msg "+mono(d.MsgID), maxContextText)))
	}
	if d.Source != "" {
		ctxElems = append(ctxElems, mrkdwn(truncate("source "+mono(d.Source), maxContextText)))
	}
	if len(d.Rules) > 0 {
		rules := make([]string, len(d.Rules))
		for i, r := range d.Rules {
			rules[i] = mono(r)
		}
		label := "rule "
		if len(rules) > 1 {
			label = "rules "
		}
		ctxElems = append(ctxElems, mrkdwn(truncate(label+strings.Join(rules, ", "), maxContextText)))
	}
	if len(ctxElems) > 0 {
		if len(ctxElems) > maxContextElems {
			ctxElems = ctxElems[:maxContextElems]
		}
		blocks = append(blocks, goslack.NewContextBlock("", ctxElems...))
	}
	if len(blocks) > maxBlocks {
		blocks = blocks[:maxBlocks]
	}

	// The fallback text shows in notifications and where blocks cannot.
	text := escape(what)
	switch {
	case whom != "":
		text += " — " + escape(whom)
	case len(fields) == 0 && d.MsgID != "":
		text += " (" + escape(d.MsgID) + ")"
	}
	return payload{Text: truncate(text, maxText), Blocks: blocks}
}

// objectRef is a {id, metadata} object of the rule environment.
type objectRef struct {
	id       string
	metadata map[string]any
}

func ref(data map[string]any, key string) objectRef {
	m, _ := data[key].(map[string]any)
	var r objectRef
	r.id, _ = m["id"].(string)
	r.metadata, _ = m["metadata"].(map[string]any)
	return r
}

func str(data map[string]any, key string) string {
	s, _ := data[key].(string)
	return s
}

func timeOf(v any) time.Time {
	switch t := v.(type) {
	case time.Time:
		return t
	case string:
		p, _ := time.Parse(time.RFC3339Nano, t)
		return p
	}
	return time.Time{}
}

// mediaLabel names a media object: "video_mixed" gives "Video mixed".
func mediaLabel(object string) string {
	if object == "" || object == "bot" || object == "recording" {
		return "Media"
	}
	r := []rune(strings.ReplaceAll(object, "_", " "))
	r[0] = unicode.ToUpper(r[0])
	return oneLine(string(r))
}

// metadataText lists metadata, keys sorted, under a bold title; "" when
// there is none. Title, keys and values are escaped.
func metadataText(title string, metadata map[string]any) string {
	if len(metadata) == 0 {
		return ""
	}
	keys := make([]string, 0, len(metadata))
	for k := range metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("*" + escape(title) + "*")
	for _, k := range keys {
		v, ok := metadata[k].(string)
		if !ok {
			j, _ := json.Marshal(metadata[k])
			v = string(j)
		}
		b.WriteString("\n• " + mono(k) + ": " + escape(truncate(oneLine(v), maxMetadataValue)))
	}
	return truncate(b.String(), maxSectionText)
}

// quoteBody shows the start of a body that is not a Recall event.
func quoteBody(body []byte) string {
	text := strings.TrimSpace(string(body))
	if text == "" {
		return "_empty body_"
	}
	return "```" + escape(strings.ReplaceAll(truncate(text, maxPayloadQuote), "```", "'''")) + "```"
}

func mrkdwn(text string) *goslack.TextBlockObject {
	return goslack.NewTextBlockObject(goslack.MarkdownType, text, false, false)
}

// mono formats s as inline code.
func mono(s string) string {
	s = strings.ReplaceAll(oneLine(s), "`", "'")
	if s == "" {
		return ""
	}
	return "`" + escape(s) + "`"
}

// escape makes s literal in mrkdwn: Slack treats &, < and > as control
// characters.
func escape(s string) string {
	return mrkdwnEscaper.Replace(s)
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// oneLine replaces line breaks and other control characters with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// truncate cuts s to at most n characters (runes), ending with "…" when it
// cut. Slack counts characters, not bytes.
func truncate(s string, n int) string {
	if len(s) <= n { // bytes ≥ runes
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
