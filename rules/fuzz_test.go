package rules

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// addEventSeeds adds every sample and fixture event to the corpus.
func addEventSeeds(f *testing.F) {
	f.Helper()
	for _, dir := range []string{examplesDir, filepath.Join("testdata", "events")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			body, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(body)
		}
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `{"event":1}`, `{"event":"a.b","data":null}`,
		`{"event":".","data":{"data":{"updated_at":"2024-02-17T16:44:00.505440+00:00"}}}`,
		`{"event":"bot.status_change","data":{"bot_id":7,"status":{"code":null}}}`,
		"{\"a\":\"\\ud800\xff\"}", `{"a":[[[[{}]]]]}`} {
		f.Add([]byte(s))
	}
}

// FuzzEnvEval checks that any JSON object yields an Env that evaluates
// without panicking, and that the fast decoder agrees with encoding/json.
func FuzzEnvEval(f *testing.F) {
	addEventSeeds(f)
	set, err := Compile([]Spec{
		{Name: "zoom", When: `event == "transcript.failed" && sub_code startsWith "zoom_"`, Sinks: []string{"slack"}},
		{Name: "customer", When: `bot.metadata.customer_id == "cus_1" || recording.metadata.user_id == "1"`, Sinks: []string{"log"}},
		{Name: "media", When: `media.id != "" && object in ["transcript", "recording"] && status == "done"`, Sinks: []string{"log"}},
		{Name: "time", When: `updated_at.Before(received_at) && code != ""`, Sinks: []string{"slack"}},
		{Name: "dynamic", When: `payload.data.data.code == "x" || len(payload) > 3`, Sinks: []string{"webhook"}},
		{Name: "may-error", When: `payload.data.data.participant.name == "x"`, Sinks: []string{"webhook"}, Stop: true},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want map[string]any
		wantErr := json.Unmarshal(body, &want)
		got, gotErr := decodeObject(body)
		if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeObject(%q): got %#v, %v; want %#v, %v", body, got, gotErr, want, wantErr)
		}

		env, err := NewEnv(body, Meta{Source: "fuzz"})
		if wantErr != nil || want == nil {
			if err == nil {
				t.Fatalf("NewEnv(%q): got nil error, want one", body)
			}
			return
		}
		if err != nil {
			t.Fatalf("NewEnv(%q): got error %v, want nil for a JSON object", body, err)
		}
		for name, ref := range map[string]map[string]any{"recording": env.Recording, "bot": env.Bot, "media": env.Media} {
			if _, ok := ref["id"].(string); !ok {
				t.Fatalf("%s.id: got %T, want string", name, ref["id"])
			}
			if md, ok := ref["metadata"].(map[string]any); !ok || md == nil {
				t.Fatalf("%s.metadata: got %#v, want a non-nil map", name, ref["metadata"])
			}
		}
		res := set.Eval(env)
		if len(res.Rules)+len(res.Errors) > set.Len() {
			t.Fatalf("Eval: got %d matches and %d errors for %d rules", len(res.Rules), len(res.Errors), set.Len())
		}
		_ = env.Data()
	})
}

// FuzzCompile checks that arbitrary expressions never panic Compile, and
// that a compiled rule evaluates without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`event == "transcript.failed" && sub_code startsWith "zoom_"`,
		`status == "done"`, `bot.metadata.customer_id == "cus_1"`,
		`object in ["transcript","recording"]`, `sub_cod`, `event`, ``, `(`, `"`,
		`let x = 1; x > 0`, `map(1..3, # * 2) == [2,4,6]`, `payload?.data?.x ?? true`,
		`updated_at > received_at`, `now().Year() > 0`, `1/0 > 0`, `len(payload.data) == 2`,
		"event ==\n\"x\"", `repeat("x", 1000000000) == ""`, `filter(payload.data, .x)`,
	} {
		f.Add(s)
	}
	env, err := NewEnv(benchEvent, benchMeta)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, when string) {
		set, err := Compile([]Spec{{Name: "f", When: when, Sinks: []string{"log"}}}, nil)
		if err != nil {
			if set != nil {
				t.Fatalf("Compile(%q): got non-nil Set with error", when)
			}
			return
		}
		_ = set.Eval(env)
	})
}
