package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/builtin"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	dryRunDir = "testdata/dryrun"
	eventsDir = "../configs/examples/events"
)

// dryRunSetup loads testdata/dryrun/relay.yaml with the real sink types and
// builds its sinks; the file sink writes (never, in a dry run) under a
// temporary directory, returned as archive.
func dryRunSetup(t *testing.T) (cfg *Config, built map[string]sinks.Sink, archive string) {
	t.Helper()
	reg := builtin.Registry(sinks.Env{})
	archive = filepath.Join(t.TempDir(), "events.jsonl")
	cfg, err := LoadConfig(filepath.Join(dryRunDir, "relay.yaml"), LoadOptions{
		Environ:  []string{"ARCHIVE_PATH=" + archive},
		Registry: reg,
	})
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	built, err = BuildSinks(cfg, reg)
	if err != nil {
		t.Fatalf("BuildSinks: %v", err)
	}
	t.Cleanup(func() { CloseSinks(built) })
	return cfg, built, archive
}

func readEvent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(eventsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDryRun(t *testing.T) {
	cfg, built, archive := dryRunSetup(t)
	tests := []struct {
		name           string
		event          string // file under configs/examples/events
		body           string // used when event is ""
		source         string
		wantEvent      string
		wantRules      []string
		wantDeliveries map[string][]string // sink -> the rules that routed it
		wantOrder      []string            // sinks, in delivery order
		wantRuleErrors []string            // "rule: error"
		wantPreviewErr map[string]string   // sink -> substring of its Error
		wantErr        string
	}{
		{
			name:      "zoom captions failure",
			event:     "transcript.failed.zoom_captions_failure.json",
			wantEvent: "transcript.failed",
			wantRules: []string{"captions", "failures", "archive-everything"},
			wantDeliveries: map[string][]string{
				"pager": {"captions"}, "strict": {"failures"}, "archive": {"archive-everything"},
			},
			wantOrder: []string{"pager", "strict", "archive"},
		},
		{
			name:      "done event",
			event:     "recording.done.json",
			wantEvent: "recording.done",
			wantRules: []string{"done", "archive-everything"},
			wantDeliveries: map[string][]string{
				"api": {"done"}, "archive": {"archive-everything"},
			},
			wantOrder: []string{"api", "archive"},
		},
		{
			name:      "two rules route to one sink",
			body:      `{"event":"transcript.done","data":{"bot":{"id":"b1","metadata":{"customer_id":"cus_vip"}}}}`,
			wantEvent: "transcript.done",
			wantRules: []string{"vip", "done", "archive-everything"},
			wantDeliveries: map[string][]string{
				"pager": {"vip"}, "api": {"vip", "done"}, "archive": {"archive-everything"},
			},
			wantOrder: []string{"pager", "api", "archive"},
		},
		{
			name:           "rule error counts as not matched",
			event:          "bot.fatal.meeting_not_found.json",
			wantEvent:      "bot.fatal",
			wantRules:      []string{"archive-everything"},
			wantDeliveries: map[string][]string{"archive": {"archive-everything"}},
			wantOrder:      []string{"archive"},
			wantRuleErrors: []string{"broken: cannot fetch key from <nil> (1:46)"},
		},
		{
			name:      "preview failure is reported on its delivery",
			event:     "recording.failed.null_sub_code.json",
			wantEvent: "recording.failed",
			wantRules: []string{"failures", "archive-everything"},
			wantDeliveries: map[string][]string{
				"strict": {"failures"}, "archive": {"archive-everything"},
			},
			wantOrder:      []string{"strict", "archive"},
			wantPreviewErr: map[string]string{"strict": "render template"},
		},
		{
			name:           "explicit source",
			event:          "recording.done.json",
			source:         "staging",
			wantEvent:      "recording.done",
			wantRules:      []string{"done", "staging-only"},
			wantDeliveries: map[string][]string{"api": {"done"}, "archive": {"staging-only"}},
			wantOrder:      []string{"api", "archive"},
		},
		{
			name:           "object without event matches the catch-all only",
			body:           `{}`,
			wantRules:      []string{"archive-everything"},
			wantDeliveries: map[string][]string{"archive": {"archive-everything"}},
			wantOrder:      []string{"archive"},
		},
		{name: "not an object", body: `[1, 2]`, wantErr: "not a JSON object"},
		{name: "not json", body: `{"event":`, wantErr: "decode body"},
		{name: "unknown source", event: "recording.done.json", source: "nope", wantErr: `unknown source "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if tt.event != "" {
				body = readEvent(t, tt.event)
			}
			res, err := DryRun(cfg, built, tt.source, body)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DryRun: %v", err)
			}
			if res.Event != tt.wantEvent {
				t.Errorf("Event: got %q, want %q", res.Event, tt.wantEvent)
			}
			if !reflect.DeepEqual(res.Rules, tt.wantRules) {
				t.Errorf("Rules: got %v, want %v", res.Rules, tt.wantRules)
			}
			var gotErrs []string
			for _, re := range res.RuleErrors {
				gotErrs = append(gotErrs, re.Rule+": "+re.Error)
			}
			if !reflect.DeepEqual(gotErrs, tt.wantRuleErrors) {
				t.Errorf("RuleErrors: got %q, want %q", gotErrs, tt.wantRuleErrors)
			}
			if got := res.Sinks(); !reflect.DeepEqual(got, tt.wantOrder) {
				t.Errorf("sinks: got %v, want %v", got, tt.wantOrder)
			}
			for _, d := range res.Deliveries {
				if want := tt.wantDeliveries[d.Sink]; !reflect.DeepEqual(d.Rules, want) {
					t.Errorf("%s: Rules: got %v, want %v", d.Sink, d.Rules, want)
				}
				if d.Type != cfg.Sinks[d.Sink].Type {
					t.Errorf("%s: Type: got %q, want %q", d.Sink, d.Type, cfg.Sinks[d.Sink].Type)
				}
				wantErr := tt.wantPreviewErr[d.Sink]
				switch {
				case wantErr != "" && !strings.Contains(d.Error, wantErr):
					t.Errorf("%s: Error: got %q, want one containing %q", d.Sink, d.Error, wantErr)
				case wantErr != "" && d.Preview != nil:
					t.Errorf("%s: got a preview with an error", d.Sink)
				case wantErr == "" && (d.Error != "" || d.Preview == nil):
					t.Errorf("%s: got error %q, preview %v; want a preview", d.Sink, d.Error, d.Preview)
				}
			}
			if want := len(tt.wantRuleErrors) > 0 || len(tt.wantPreviewErr) > 0; res.Failed() != want {
				t.Errorf("Failed(): got %v, want %v", res.Failed(), want)
			}
		})
	}
	if _, err := os.Stat(archive); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file sink wrote %s (stat: %v); a dry run must send nothing", archive, err)
	}
}

// TestDryRunGolden pins the whole result, previews included, for one event
// routed to every kind of sink.
func TestDryRunGolden(t *testing.T) {
	cfg, built, archive := dryRunSetup(t)
	body := readEvent(t, "transcript.failed.zoom_captions_failure.json")
	body = bytes.Replace(body, []byte(`"cus_9Tz4Qa7w"`), []byte(`"cus_vip"`), 1)
	res, err := DryRun(cfg, built, "", body)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		t.Fatal(err)
	}
	got := bytes.ReplaceAll(buf.Bytes(), []byte(archive), []byte("$ARCHIVE_PATH"))
	if bytes.Contains(got, []byte("s3cr3t")) {
		t.Errorf("the result shows a secret:\n%s", got)
	}
	checkGolden(t, filepath.Join(dryRunDir, "zoom_captions_vip.golden.json"), got)
}

// previewSink records what DryRun asks of it.
type previewSink struct {
	sends      atomic.Int32
	deliveries []sinks.Delivery
}

func (p *previewSink) Send(context.Context, sinks.Delivery) error { p.sends.Add(1); return nil }
func (p *previewSink) Close(context.Context) error                { return nil }
func (p *previewSink) Preview(d sinks.Delivery) (sinks.Preview, error) {
	p.deliveries = append(p.deliveries, d)
	return sinks.Preview{Kind: "test", Body: "ok"}, nil
}

// sendOnlySink cannot preview.
type sendOnlySink struct{ sends atomic.Int32 }

func (s *sendOnlySink) Send(context.Context, sinks.Delivery) error { s.sends.Add(1); return nil }
func (s *sendOnlySink) Close(context.Context) error                { return nil }

// TestDryRunDelivery checks the Delivery a previewer is given, and that no
// sink is ever sent to.
func TestDryRunDelivery(t *testing.T) {
	specs := []rules.Spec{
		{Name: "a", When: `status == "done"`, Sinks: []string{"p", "quiet"}},
		{Name: "b", When: `true`, Sinks: []string{"p", "missing"}},
	}
	set, err := rules.Compile(specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Sources: map[string]SourceConfig{"zeta": {}, "alpha": {}},
		Sinks:   map[string]SinkConfig{"p": {Type: "test"}, "quiet": {Type: "sendonly"}, "missing": {Type: "test"}},
		Rules:   specs,
		RuleSet: set,
	}
	p, quiet := &previewSink{}, &sendOnlySink{}
	built := map[string]sinks.Sink{"p": p, "quiet": quiet}
	body := readEvent(t, "recording.done.json")

	res, err := DryRun(cfg, built, "", body)
	if err != nil {
		t.Fatal(err)
	}
	if p.sends.Load() != 0 || quiet.sends.Load() != 0 {
		t.Errorf("Send called %d times; a dry run sends nothing", p.sends.Load()+quiet.sends.Load())
	}
	if len(p.deliveries) != 1 {
		t.Fatalf("Preview called %d times, want 1", len(p.deliveries))
	}
	d := p.deliveries[0]
	want := sinks.Delivery{
		MsgID: DryRunMsgID, Source: "alpha", Event: "recording.done", Rules: []string{"a", "b"},
		Body: body, ReceivedAt: DryRunReceivedAt(), Attempt: 1,
	}
	data := d.Data
	d.Data = nil
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Delivery:\n got %+v\nwant %+v", d, want)
	}
	if data["event"] != "recording.done" || data["source"] != "alpha" || data["msg_id"] != DryRunMsgID {
		t.Errorf("Delivery.Data: got event %v, source %v, msg_id %v", data["event"], data["source"], data["msg_id"])
	}

	wantDel := []DryRunDelivery{
		{Sink: "p", Type: "test", Rules: []string{"a", "b"}, Preview: &sinks.Preview{Kind: "test", Body: "ok"}},
		{Sink: "quiet", Type: "sendonly", Rules: []string{"a"}},
		{Sink: "missing", Type: "test", Rules: []string{"b"}, Error: "sink not built"},
	}
	if !reflect.DeepEqual(res.Deliveries, wantDel) {
		t.Errorf("Deliveries:\n got %+v\nwant %+v", res.Deliveries, wantDel)
	}
}

func TestRunCases(t *testing.T) {
	cfg, built, _ := dryRunSetup(t)
	tests := []struct {
		name       string
		file       string
		wantPassed int
		wantFailed map[string][]string // case name -> its problems
		wantErr    string
	}{
		{name: "all pass", file: "cases_pass.yaml", wantPassed: 5},
		{
			name:       "failures",
			file:       "cases_fail.yaml",
			wantPassed: 1,
			wantFailed: map[string][]string{
				"wrong expectations": {
					"rules: missing [done], unexpected [captions, failures]",
					"sinks: missing [api], unexpected [pager, strict]",
				},
				"expects no rules": {"rules: unexpected [archive-everything]"},
				"missing event": {
					"event: open " + filepath.Join(dryRunDir, "no-such-event.json") + ": no such file or directory",
				},
				"bad override":  {"set: event.kind: event: not an object"},
				"rule error":    {`rule error: broken: cannot fetch key from <nil> (1:46)`},
				"not an object": {"event: decode body: not a JSON object"},
				"preview fails": {
					`sink strict: preview failed: render template: template: strict:1:39: executing "strict" at <.payload.data.data.sub_code>: wrong type for value; expected string; got interface {}`,
				},
			},
		},
		{name: "unknown key", file: "cases_unknown_key.yaml", wantErr: "unknown key expect_sink"},
		{name: "invalid cases", file: "cases_invalid.yaml", wantErr: "cases[0].name: required\ncases[1].event: required\ncases[2].name: duplicate case name \"x\" (first at cases[1])"},
		{name: "no cases", file: "cases_empty.yaml", wantErr: "cases: at least one case required"},
		{name: "missing file", file: "no-such-cases.yaml", wantErr: "read cases: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report, err := RunCases(cfg, built, filepath.Join(dryRunDir, tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RunCases: %v", err)
			}
			if report.Passed != tt.wantPassed || report.Failed != len(tt.wantFailed) {
				t.Errorf("got %d passed, %d failed; want %d, %d", report.Passed, report.Failed, tt.wantPassed, len(tt.wantFailed))
			}
			for _, c := range report.Cases {
				want, shouldFail := tt.wantFailed[c.Name]
				if c.Passed == shouldFail || c.Passed != (len(c.Problems) == 0) {
					t.Errorf("%s: Passed %v with problems %q", c.Name, c.Passed, c.Problems)
				}
				if shouldFail && !reflect.DeepEqual(c.Problems, want) {
					t.Errorf("%s: Problems:\n got %q\nwant %q", c.Name, c.Problems, want)
				}
			}
		})
	}
}

func TestSetDiff(t *testing.T) {
	tests := []struct {
		name      string
		want, got []string
		diff      string
	}{
		{name: "equal in another order", want: []string{"a", "b"}, got: []string{"b", "a"}, diff: ""},
		{name: "both empty", want: []string{}, got: nil, diff: ""},
		{name: "missing", want: []string{"a", "b", "c"}, got: []string{"b"}, diff: "missing [a, c]"},
		{name: "unexpected", want: nil, got: []string{"x", "y"}, diff: "unexpected [x, y]"},
		{name: "both", want: []string{"a", "a"}, got: []string{"x"}, diff: "missing [a], unexpected [x]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := setDiff(tt.want, tt.got); got != tt.diff {
				t.Errorf("got %q, want %q", got, tt.diff)
			}
		})
	}
}

func TestApplyOverrides(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		set     map[string]any
		want    string
		wantErr string
	}{
		{
			name: "replace and create",
			body: `{"event":"a.b","data":{"n":12345678901234567890,"bot":null}}`,
			set:  map[string]any{"event": "c.d", "data.bot.metadata.customer_id": "cus_vip"},
			want: `{"data":{"bot":{"metadata":{"customer_id":"cus_vip"}},"n":12345678901234567890},"event":"c.d"}`,
		},
		{
			name: "array index and structured value",
			body: `{"list":[{"a":1},{"a":2}]}`,
			set:  map[string]any{"list.1.a": map[string]any{"x": []any{1, "y"}}, "gone": nil},
			want: `{"gone":null,"list":[{"a":1},{"a":{"x":[1,"y"]}}]}`,
		},
		{name: "through a string", body: `{"event":"x"}`, set: map[string]any{"event.kind": 1}, wantErr: "event.kind: event: not an object"},
		{name: "index out of range", body: `{"l":[]}`, set: map[string]any{"l.0": 1}, wantErr: "l.0: l.0: no such array index"},
		{name: "empty segment", body: `{}`, set: map[string]any{"a..b": 1}, wantErr: "a..b: empty path segment"},
		{name: "not an object", body: `[]`, set: map[string]any{"a": 1}, wantErr: "event is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := applyOverrides([]byte(tt.body), tt.set)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error: got %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// checkGolden compares got with the golden file, rewriting it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}
