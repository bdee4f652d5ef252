package rules

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Spec is one rule as configured; the tags name its keys in the relay's
// config file.
type Spec struct {
	// Name identifies the rule; required and unique within a Set.
	Name string `koanf:"name"`
	// When is an expr-lang boolean expression over Env; required.
	When string `koanf:"when"`
	// Sinks names the sinks a matching event is routed to; at least one.
	Sinks []string `koanf:"sinks"`
	// Stop ends evaluation after this rule when it matches.
	Stop bool `koanf:"stop"`
}

// rule is a compiled Spec.
type rule struct {
	name    string
	program *vm.Program
	sinks   []string
	stop    bool
}

// Set is a compiled, ordered rule list. It is immutable after Compile and
// safe for concurrent use; a nil *Set has no rules.
type Set struct {
	rules []rule
	vms   sync.Pool // *vm.VM, reused across Eval calls to avoid allocation
}

// Compile compiles every spec once with
// expr.Compile(when, expr.Env(Env{}), expr.AsBool()) and validates names and
// sinks. sinkExists reports whether a sink is configured; when nil, sink names
// are not checked.
//
// It reports every problem, joined with errors.Join, one error per problem,
// in spec order, each prefixed "rules[i]" (plus " (name)" once the rule has a
// name), for example:
//
//	rules[0].name: required
//	rules[2].name: duplicate rule name "x" (first at rules[0])
//	rules[3] (x).when: required
//	rules[1] (x).when: unknown name sub_cod (1:28)
//	rules[1] (x).when: expected bool, but got string (1:1)
//	rules[3] (x).sinks: at least one sink required
//	rules[3] (x).sinks[0]: required
//	rules[2] (x).sinks[0]: unknown sink "slak"
//
// Expression errors are expr's message reduced to its first line followed by
// the 1-based " (line:column)" of the fault; errors expr reports without a
// position (such as a non-boolean result) are placed at (1:1).
// On error the returned Set is nil.
func Compile(specs []Spec, sinkExists func(name string) bool) (*Set, error) {
	var errs []error
	set := &Set{rules: make([]rule, 0, len(specs))}
	firstAt := make(map[string]int, len(specs))
	for i, sp := range specs {
		prefix := fmt.Sprintf("rules[%d]", i)
		if strings.TrimSpace(sp.Name) == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", prefix))
		} else {
			if j, dup := firstAt[sp.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name: duplicate rule name %q (first at rules[%d])", prefix, sp.Name, j))
			} else {
				firstAt[sp.Name] = i
			}
			prefix = fmt.Sprintf("%s (%s)", prefix, sp.Name)
		}

		var program *vm.Program
		if strings.TrimSpace(sp.When) == "" {
			errs = append(errs, fmt.Errorf("%s.when: required", prefix))
		} else {
			p, err := compileWhen(sp.When)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.when: %s", prefix, describe(err, true)))
			}
			program = p
		}

		if len(sp.Sinks) == 0 {
			errs = append(errs, fmt.Errorf("%s.sinks: at least one sink required", prefix))
		}
		for j, sink := range sp.Sinks {
			switch {
			case strings.TrimSpace(sink) == "":
				errs = append(errs, fmt.Errorf("%s.sinks[%d]: required", prefix, j))
			case sinkExists != nil && !sinkExists(sink):
				errs = append(errs, fmt.Errorf("%s.sinks[%d]: unknown sink %q", prefix, j, sink))
			}
		}

		set.rules = append(set.rules, rule{
			name:    sp.Name,
			program: program,
			sinks:   append([]string(nil), sp.Sinks...),
			stop:    sp.Stop,
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// compileWhen compiles one expression, turning a compiler panic into an error.
func compileWhen(when string) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compiler panic: %v", r)
		}
	}()
	return expr.Compile(when, expr.Env(Env{}), expr.AsBool())
}

// describe renders an expr error on one line: the first line of its message
// followed by the 1-based " (line:column)" position. When expr gives no
// position, (1:1) is used if always is set and the position is omitted
// otherwise.
func describe(err error, always bool) string {
	line, col := 0, 0
	msg := err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		msg = fe.Message
		if fe.Line > 0 {
			line, col = fe.Line, fe.Column+1
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSpace(msg)
	if line == 0 {
		if !always {
			return msg
		}
		line, col = 1, 1
	}
	return fmt.Sprintf("%s (%d:%d)", msg, line, col)
}

// Len returns the number of rules in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Result is the outcome of evaluating one event.
type Result struct {
	// Rules are the names of the matched rules, in rule order.
	Rules []string
	// Sinks is the de-duplicated union of the matched rules' sinks, in
	// first-seen order.
	Sinks []string
	// Route maps each sink in Sinks to the matched rules that name it, in
	// rule order (a rule that lists a sink twice appears twice). It is the
	// routing the relay stores with an event and reports in a dry run. Nil
	// when no rule matched: an unmatched event costs no allocation here.
	Route map[string][]string
	// Errors are the run-time errors; each erroring rule counts as not
	// matched.
	Errors []Error
}

// Error is a run-time failure of one rule.
type Error struct {
	// Rule is the failing rule's name.
	Rule string
	// Err is the underlying error (usually an expr *file.Error).
	Err error
}

// Error renders the failure on one line: `rule "name": message (line:col)`,
// without the position when the error carries none.
func (e Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("rule %q: unknown error", e.Rule)
	}
	return fmt.Sprintf("rule %q: %s", e.Rule, describe(e.Err, false))
}

// Unwrap returns the underlying error.
func (e Error) Unwrap() error { return e.Err }

// errNotBool is reported when a rule yields a non-boolean at run time (only
// possible for expressions of dynamic type, e.g. `payload.event`).
var errNotBool = errors.New("expected bool")

// Eval evaluates the rules in order against env and collects every match; a
// matching rule with Stop ends evaluation. A rule that fails at run time is
// not matched and is reported in Result.Errors; it never stops other rules.
// Eval never panics. A nil env is evaluated as the zero Env.
func (s *Set) Eval(env *Env) Result {
	var res Result
	if s == nil || len(s.rules) == 0 {
		return res
	}
	if env == nil {
		env = &Env{}
	}
	machine, _ := s.vms.Get().(*vm.VM)
	if machine == nil {
		machine = &vm.VM{}
	}
	for i := range s.rules {
		r := &s.rules[i]
		matched, err := run(machine, r.program, env)
		if err != nil {
			res.Errors = append(res.Errors, Error{Rule: r.name, Err: err})
			machine = &vm.VM{} // do not reuse a VM after a failure
			continue
		}
		if !matched {
			continue
		}
		res.match(r)
		if r.stop {
			break
		}
	}
	s.vms.Put(machine)
	return res
}

// match records that r matched: its name in Rules, its sinks in Sinks, and
// its name under each of its sinks in Route. This is the one place routing
// is decided; ingest, dry runs and backtests all read it from the Result.
func (res *Result) match(r *rule) {
	res.Rules = append(res.Rules, r.name)
	if res.Route == nil {
		res.Route = make(map[string][]string, len(r.sinks))
	}
	for _, sink := range r.sinks {
		res.Sinks = appendUnique(res.Sinks, sink)
		res.Route[sink] = append(res.Route[sink], r.name)
	}
}

// run executes one program, converting a panic or non-bool result to an error.
func run(machine *vm.VM, program *vm.Program, env *Env) (matched bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			matched, err = false, fmt.Errorf("panic: %v", r)
		}
	}()
	if program == nil {
		return false, errors.New("rule not compiled")
	}
	out, err := machine.Run(program, env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("%w, but got %T", errNotBool, out)
	}
	return b, nil
}

// appendUnique appends s to list unless already present.
func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
