package rules

import (
	"strings"
	"testing"

	"github.com/expr-lang/expr"
)

// TestEvalRecoversPanickingRule: a rule whose evaluation panics counts as
// a rule error carrying the panic's text; the rules after it are still
// evaluated, and the set stays usable.
func TestEvalRecoversPanickingRule(t *testing.T) {
	set, err := Compile([]Spec{
		{Name: "panics", When: "true", Sinks: []string{"a"}},
		{Name: "after", When: `status == "failed"`, Sinks: []string{"b"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No expression of the rule environment panics, so swap in a program
	// that calls a function that does.
	program, err := expr.Compile("kaboom()", expr.Function("kaboom", func(...any) (any, error) { panic("rule kaboom") }))
	if err != nil {
		t.Fatal(err)
	}
	set.rules[0].program = program
	env, err := NewEnv([]byte(`{"event":"transcript.failed"}`), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // and again, on the VM that replaced the failed one
		res := set.Eval(env)
		if len(res.Errors) != 1 || res.Errors[0].Rule != "panics" || !strings.Contains(res.Errors[0].Error(), "rule kaboom") {
			t.Fatalf("errors %v, want one from rule panics with the panic's text", res.Errors)
		}
		if len(res.Rules) != 1 || res.Rules[0] != "after" {
			t.Errorf("matched %v, want [after]", res.Rules)
		}
	}

	// A panic that escapes the expression engine's own recovery (here: no
	// VM to run on) is caught too.
	if _, err := run(nil, program, env); err == nil || !strings.HasPrefix(err.Error(), "panic: ") {
		t.Errorf("run with no VM = %v, want a recovered panic", err)
	}
}
