package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	goslack "github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/relay-dev/relay/sinks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	examples    = "../../configs/examples/events"
	hookSecret  = "T0000000/B0000000/XXXXsecretXXXXhookXXXX"
	tokenSecret = "xoxb-1111-2222-s3cr3tt0k3n"
)

// goldenCases are the sample events whose Block Kit JSON is pinned.
var goldenCases = []struct {
	name string
	path string
}{
	{"transcript.failed.zoom_captions_failure", filepath.Join(examples, "transcript.failed.zoom_captions_failure.json")},
	{"bot.call_ended.call_ended_by_host", filepath.Join(examples, "bot.call_ended.call_ended_by_host.json")},
	{"recording.done", filepath.Join(examples, "recording.done.json")},
	{"video_mixed.done", filepath.Join(examples, "video_mixed.done.json")},
	{"recording.failed.bot_null", "testdata/events/recording.failed.bot_null.json"},
	{"non_recall", "testdata/events/non_recall.json"},
	// Event data that would ping, mention or link if it were not escaped.
	{"injection.bot_metadata", "testdata/events/injection.bot_metadata.json"},
	{"injection.event_name", "testdata/events/injection.event_name.json"},
}

// hook is an incoming-webhook stand-in: it records bodies and answers with
// respond (default 200 "ok").
type hook struct {
	*httptest.Server
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	respond http.HandlerFunc
}

func newHook(t *testing.T, respond http.HandlerFunc) *hook {
	t.Helper()
	h := &hook{respond: respond}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		h.headers = append(h.headers, r.Header.Clone())
		h.mu.Unlock()
		if r.URL.Path != "/services/"+hookSecret {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		if h.respond != nil {
			h.respond(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) hookURL() string { return h.URL + "/services/" + hookSecret }

func (h *hook) got() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

// api is a slacktest server whose chat.postMessage records the form and
// answers with respond (default ok).
type api struct {
	*slacktest.Server
	mu      sync.Mutex
	forms   []map[string]string
	auth    []string
	respond func(w http.ResponseWriter)
}

func newAPI(t *testing.T, respond func(w http.ResponseWriter)) *api {
	t.Helper()
	a := &api{respond: respond}
	a.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				t.Errorf("parse form: %v", err)
			}
			form := map[string]string{}
			for k := range r.PostForm {
				form[k] = r.PostForm.Get(k)
			}
			a.mu.Lock()
			a.forms = append(a.forms, form)
			a.auth = append(a.auth, r.Header.Get("Authorization"))
			a.mu.Unlock()
			if a.respond != nil {
				a.respond(w)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true,"channel":"C123","ts":"1742406246.000100"}`)
		})
	})
	a.Start()
	t.Cleanup(a.Stop)
	return a
}

func (a *api) got() []map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]string(nil), a.forms...)
}

func newSink(t *testing.T, options map[string]any) *Sink {
	t.Helper()
	return newSinkEnv(t, options, sinks.Env{})
}

func newSinkEnv(t *testing.T, options map[string]any, env sinks.Env) *Sink {
	t.Helper()
	if _, ok := options["rate"]; !ok {
		options["rate"] = "" // tests other than pacing run unpaced
	}
	s, err := New("test", options, env)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*Sink)
}

func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{hookSecret, "XXXXsecretXXXXhookXXXX", "/services/T0", tokenSecret, "s3cr3tt0k3n"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows secret %q", err, s)
		}
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name    string
		options map[string]any
		want    string
	}{
		{name: "neither", options: map[string]any{}, want: "webhook_url: exactly one of webhook_url or token is required"},
		{name: "both", options: map[string]any{"webhook_url": "https://hooks.slack.com/services/" + hookSecret, "token": tokenSecret, "channel": "C1"}, want: "webhook_url: exactly one of webhook_url or token is required"},
		{name: "token without channel", options: map[string]any{"token": tokenSecret}, want: "channel: required with token"},
		{name: "webhook with channel", options: map[string]any{"webhook_url": "https://hooks.slack.com/services/" + hookSecret, "channel": "C1"}, want: "channel: only with token (an incoming webhook posts to its own channel)"},
		{name: "webhook with api_url", options: map[string]any{"webhook_url": "https://hooks.slack.com/services/" + hookSecret, "api_url": "https://slack.com/api/"}, want: "api_url: only with token"},
		{name: "webhook not a url", options: map[string]any{"webhook_url": "hooks.slack.com/services/" + hookSecret}, want: "webhook_url: want an https URL such as https://hooks.slack.com/services/..."},
		{name: "webhook unparseable", options: map[string]any{"webhook_url": "https://hooks slack.com/%zz" + hookSecret}, want: "webhook_url: invalid URL"},
		{name: "bad api_url", options: map[string]any{"token": tokenSecret, "channel": "C1", "api_url": "slack.com/api"}, want: "api_url: want an http or https URL such as https://slack.com/api/"},
		{name: "bad template", options: map[string]any{"token": tokenSecret, "channel": "C1", "template": "{{ .event"}, want: "template: invalid template: "},
		{name: "bad rate", options: map[string]any{"token": tokenSecret, "channel": "C1", "rate": "fast"}, want: "rate: invalid rate (want N/unit such as 1/s, 30/m)"},
		{name: "zero timeout", options: map[string]any{"token": tokenSecret, "channel": "C1", "timeout": "0s"}, want: "timeout: must be positive"},
		{name: "unknown key", options: map[string]any{"token": tokenSecret, "channel": "C1", "icon": ":x:"}, want: "icon: unknown key"},
		{name: "decode and validation together", options: map[string]any{"token": tokenSecret, "icon": ":x:", "timeout": "soon"}, want: "icon: unknown key\ntimeout: invalid duration (want Go syntax such as 250ms, 10s, 5m)\nchannel: required with token"},
		{name: "several", options: map[string]any{"token": tokenSecret, "rate": "0/s", "timeout": "-1s"}, want: "channel: required with token\nrate: invalid rate (want N/unit such as 1/s, 30/m)\ntimeout: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("test", tt.options, sinks.Env{})
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != strings.Count(tt.want, "\n") {
				t.Errorf("New = %q, want %q", err, tt.want)
			}
			assertNoSecrets(t, err)
		})
	}
	if Type.New == nil || Type.Concurrency != 1 {
		t.Errorf("Type = %+v, want concurrency 1", Type)
	}
}

func TestNewDefaults(t *testing.T) {
	s, err := New("test", map[string]any{"token": tokenSecret, "channel": "#alerts", "api_url": "http://127.0.0.1:1/api"}, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	sk := s.(*Sink)
	if l := sk.pacer.limiter; l == nil || l.Limit() != 1 || l.Burst() != 1 {
		t.Errorf("limiter = %+v, want 1/s burst 1", l)
	}
	if sk.client.Timeout != 10*time.Second {
		t.Errorf("timeout = %v, want 10s", sk.client.Timeout)
	}
	if sk.endpoint != "http://127.0.0.1:1/api/chat.postMessage" {
		t.Errorf("endpoint = %q, want the trailing slash added", sk.endpoint)
	}
}

// TestGolden pins the Block Kit JSON of the default message. Run with
// -update to rewrite testdata/golden after a deliberate change.
func TestGolden(t *testing.T) {
	s := newSink(t, map[string]any{"webhook_url": "https://hooks.slack.com/services/" + hookSecret})
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Preview(loadDelivery(t, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			checkGoldenBody(t, tc.name, p.Body)
		})
	}
}

// checkGoldenBody compares a message body with testdata/golden/<name>.json
// (rewritten with -update) and checks it against Slack's limits.
func checkGoldenBody(t *testing.T, name, body string) {
	t.Helper()
	var got bytes.Buffer
	if err := json.Indent(&got, []byte(body), "", "  "); err != nil {
		t.Fatalf("preview body is not JSON: %v", err)
	}
	got.WriteByte('\n')
	golden := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("message differs from %s (run go test -update to accept):\n%s", golden, got.Bytes())
	}
	checkLimits(t, []byte(body))
}

// checkLimits checks a message against Slack's documented Block Kit limits.
func checkLimits(t *testing.T, body []byte) {
	t.Helper()
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string `json:"type"`
			Text     *struct{ Type, Text string }
			Fields   []struct{ Type, Text string }
			Elements []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	n := func(s string) int { return len([]rune(s)) }
	if msg.Text == "" || len(msg.Blocks) > maxBlocks {
		t.Errorf("text %q, %d blocks", msg.Text, len(msg.Blocks))
	}
	for _, b := range msg.Blocks {
		switch b.Type {
		case "header":
			if b.Text.Type != "plain_text" || n(b.Text.Text) > maxHeader {
				t.Errorf("header %+v", b.Text)
			}
		case "section":
			if b.Text != nil && n(b.Text.Text) > maxSectionText || len(b.Fields) > maxFields {
				t.Errorf("section over limits")
			}
			for _, f := range b.Fields {
				if n(f.Text) > maxFieldText {
					t.Errorf("field over limits: %q", f.Text)
				}
			}
		case "context":
			if len(b.Elements) > maxContextElems {
				t.Errorf("context with %d elements", len(b.Elements))
			}
		default:
			t.Errorf("unexpected block type %q", b.Type)
		}
	}
}

func TestMessageLimits(t *testing.T) {
	long := strings.Repeat("é", 5000)
	md := map[string]any{}
	for i := range 200 {
		md[fmt.Sprintf("key_%03d", i)] = long
	}
	d := deliveryFor([]byte(`{}`))
	d.Event = strings.Repeat("transcript.failed.", 20)
	d.Rules = make([]string, 300)
	for i := range d.Rules {
		d.Rules[i] = "rule-with-a-long-name"
	}
	d.Data["sub_code"] = long
	d.Data["sub_code_reason"] = long
	d.Data["bot"] = map[string]any{"id": long, "metadata": md}
	d.Data["recording"] = map[string]any{"id": "r1", "metadata": md}
	d.Data["media"] = map[string]any{"id": "m1", "metadata": md}
	d.Data["object"] = "transcript"
	body, err := json.Marshal(buildMessage(d))
	if err != nil {
		t.Fatal(err)
	}
	checkLimits(t, body)
}

// hostile are event values that would ping, mention or link in mrkdwn.
var hostile = []string{"<!channel>", "<@U1>", "<https://evil.example|Click>", "&amp;"}

// dateToken is the one <...> token the default message makes itself.
var dateToken = regexp.MustCompile(`<!date\^[0-9]+\^\{date_short_pretty\} \{time_secs\}\|[0-9: -]+UTC>`)

// checkEscaped fails when a mrkdwn text of msg (every text but the
// plain_text header) holds a < or > that the message did not make itself.
func checkEscaped(t *testing.T, msg payload) {
	t.Helper()
	body, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type     string
			Text     *struct{ Type, Text string }
			Fields   []struct{ Type, Text string }
			Elements []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	texts := []string{m.Text}
	for _, b := range m.Blocks {
		if b.Text != nil && b.Text.Type == "mrkdwn" {
			texts = append(texts, b.Text.Text)
		}
		for _, f := range append(b.Fields, b.Elements...) {
			texts = append(texts, f.Text)
		}
	}
	for _, text := range texts {
		if rest := dateToken.ReplaceAllString(text, ""); strings.ContainsAny(rest, "<>") {
			t.Errorf("mrkdwn text %q holds an unescaped < or >", text)
		}
	}
}

func TestMessageEscapesEventData(t *testing.T) {
	for _, v := range hostile {
		t.Run(v, func(t *testing.T) {
			d := deliveryFor([]byte(`{}`))
			d.Event = "bot." + v
			d.MsgID, d.Source, d.Rules = v, v, []string{v, "ok"}
			d.Data["object"] = "video_" + v
			d.Data["sub_code"] = v
			d.Data["sub_code_reason"] = v
			d.Data["bot"] = map[string]any{"id": v, "metadata": map[string]any{v: v, "n": map[string]any{"k": v}}}
			d.Data["recording"] = map[string]any{"id": v, "metadata": map[string]any{"k": v}}
			d.Data["media"] = map[string]any{"id": v, "metadata": map[string]any{"k": v}}
			checkEscaped(t, buildMessage(d))

			d.Data["sub_code"] = ""
			d.Data["code"] = v
			checkEscaped(t, buildMessage(d))

			// Not a Recall event: the body is quoted, the msg id is in the
			// fallback text.
			nr := deliveryFor([]byte(`{"text": "` + strings.ReplaceAll(v, `"`, `\"`) + `"}`))
			nr.Event, nr.MsgID, nr.Source = "", v, v
			msg := buildMessage(nr)
			checkEscaped(t, msg)
			if v == "&amp;" && !strings.Contains(msg.Text, "&amp;amp;") {
				t.Errorf("text %q: want &amp; shown as typed (&amp;amp;)", msg.Text)
			}
		})
	}
}

// TestTemplateEscapesEventData checks the template option: values are
// escaped, the template's own text and raw values are not.
func TestTemplateEscapesEventData(t *testing.T) {
	d := loadDelivery(t, "testdata/events/injection.bot_metadata.json")
	tests := []struct {
		name, tmpl, want string
	}{
		{name: "channel", tmpl: `{{ .bot.metadata.bot_name }}`, want: "&lt;!channel&gt;"},
		{name: "mention", tmpl: `{{ .bot.metadata.owner }}`, want: "&lt;@U1&gt;"},
		{name: "link", tmpl: `{{ .bot.metadata.link }}`, want: "&lt;https://evil.example/login|Click to re-authenticate&gt;"},
		{name: "entity", tmpl: `{{ .bot.metadata.entity }}`, want: "Tom &amp;amp; Jerry"},
		{name: "id and sub-code", tmpl: `{{ .sub_code }} on {{ .bot.id }}`, want: "&lt;!channel&gt; on &lt;@U1&gt;"},
		{name: "json", tmpl: `{{ json .bot.metadata.nested }}`, want: `{"note":"\u003c!everyone\u003e"}`},
		{name: "own text kept", tmpl: `<!here> <https://runbook.example|runbook>: {{ .bot.metadata.bot_name }}`, want: "<!here> <https://runbook.example|runbook>: &lt;!channel&gt;"},
		{name: "raw", tmpl: `{{ raw .bot.metadata.owner }}`, want: "<@U1>"},
		{name: "range over metadata", tmpl: `{{ range $k, $v := .bot.metadata }}{{ $k }}={{ $v }};{{ end }}`, want: "&lt;!here&gt;=key &amp; value;bot_name=&lt;!channel&gt;;entity=Tom &amp;amp; Jerry;link=&lt;https://evil.example/login|Click to re-authenticate&gt;;nested=map[note:&lt;!everyone&gt;];owner=&lt;@U1&gt;;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t, nil)
			s := newSink(t, map[string]any{"webhook_url": h.hookURL(), "template": tt.tmpl})
			if err := s.Send(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			var got payload
			if err := json.Unmarshal(h.got()[0], &got); err != nil {
				t.Fatal(err)
			}
			if got.Text != tt.want {
				t.Errorf("text = %q, want %q", got.Text, tt.want)
			}
		})
	}
}

func TestWebhookSend(t *testing.T) {
	h := newHook(t, nil)
	s := newSinkEnv(t, map[string]any{"webhook_url": h.hookURL()}, sinks.Env{UserAgent: "relay/9.9.9"})
	for i, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			d := loadDelivery(t, tc.path)
			if err := s.Send(context.Background(), d); err != nil {
				t.Fatalf("Send: %v", err)
			}
			p, _ := s.Preview(d)
			if got := h.got()[i]; string(got) != p.Body {
				t.Errorf("sent %s\nwant the previewed body %s", got, p.Body)
			}
			hdr := h.headers[i]
			if hdr.Get("Content-Type") != "application/json" || hdr.Get("User-Agent") != "relay/9.9.9" {
				t.Errorf("headers = %v", hdr)
			}
		})
	}
}

func TestWebAPISend(t *testing.T) {
	a := newAPI(t, nil)
	s := newSink(t, map[string]any{"token": tokenSecret, "channel": "C0ALERTS", "api_url": strings.TrimSuffix(a.GetAPIURL(), "/")})
	for i, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			d := loadDelivery(t, tc.path)
			if err := s.Send(context.Background(), d); err != nil {
				t.Fatalf("Send: %v", err)
			}
			form := a.got()[i]
			want := buildMessage(d)
			wantBlocks, _ := json.Marshal(want.Blocks)
			if form["channel"] != "C0ALERTS" || form["text"] != want.Text {
				t.Errorf("form = %v", form)
			}
			if !jsonEqual(t, form["blocks"], string(wantBlocks)) {
				t.Errorf("blocks = %s\nwant %s", form["blocks"], wantBlocks)
			}
			// slack-go sends chat.postMessage form encoded, token included.
			if form["token"] != tokenSecret && a.auth[i] != "Bearer "+tokenSecret {
				t.Errorf("token not sent: form %v, Authorization %q", form, a.auth[i])
			}
			p, _ := s.Preview(d)
			var pv payload
			var raw map[string]json.RawMessage
			_ = json.Unmarshal([]byte(p.Body), &raw)
			_ = json.Unmarshal(raw["channel"], &pv.Channel)
			if pv.Channel != "C0ALERTS" || !jsonEqual(t, string(raw["blocks"]), string(wantBlocks)) {
				t.Errorf("preview body %s does not match the request", p.Body)
			}
			if p.Headers["Authorization"] != "Bearer [redacted]" || p.Request != "POST "+a.GetAPIURL()+"chat.postMessage" {
				t.Errorf("preview = %+v", p)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Errorf("invalid JSON %q: %v", a, err)
		return false
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Errorf("invalid JSON %q: %v", b, err)
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func TestTemplate(t *testing.T) {
	const tmpl = `{{ .event }} on bot {{ .bot.id }}: {{ .sub_code_reason }}`
	d := loadDelivery(t, goldenCases[0].path)
	want := "transcript.failed on bot d9e964ff-64ae-4db9-a1b2-4e001bc327d3: There was an error in enabling meeting captions for the Zoom call"

	h := newHook(t, nil)
	s := newSink(t, map[string]any{"webhook_url": h.hookURL(), "template": tmpl})
	if err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got, wantBody := string(h.got()[0]), `{"text":`+mustJSON(want)+`}`; got != wantBody {
		t.Errorf("webhook body = %s, want %s (text only, no blocks)", got, wantBody)
	}

	a := newAPI(t, nil)
	s = newSink(t, map[string]any{"token": tokenSecret, "channel": "C1", "api_url": a.GetAPIURL(), "template": tmpl})
	if err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	form := a.got()[0]
	if form["text"] != want {
		t.Errorf("text = %q, want %q", form["text"], want)
	}
	if _, ok := form["blocks"]; ok {
		t.Errorf("blocks sent with a template: %q", form["blocks"])
	}

	empty := newSink(t, map[string]any{"webhook_url": h.hookURL(), "template": `{{ if false }}x{{ end }}  `})
	if err := empty.Send(context.Background(), d); !sinks.IsPermanent(err) {
		t.Errorf("Send with empty render = %v, want permanent", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRateLimited(t *testing.T) {
	d := loadDelivery(t, goldenCases[0].path)
	t.Run("webhook 429", func(t *testing.T) {
		h := newHook(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, "rate_limited")
		})
		err := newSink(t, map[string]any{"webhook_url": h.hookURL()}).Send(context.Background(), d)
		if wait, ok := sinks.RetryAfterOf(err); !ok || wait != 7*time.Second || sinks.IsPermanent(err) {
			t.Errorf("Send = %v: RetryAfterOf = %v, %v; want 7s", err, wait, ok)
		}
		assertNoSecrets(t, err)
	})
	t.Run("web api 429", func(t *testing.T) {
		a := newAPI(t, func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "12")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
		})
		err := newSink(t, map[string]any{"token": tokenSecret, "channel": "C1", "api_url": a.GetAPIURL()}).Send(context.Background(), d)
		if wait, ok := sinks.RetryAfterOf(err); !ok || wait != 12*time.Second || sinks.IsPermanent(err) {
			t.Errorf("Send = %v: RetryAfterOf = %v, %v; want 12s", err, wait, ok)
		}
		var rl *goslack.RateLimitedError
		if !strings.Contains(err.Error(), "chat.postMessage") || !errors.As(err, &rl) {
			t.Errorf("Send = %v, want a *slack.RateLimitedError", err)
		}
	})
	t.Run("web api ratelimited body", func(t *testing.T) {
		a := newAPI(t, func(w http.ResponseWriter) {
			_, _ = io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
		})
		err := newSink(t, map[string]any{"token": tokenSecret, "channel": "C1", "api_url": a.GetAPIURL()}).Send(context.Background(), d)
		if wait, ok := sinks.RetryAfterOf(err); !ok || wait != rateLimitedWait {
			t.Errorf("Send = %v: RetryAfterOf = %v, %v; want %v", err, wait, ok, rateLimitedWait)
		}
	})
}

func TestWebAPIErrors(t *testing.T) {
	type class int
	const (
		retryable class = iota
		permanent
	)
	tests := []struct {
		name   string
		status int
		body   string
		want   class
		text   string
	}{
		{name: "channel_not_found", status: 200, body: `{"ok":false,"error":"channel_not_found"}`, want: permanent, text: "channel_not_found"},
		{name: "channel_is_archived", status: 200, body: `{"ok":false,"error":"channel_is_archived"}`, want: permanent, text: "channel_is_archived"},
		{name: "not_in_channel", status: 200, body: `{"ok":false,"error":"not_in_channel"}`, want: permanent, text: "not_in_channel"},
		{name: "invalid_auth", status: 200, body: `{"ok":false,"error":"invalid_auth"}`, want: permanent, text: "invalid_auth"},
		{name: "token_revoked", status: 200, body: `{"ok":false,"error":"token_revoked"}`, want: permanent, text: "token_revoked"},
		{name: "invalid_payload", status: 200, body: `{"ok":false,"error":"invalid_payload"}`, want: permanent, text: "invalid_payload"},
		{name: "action_prohibited", status: 200, body: `{"ok":false,"error":"action_prohibited"}`, want: permanent, text: "action_prohibited"},
		{name: "invalid_blocks", status: 200, body: `{"ok":false,"error":"invalid_blocks"}`, want: permanent, text: "invalid_blocks"},
		{name: "internal_error", status: 200, body: `{"ok":false,"error":"internal_error"}`, want: retryable, text: "internal_error"},
		{name: "unknown error code", status: 200, body: `{"ok":false,"error":"something_new"}`, want: retryable, text: "something_new"},
		{name: "500", status: 500, body: `<html>oops</html>`, want: retryable, text: "500"},
		{name: "503", status: 503, body: ``, want: retryable, text: "503"},
		{name: "429 without retry-after", status: 429, body: ``, want: retryable, text: "429"},
		{name: "400", status: 400, body: ``, want: permanent, text: "400"},
		{name: "404", status: 404, body: ``, want: permanent, text: "404"},
		{name: "redirect not followed", status: 302, body: ``, want: permanent, text: "302"},
		{name: "not json", status: 200, body: `<html>proxy</html>`, want: retryable, text: "chat.postMessage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPI(t, func(w http.ResponseWriter) {
				if tt.status == 302 {
					w.Header().Set("Location", "/auth.test")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			s := newSink(t, map[string]any{"token": tokenSecret, "channel": "C1", "api_url": a.GetAPIURL()})
			err := s.Send(context.Background(), loadDelivery(t, goldenCases[0].path))
			checkClass(t, err, tt.want == permanent, tt.text)
		})
	}
}

func TestWebhookErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		permanent bool
	}{
		{name: "invalid_payload", status: 400, body: "invalid_payload", permanent: true},
		{name: "no_text", status: 400, body: "no_text", permanent: true},
		{name: "invalid_token", status: 403, body: "invalid_token", permanent: true},
		{name: "action_prohibited", status: 403, body: "action_prohibited", permanent: true},
		{name: "channel_not_found", status: 404, body: "channel_not_found", permanent: true},
		{name: "channel_is_archived", status: 410, body: "channel_is_archived", permanent: true},
		{name: "rollup_error", status: 500, body: "rollup_error", permanent: false},
		{name: "bad gateway", status: 502, body: "<html>bad gateway</html>", permanent: false},
		{name: "unavailable", status: 503, body: "", permanent: false},
		{name: "redirect not followed", status: 301, body: "", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.status == 301 {
					w.Header().Set("Location", "/services/"+hookSecret)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			err := newSink(t, map[string]any{"webhook_url": h.hookURL()}).Send(context.Background(), loadDelivery(t, goldenCases[0].path))
			checkClass(t, err, tt.permanent, fmt.Sprint(tt.status))
			if tt.body != "" && !strings.Contains(err.Error(), tt.body) {
				t.Errorf("Send = %q, want Slack's reason %q in it", err, tt.body)
			}
			if len(h.got()) != 1 {
				t.Errorf("%d requests, want 1 (no retries, no redirects)", len(h.got()))
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		err = newSink(t, map[string]any{"webhook_url": "http://" + addr + "/services/" + hookSecret}).Send(context.Background(), loadDelivery(t, goldenCases[0].path))
		checkClass(t, err, false, "http://"+addr+"/[redacted]")
	})
	t.Run("url echoed in the body", func(t *testing.T) {
		h := newHook(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, "invalid_token for "+r.URL.Path+" ("+strings.TrimPrefix(r.URL.Path, "/")+", "+strings.TrimPrefix(r.URL.Path, "/services/")+")")
		})
		err := newSink(t, map[string]any{"webhook_url": h.hookURL()}).Send(context.Background(), loadDelivery(t, goldenCases[0].path))
		checkClass(t, err, true, "slack webhook: status 403 Forbidden: invalid_token for [redacted] ([redacted], ")
	})
	t.Run("timeout", func(t *testing.T) {
		h := newHook(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		err := newSink(t, map[string]any{"webhook_url": h.hookURL(), "timeout": "50ms"}).Send(context.Background(), loadDelivery(t, goldenCases[0].path))
		checkClass(t, err, false, "/[redacted]")
	})
}

func TestWebAPINetworkError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSink(t, map[string]any{"token": tokenSecret, "channel": "C1", "api_url": "http://" + addr + "/api/"})
	err = s.Send(context.Background(), loadDelivery(t, goldenCases[0].path))
	checkClass(t, err, false, "post http://"+addr+"/api/chat.postMessage")
}

// checkClass checks err's class, that its text holds want, and that it
// shows no secret.
func checkClass(t *testing.T, err error, permanent bool, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("Send succeeded, want an error")
	case permanent && !sinks.IsPermanent(err):
		t.Errorf("Send = %v, want permanent", err)
	case !permanent && sinks.IsPermanent(err):
		t.Errorf("Send = %v, want retryable", err)
	}
	if _, ok := sinks.RetryAfterOf(err); ok {
		t.Errorf("Send = %v, want no Retry-After", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Send = %q, want it to contain %q", err, want)
	}
	assertNoSecrets(t, err)
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPacing(t *testing.T) {
	h := newHook(t, nil)
	d := loadDelivery(t, goldenCases[0].path)
	tests := []struct {
		name string
		rate any // nil: the default
		want time.Duration
	}{
		{name: "default 1/s", rate: nil, want: 2 * time.Second},
		{name: "30/m", rate: "30/m", want: 4 * time.Second},
		{name: "10/500ms", rate: "10/500ms", want: 100 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// A URL of its own: sinks on one URL share their pacing.
				opts := map[string]any{"webhook_url": h.hookURL() + fmt.Sprintf("?case=%d", i)}
				if tt.rate != nil {
					opts["rate"] = tt.rate
				}
				sk, err := New("test", opts, sinks.Env{})
				if err != nil {
					t.Fatal(err)
				}
				defer sk.Close(context.Background())
				// No network inside the bubble: synctest cannot see past a
				// goroutine blocked on a socket. Slack answers in memory.
				sk.(*Sink).client.Transport = roundTripFunc(func(*http.Request) (*http.Response, error) {
					return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{},
						Body: io.NopCloser(strings.NewReader("ok"))}, nil
				})
				start := time.Now()
				var sent []time.Duration
				for range 3 {
					if err := sk.Send(context.Background(), d); err != nil {
						t.Fatal(err)
					}
					sent = append(sent, time.Since(start))
				}
				if sent[0] != 0 {
					t.Errorf("first message waited %v", sent[0])
				}
				gap := tt.want / 2
				for i := 1; i < len(sent); i++ {
					if d := sent[i] - sent[i-1]; d < gap {
						t.Errorf("messages %d and %d %v apart, want ≥ %v", i-1, i, d, gap)
					}
				}
				if sent[2] < tt.want {
					t.Errorf("3 messages took %v, want ≥ %v", sent[2], tt.want)
				}

				// A caller that cannot wait its turn gets a prompt, retryable error.
				ctx, cancel := context.WithTimeout(context.Background(), gap/2)
				defer cancel()
				before := time.Now()
				err = sk.Send(ctx, d)
				if err == nil || sinks.IsPermanent(err) {
					t.Errorf("Send with a short deadline = %v, want retryable", err)
				}
				if waited := time.Since(before); waited > gap/2 {
					t.Errorf("Send waited %v past its deadline", waited)
				}
			})
		})
	}
}
