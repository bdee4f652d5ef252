package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	exampleConfig = "../../configs/examples/relay.yaml"
	exampleEvents = "../../configs/examples/events"
)

// setExampleEnv sets the variables configs/examples/relay.yaml needs, and
// clears its optional ones so that the output does not depend on the
// caller's environment.
func setExampleEnv(t *testing.T) {
	t.Setenv("RECALL_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T000/B000/XXXX")
	for _, k := range []string{"INTERNAL_API_URL", "INTERNAL_API_TOKEN", "INTERNAL_SIGNING_SECRET", "RELAY_ADMIN_TOKEN"} {
		t.Setenv(k, "")
	}
}

// relayTest runs `relay test args...` in-process.
func relayTest(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"test"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// listTree lists every path under dir, for checking that nothing was created.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestTestGolden dry-runs every sample event through the example config.
func TestTestGolden(t *testing.T) {
	setExampleEnv(t)
	events, err := filepath.Glob(filepath.Join(exampleEvents, "*.json"))
	if err != nil || len(events) == 0 {
		t.Fatalf("no sample events (%v)", err)
	}
	tests := []struct {
		name   string
		flags  []string
		golden string
	}{
		{name: "text", golden: "testdata/test_events.golden.txt"},
		{name: "json", flags: []string{"--json"}, golden: "testdata/test_events.golden.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := listTree(t, ".")
			args := append(append([]string{"-c", exampleConfig}, tt.flags...), events...)
			code, stdout, stderr := relayTest(t, args...)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\nstderr: %s", code, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
			if after := listTree(t, "."); !reflect.DeepEqual(before, after) {
				t.Errorf("the dry run created files:\nbefore %q\nafter  %q", before, after)
			}
			checkGolden(t, tt.golden, []byte(stdout))
		})
	}
}

// TestTestJSONShape checks that --json output decodes into the documented
// shape: an array of {file, result} or {file, error}.
func TestTestJSONShape(t *testing.T) {
	setExampleEnv(t)
	code, stdout, _ := relayTest(t, "-c", exampleConfig, "--json",
		filepath.Join(exampleEvents, "transcript.failed.zoom_captions_failure.json"), "testdata/not_an_object.json")
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	var got []struct {
		File   string `json:"file"`
		Result *struct {
			Event      string   `json:"event"`
			Rules      []string `json:"rules"`
			Deliveries []struct {
				Sink    string          `json:"sink"`
				Type    string          `json:"type"`
				Rules   []string        `json:"rules"`
				Preview json.RawMessage `json:"preview"`
			} `json:"deliveries"`
		} `json:"result"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, stdout)
	}
	if len(got) != 2 || got[0].Result == nil || got[1].Result != nil {
		t.Fatalf("got %+v", got)
	}
	if r := got[0].Result; r.Event != "transcript.failed" || len(r.Deliveries) != 2 ||
		r.Deliveries[0].Sink != "oncall-slack" || r.Deliveries[0].Type != "slack" || len(r.Deliveries[0].Preview) == 0 {
		t.Errorf("result: %+v", r)
	}
	if want := "decode body: not a JSON object"; got[1].Error != want {
		t.Errorf("error: got %q, want %q", got[1].Error, want)
	}
}

func TestTestExitCodes(t *testing.T) {
	setExampleEnv(t)
	zoom := filepath.Join(exampleEvents, "transcript.failed.zoom_captions_failure.json")
	fatal := filepath.Join(exampleEvents, "bot.fatal.meeting_not_found.json")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string // substrings of stdout
		wantStderr []string // substrings of stderr
	}{
		{
			name: "one event", args: []string{"-c", exampleConfig, zoom}, wantCode: 0,
			wantOut: []string{
				"== " + zoom + "\nevent: transcript.failed\nrules: zoom-captions-failures, archive-everything\n",
				"-> oncall-slack (slack) via zoom-captions-failures\n   POST https://hooks.slack.com/[redacted]\n",
				"-> archive (file) via archive-everything\n   append data/events.jsonl\n",
			},
		},
		{
			name: "explicit source", args: []string{"-c", exampleConfig, "--source", "recall", zoom}, wantCode: 0,
			wantOut: []string{"source `recall`"},
		},
		{
			name: "no rule matches", args: []string{"-c", "testdata/quiet.yaml", zoom}, wantCode: 0,
			wantOut: []string{"event: transcript.failed\nrules: (none)\n"},
		},
		{
			name: "rule error", args: []string{"-c", "testdata/rule_error.yaml", zoom, fatal}, wantCode: 1,
			wantOut: []string{
				"rules: archive-everything\nrule error: broken: cannot fetch key from <nil> (1:41)\n-> archive (file) via archive-everything\n",
			},
		},
		{
			name: "missing event file", args: []string{"-c", exampleConfig, zoom, "testdata/no-such-event.json"}, wantCode: 1,
			wantOut: []string{"== testdata/no-such-event.json\nerror: open testdata/no-such-event.json: no such file or directory\n"},
		},
		{
			name: "not an object", args: []string{"-c", exampleConfig, "testdata/not_an_object.json"}, wantCode: 1,
			wantOut: []string{"error: decode body: not a JSON object\n"},
		},
		{
			name: "passing cases", args: []string{"-c", exampleConfig, "--cases", "../../configs/examples/rules_test.yaml"}, wantCode: 0,
			wantOut: []string{"19 passed, 0 failed\n"},
		},
		{
			name: "passing cases as json", args: []string{"-c", exampleConfig, "--json", "--cases", "../../configs/examples/rules_test.yaml"}, wantCode: 0,
			wantOut: []string{"\"passed\": 19,\n  \"failed\": 0\n}\n"},
		},
		{
			name: "failing case", args: []string{"-c", exampleConfig, "--cases", "testdata/cases_fail.yaml"}, wantCode: 1,
			wantOut: []string{
				"FAIL bot fatal pages on-call (../../../configs/examples/events/bot.fatal.meeting_not_found.json)\n" +
					"  rules: missing [zoom-captions-failures]\n" +
					"  sinks: missing [oncall-slack], unexpected [archive]\n" +
					"1 passed, 1 failed\n",
			},
		},
		{
			name: "invalid cases file", args: []string{"-c", exampleConfig, "--cases", "testdata/rule_error.yaml"}, wantCode: 1,
			wantStderr: []string{"relay: cases testdata/rule_error.yaml: ", "unknown key sources"},
		},
		{
			name: "bad config", args: []string{"-c", "testdata/no-such-config.yaml", zoom}, wantCode: 1,
			wantStderr: []string{"read config testdata/no-such-config.yaml"},
		},
		{name: "no events", args: []string{"-c", exampleConfig}, wantCode: 2, wantStderr: []string{"test needs event files or --cases FILE"}},
		{name: "events and cases", args: []string{"-c", exampleConfig, "--cases", "x.yaml", zoom}, wantCode: 2},
		{name: "source with cases", args: []string{"-c", exampleConfig, "--cases", "x.yaml", "--source", "recall"}, wantCode: 2},
		{name: "unknown source", args: []string{"-c", exampleConfig, "--source", "nope", zoom}, wantCode: 2,
			wantStderr: []string{`--source: unknown source "nope" (configured: recall)`}},
		{name: "unknown flag", args: []string{"--frobnicate", zoom}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := relayTest(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
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
		t.Errorf("%s differs (run with -update to accept); got:\n%s", path, got)
	}
}
