package rules

import (
	"strings"
	"testing"
)

// filterEnv is an environment as a caller of CompileCondition builds one:
// the rule environment plus names of its own.
type filterEnv struct {
	Env
	Sink     string `expr:"sink"`
	Attempts int    `expr:"attempts"`
}

func TestCompileConditionErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{`sub_cod == "a"`, "unknown name sub_cod (1:1)"},
		{`event`, "expected bool, but got string (1:1)"},
		{`attempts > "x"`, `invalid operation: > (mismatched types int and string) (1:10)`},
		{`   `, "empty expression"},
	}
	for _, tt := range tests {
		_, err := CompileCondition(tt.src, filterEnv{})
		if err == nil || err.Error() != tt.want {
			t.Errorf("CompileCondition(%q): got %v, want %q", tt.src, err, tt.want)
		}
	}
}

func TestConditionMatch(t *testing.T) {
	body := []byte(`{"event":"transcript.failed","data":{"data":{"code":"failed","sub_code":"zoom_x"}}}`)
	env, err := NewEnv(body, Meta{Source: "recall", MsgID: "msg_1"})
	if err != nil {
		t.Fatal(err)
	}
	fe := &filterEnv{Env: *env, Sink: "slack", Attempts: 3}
	tests := []struct {
		src  string
		want bool
	}{
		{`event == "transcript.failed"`, true},
		{`sub_code startsWith "zoom_" && sink == "slack"`, true},
		{`attempts >= 4`, false},
		{`payload.data.data.code == "failed"`, true},
	}
	for _, tt := range tests {
		c, err := CompileCondition(tt.src, filterEnv{})
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		for _, e := range []any{fe, *fe} {
			got, err := c.Match(e)
			if err != nil || got != tt.want {
				t.Errorf("%s over %T: got %v, %v; want %v", tt.src, e, got, err, tt.want)
			}
		}
	}
	// A run-time failure is an error and no match.
	c, err := CompileCondition(`payload.data.missing.deeper == 1`, filterEnv{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Match(fe); got || err == nil {
		t.Errorf("nil dereference: got %v, %v; want false and an error", got, err)
	}
	var none *Condition
	if got, err := none.Match(fe); !got || err != nil {
		t.Errorf("nil condition: got %v, %v; want a match", got, err)
	}
}

func TestConditionOverRuleEnv(t *testing.T) {
	c, err := CompileCondition(`status == "done" && !(source in ["a"])`, Env{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Match(&Env{Status: "done", Source: "recall"})
	if !got || err != nil {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := CompileCondition(`sink == "x"`, Env{}); err == nil || !strings.Contains(err.Error(), "unknown name sink") {
		t.Errorf("a name of another environment: got %v", err)
	}
}

// FuzzCompileCondition: any where expression compiles or is refused with an
// error, without a panic, and a compiled one evaluates on an empty event.
func FuzzCompileCondition(f *testing.F) {
	for _, s := range []string{`event == "transcript.failed"`, `sub_code startsWith "zoom_"`, `attempts > 3 && sink == "a"`, `sub_cod == 1`, `(`, `event`} {
		f.Add(s)
	}
	env, err := NewEnv([]byte(`{"event":"x"}`), Meta{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := CompileCondition(src, filterEnv{})
		if err != nil {
			return
		}
		_, _ = c.Match(&filterEnv{Env: *env})
	})
}
