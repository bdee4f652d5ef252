package rules

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/expr-lang/expr/file"
)

// knownSinks is the sinkExists used by tests.
func knownSinks(name string) bool {
	switch name {
	case "slack", "pagerduty", "webhook", "log":
		return true
	}
	return false
}

func TestCompileErrors(t *testing.T) {
	ok := func(name string) Spec { return Spec{Name: name, When: `status == "done"`, Sinks: []string{"slack"}} }
	tests := []struct {
		name  string
		specs []Spec
		want  []string
	}{
		{
			name:  "unknown name",
			specs: []Spec{ok("a"), {Name: "zoom-alerts", When: `event == "transcript.failed" && sub_cod startsWith "zoom_"`, Sinks: []string{"slack"}}},
			want:  []string{`rules[1] (zoom-alerts).when: unknown name sub_cod (1:33)`},
		},
		{
			name:  "unknown name at start",
			specs: []Spec{{Name: "x", When: `sub_cod == "a"`, Sinks: []string{"slack"}}},
			want:  []string{`rules[0] (x).when: unknown name sub_cod (1:1)`},
		},
		{
			name:  "unknown name on second line",
			specs: []Spec{{Name: "x", When: "event == \"bot.fatal\" &&\n  sub_cod == \"a\"", Sinks: []string{"slack"}}},
			want:  []string{`rules[0] (x).when: unknown name sub_cod (2:3)`},
		},
		{
			name:  "column counts runes",
			specs: []Spec{{Name: "x", When: `"é" + sub_cod == "a"`, Sinks: []string{"slack"}}},
			want:  []string{`rules[0] (x).when: unknown name sub_cod (1:7)`},
		},
		{
			name:  "syntax error",
			specs: []Spec{{Name: "x", When: `status ==`, Sinks: []string{"slack"}}},
			want:  []string{`rules[0] (x).when: unexpected token EOF (1:9)`},
		},
		{
			name:  "not boolean",
			specs: []Spec{ok("a"), {Name: "x", When: `event`, Sinks: []string{"slack"}}},
			want:  []string{`rules[1] (x).when: expected bool, but got string (1:1)`},
		},
		{
			name:  "type mismatch",
			specs: []Spec{{Name: "x", When: `status == "done" && 1`, Sinks: []string{"slack"}}},
			want:  []string{`rules[0] (x).when: invalid operation: && (mismatched types bool and int) (1:18)`},
		},
		{
			name:  "name required",
			specs: []Spec{{When: `status == "done"`, Sinks: []string{"slack"}}},
			want:  []string{`rules[0].name: required`},
		},
		{
			name:  "blank name required",
			specs: []Spec{{Name: "  ", When: `status == "done"`, Sinks: []string{"slack"}}},
			want:  []string{`rules[0].name: required`},
		},
		{
			name:  "duplicate name",
			specs: []Spec{ok("x"), ok("y"), ok("x")},
			want:  []string{`rules[2].name: duplicate rule name "x" (first at rules[0])`},
		},
		{
			name:  "when required",
			specs: []Spec{ok("a"), ok("b"), ok("c"), {Name: "x", When: " \n", Sinks: []string{"slack"}}},
			want:  []string{`rules[3] (x).when: required`},
		},
		{
			name:  "sinks required",
			specs: []Spec{ok("a"), ok("b"), ok("c"), {Name: "x", When: `status == "done"`}},
			want:  []string{`rules[3] (x).sinks: at least one sink required`},
		},
		{
			name:  "blank sink",
			specs: []Spec{{Name: "x", When: `status == "done"`, Sinks: []string{""}}},
			want:  []string{`rules[0] (x).sinks[0]: required`},
		},
		{
			name:  "unknown sink",
			specs: []Spec{ok("a"), ok("b"), {Name: "x", When: `status == "done"`, Sinks: []string{"slak"}}},
			want:  []string{`rules[2] (x).sinks[0]: unknown sink "slak"`},
		},
		{
			name: "every problem reported in order",
			specs: []Spec{
				{},
				{Name: "x", When: `sub_cod`, Sinks: []string{"log", "slak"}},
				{Name: "x", When: `event`},
			},
			want: []string{
				`rules[0].name: required`,
				`rules[0].when: required`,
				`rules[0].sinks: at least one sink required`,
				`rules[1] (x).when: unknown name sub_cod (1:1)`,
				`rules[1] (x).sinks[1]: unknown sink "slak"`,
				`rules[2].name: duplicate rule name "x" (first at rules[1])`,
				`rules[2] (x).when: expected bool, but got string (1:1)`,
				`rules[2] (x).sinks: at least one sink required`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Compile(tt.specs, knownSinks)
			if err == nil {
				t.Fatalf("Compile: got nil error, want %q", tt.want)
			}
			if set != nil {
				t.Errorf("Compile: got non-nil Set with error")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\ngot  %s\nwant %s", got, want)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error: got %T, want an errors.Join result", err)
			}
			if got := len(joined.Unwrap()); got != len(tt.want) {
				t.Errorf("joined errors: got %d, want %d", got, len(tt.want))
			}
		})
	}
}

func TestCompileOK(t *testing.T) {
	tests := []struct {
		name       string
		specs      []Spec
		sinkExists func(string) bool
		wantLen    int
	}{
		{name: "no rules", specs: nil, sinkExists: knownSinks, wantLen: 0},
		{name: "nil sinkExists skips sink check", specs: []Spec{{Name: "a", When: `true`, Sinks: []string{"anything"}}}, wantLen: 1},
		{name: "every contract name", specs: []Spec{{Name: "all", Sinks: []string{"log"}, When: `event != "" || object != "" || status != "" || code != "" ||
			sub_code != "" || updated_at.Year() > 0 || recording.id != "" || len(bot.metadata) > 0 ||
			media.id != "" || source != "" || msg_id != "" || received_at.After(updated_at) || payload.event != nil`}}, sinkExists: knownSinks, wantLen: 1},
		{name: "dynamic result compiles", specs: []Spec{{Name: "a", When: `payload.flag`, Sinks: []string{"log"}}}, sinkExists: knownSinks, wantLen: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Compile(tt.specs, tt.sinkExists)
			if err != nil {
				t.Fatalf("Compile: got error %v, want nil", err)
			}
			if got := set.Len(); got != tt.wantLen {
				t.Errorf("Len: got %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestCompileCopiesSinks(t *testing.T) {
	sinks := []string{"log"}
	set, err := Compile([]Spec{{Name: "a", When: `true`, Sinks: sinks}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sinks[0] = "changed"
	if got := set.Eval(&Env{}).Sinks; !reflect.DeepEqual(got, []string{"log"}) {
		t.Errorf("Sinks: got %v, want [log]", got)
	}
}

// mustCompile compiles specs or fails the test.
func mustCompile(t testing.TB, specs []Spec) *Set {
	t.Helper()
	set, err := Compile(specs, nil)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return set
}

func TestEval(t *testing.T) {
	env := loadEnv(t, filepath.Join(examplesDir, "transcript.failed.zoom_captions_failure.json"))
	tests := []struct {
		name       string
		specs      []Spec
		wantRules  []string
		wantSinks  []string
		wantRoute  map[string][]string // nil when nothing matched
		wantErrors []string            // rule names with run-time errors
	}{
		{
			name: "no match",
			specs: []Spec{
				{Name: "a", When: `status == "done"`, Sinks: []string{"log"}},
			},
		},
		{
			name: "all matches in order",
			specs: []Spec{
				{Name: "zoom", When: `event == "transcript.failed" && sub_code startsWith "zoom_"`, Sinks: []string{"slack"}},
				{Name: "done", When: `status == "done"`, Sinks: []string{"log"}},
				{Name: "customer", When: `bot.metadata.customer_id == "cus_9Tz4Qa7w"`, Sinks: []string{"webhook"}},
				{Name: "objects", When: `object in ["transcript", "recording"]`, Sinks: []string{"pagerduty"}},
			},
			wantRules: []string{"zoom", "customer", "objects"},
			wantSinks: []string{"slack", "webhook", "pagerduty"},
			wantRoute: map[string][]string{"slack": {"zoom"}, "webhook": {"customer"}, "pagerduty": {"objects"}},
		},
		{
			name: "stop on match ends evaluation",
			specs: []Spec{
				{Name: "a", When: `status == "failed"`, Sinks: []string{"log"}},
				{Name: "b", When: `code == "failed"`, Sinks: []string{"slack"}, Stop: true},
				{Name: "c", When: `true`, Sinks: []string{"webhook"}},
			},
			wantRules: []string{"a", "b"},
			wantSinks: []string{"log", "slack"},
			wantRoute: map[string][]string{"log": {"a"}, "slack": {"b"}},
		},
		{
			name: "stop without match does not stop",
			specs: []Spec{
				{Name: "a", When: `status == "done"`, Sinks: []string{"log"}, Stop: true},
				{Name: "b", When: `true`, Sinks: []string{"slack"}},
			},
			wantRules: []string{"b"},
			wantSinks: []string{"slack"},
			wantRoute: map[string][]string{"slack": {"b"}},
		},
		{
			name: "sinks de-duplicated in first-seen order",
			specs: []Spec{
				{Name: "a", When: `true`, Sinks: []string{"slack", "log", "slack"}},
				{Name: "b", When: `true`, Sinks: []string{"webhook", "log"}},
				{Name: "c", When: `true`, Sinks: []string{"slack"}},
			},
			wantRules: []string{"a", "b", "c"},
			wantSinks: []string{"slack", "log", "webhook"},
			// The route keeps a rule once per time it lists the sink.
			wantRoute: map[string][]string{"slack": {"a", "a", "c"}, "log": {"a", "b"}, "webhook": {"b"}},
		},
		{
			name: "run-time errors count as not matched",
			specs: []Spec{
				{Name: "missing", When: `payload.data.missing.key == "x"`, Sinks: []string{"slack"}, Stop: true},
				{Name: "ok", When: `status == "failed"`, Sinks: []string{"log"}},
				{Name: "int", When: `int(payload.event) > 0`, Sinks: []string{"pagerduty"}, Stop: true},
				{Name: "not-bool", When: `payload.event`, Sinks: []string{"pagerduty"}},
				{Name: "after", When: `media.id == "8d30fcbd-c845-4ae3-8314-006773841121"`, Sinks: []string{"webhook", "log"}},
			},
			wantRules:  []string{"ok", "after"},
			wantSinks:  []string{"log", "webhook"},
			wantRoute:  map[string][]string{"log": {"ok", "after"}, "webhook": {"after"}},
			wantErrors: []string{"missing", "int", "not-bool"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustCompile(t, tt.specs).Eval(env)
			if !reflect.DeepEqual(res.Rules, tt.wantRules) {
				t.Errorf("Rules: got %v, want %v", res.Rules, tt.wantRules)
			}
			if !reflect.DeepEqual(res.Sinks, tt.wantSinks) {
				t.Errorf("Sinks: got %v, want %v", res.Sinks, tt.wantSinks)
			}
			if !reflect.DeepEqual(res.Route, tt.wantRoute) {
				t.Errorf("Route: got %v, want %v", res.Route, tt.wantRoute)
			}
			var gotErrors []string
			for _, e := range res.Errors {
				gotErrors = append(gotErrors, e.Rule)
				if e.Err == nil {
					t.Errorf("error of rule %q: got nil Err", e.Rule)
				}
			}
			if !reflect.DeepEqual(gotErrors, tt.wantErrors) {
				t.Errorf("Errors: got %v, want %v", gotErrors, tt.wantErrors)
			}
		})
	}
}

func TestRuleErrorMessages(t *testing.T) {
	env := loadEnv(t, filepath.Join(examplesDir, "recording.done.json"))
	tests := []struct {
		when string
		want string
	}{
		{`payload.data.missing.key == "x"`, `rule "r": cannot fetch key from <nil> (1:22)`},
		{`int(payload.event) > 0`, `rule "r": invalid operation: int(recording.done) (1:1)`},
		{`bot.metadata.team.name == "x"`, `rule "r": cannot fetch name from <nil> (1:19)`},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			res := mustCompile(t, []Spec{{Name: "r", When: tt.when, Sinks: []string{"log"}}}).Eval(env)
			if len(res.Errors) != 1 {
				t.Fatalf("Errors: got %d, want 1", len(res.Errors))
			}
			re := res.Errors[0]
			if got := re.Error(); got != tt.want {
				t.Errorf("Error(): got %q, want %q", got, tt.want)
			}
			var fe *file.Error
			if !errors.As(re, &fe) {
				t.Errorf("errors.As(*file.Error): got false, want true (Unwrap)")
			}
		})
	}
}

func TestEvalNilCases(t *testing.T) {
	var nilSet *Set
	if got := nilSet.Len(); got != 0 {
		t.Errorf("nil Set Len: got %d, want 0", got)
	}
	if got := nilSet.Eval(&Env{}); !reflect.DeepEqual(got, Result{}) {
		t.Errorf("nil Set Eval: got %+v, want empty Result", got)
	}
	set := mustCompile(t, []Spec{
		{Name: "a", When: `event == ""`, Sinks: []string{"log"}},
		{Name: "b", When: `bot.metadata.x == nil`, Sinks: []string{"slack"}},
	})
	res := set.Eval(nil)
	if want := []string{"a"}; !reflect.DeepEqual(res.Rules, want) {
		t.Errorf("nil env Rules: got %v, want %v", res.Rules, want)
	}
	if want := []string{"b"}; len(res.Errors) != 1 || res.Errors[0].Rule != want[0] {
		t.Errorf("nil env Errors: got %v, want one for %v", res.Errors, want)
	}
}

func TestEvalConcurrent(t *testing.T) {
	set := mustCompile(t, typicalSpecs(40))
	env, err := NewEnv(benchEvent, benchMeta)
	if err != nil {
		t.Fatal(err)
	}
	want := set.Eval(env)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got := set.Eval(env); !reflect.DeepEqual(got, want) {
					errs <- fmt.Errorf("got %+v, want %+v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRuleErrorFormatting(t *testing.T) {
	boom := errors.New("boom\nsecond line")
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{name: "plain error keeps first line, no position", err: Error{Rule: "r", Err: boom}, want: `rule "r": boom`},
		{name: "nil error", err: Error{Rule: "r"}, want: `rule "r": unknown error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error(): got %q, want %q", got, tt.want)
			}
			if got := tt.err.Unwrap(); got != tt.err.Err {
				t.Errorf("Unwrap(): got %v, want %v", got, tt.err.Err)
			}
		})
	}
}
