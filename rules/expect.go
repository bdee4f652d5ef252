package rules

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// ExpectationSpec is one expectation as configured: an event matching After
// starts a timer for its Key; an event matching Expect with the same Key
// settles it; a timer that runs Within without being settled is missed.
// The tags name its keys in the relay's config file.
type ExpectationSpec struct {
	// Name identifies the expectation; required, unique, 1 to 64 letters,
	// digits, "-" or "_" (it becomes part of NATS subjects).
	Name string `koanf:"name"`
	// After is a boolean expression over Env: the events that start a timer.
	After string `koanf:"after"`
	// Expect is a boolean expression over Env: the events that settle one.
	Expect string `koanf:"expect"`
	// Key is an expression over Env giving a string, evaluated on both
	// events: a timer is settled only by an event with the same key.
	Key string `koanf:"key"`
	// Within is how long a timer runs; positive.
	Within time.Duration `koanf:"within"`
}

// MaxKeyBytes is the longest key an expectation may give; an event whose
// key is longer starts or settles nothing (its evaluation fails).
const MaxKeyBytes = 1024

// expectation is a compiled ExpectationSpec.
type expectation struct {
	name               string
	within             time.Duration
	after, expect, key *vm.Program
}

// Expectations is a compiled list of expectations. It is immutable after
// CompileExpectations and safe for concurrent use; a nil *Expectations has
// none.
type Expectations struct {
	list []expectation
	vms  sync.Pool // *vm.VM
}

// expectationName is what an expectation's name may hold.
var expectationName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CompileExpectations compiles and checks every spec: After and Expect must
// be boolean expressions over Env, Key an expression that can give a string,
// Within positive. It reports every problem, joined with errors.Join, each
// prefixed with its config path, for example:
//
//	expectations[0].name: required
//	expectations[1].name: duplicate expectation name "x" (first at expectations[0])
//	expectations[0].after: unknown name evnt (1:1)
//	expectations[0].key: expected string, but got bool (1:1)
//	expectations[0].within: must be positive
//
// On error the returned set is nil.
func CompileExpectations(specs []ExpectationSpec) (*Expectations, error) {
	var errs []error
	x := &Expectations{list: make([]expectation, 0, len(specs))}
	firstAt := make(map[string]int, len(specs))
	for i, sp := range specs {
		p := fmt.Sprintf("expectations[%d]", i)
		switch {
		case strings.TrimSpace(sp.Name) == "":
			errs = append(errs, fmt.Errorf("%s.name: required", p))
		case !expectationName.MatchString(sp.Name):
			errs = append(errs, fmt.Errorf(`%s.name: invalid name (use 1 to 64 letters, digits, "-" or "_")`, p))
		default:
			if j, dup := firstAt[sp.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name: duplicate expectation name %q (first at expectations[%d])", p, sp.Name, j))
			}
			firstAt[sp.Name] = i
		}
		e := expectation{name: sp.Name, within: sp.Within}
		var err error
		if e.after, err = compileField(p+".after", sp.After, expr.AsBool()); err != nil {
			errs = append(errs, err)
		}
		if e.expect, err = compileField(p+".expect", sp.Expect, expr.AsBool()); err != nil {
			errs = append(errs, err)
		}
		if e.key, err = compileField(p+".key", sp.Key, expr.AsKind(reflect.String)); err != nil {
			errs = append(errs, err)
		}
		if sp.Within <= 0 {
			errs = append(errs, fmt.Errorf("%s.within: must be positive", p))
		}
		x.list = append(x.list, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return x, nil
}

// compileField compiles one required expression of an expectation, naming
// its path in the error.
func compileField(path, src string, opt expr.Option) (p *vm.Program, err error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("%s: required", path)
	}
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%s: compiler panic: %v", path, r)
		}
	}()
	p, err = expr.Compile(src, expr.Env(Env{}), opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", path, describe(err, true))
	}
	return p, nil
}

// Len returns the number of expectations.
func (x *Expectations) Len() int {
	if x == nil {
		return 0
	}
	return len(x.list)
}

// Names returns the expectations' names, in config order.
func (x *Expectations) Names() []string {
	if x == nil {
		return nil
	}
	out := make([]string, len(x.list))
	for i, e := range x.list {
		out[i] = e.name
	}
	return out
}

// Within returns how long the named expectation's timers run; ok is false
// when there is no such expectation.
func (x *Expectations) Within(name string) (d time.Duration, ok bool) {
	if x == nil {
		return 0, false
	}
	for _, e := range x.list {
		if e.name == name {
			return e.within, true
		}
	}
	return 0, false
}

// Hit is what one event does to one expectation's timer for one key.
type Hit struct {
	// Expectation is the expectation's name.
	Expectation string
	// Key is the key the event gave.
	Key string
	// Start is true when the event starts (or restarts) the timer, false
	// when it settles it.
	Start bool
	// Deadline is when a started timer runs out: the event's ReceivedAt
	// plus the expectation's Within. Zero for a settle.
	Deadline time.Time
}

// Observe evaluates every expectation over env: an event matching After
// starts the timer of its key (an event that also matches Expect restarts
// it: it is the later After); one matching only Expect settles it. An
// event whose key evaluates to "" touches no timer. A failing evaluation
// (a run-time error, a key that is not a string or is longer than
// MaxKeyBytes) touches no timer of that expectation and is reported in
// errs, with Rule set to "expectations[i] (name)". Observe never panics.
func (x *Expectations) Observe(env *Env) (hits []Hit, errs []Error) {
	if x == nil || len(x.list) == 0 {
		return nil, nil
	}
	if env == nil {
		env = &Env{}
	}
	machine, _ := x.vms.Get().(*vm.VM)
	if machine == nil {
		machine = &vm.VM{}
	}
	for i := range x.list {
		e := &x.list[i]
		h, err := e.observe(machine, env)
		if err != nil {
			errs = append(errs, Error{Rule: fmt.Sprintf("expectations[%d] (%s)", i, e.name), Err: err})
			machine = &vm.VM{}
			continue
		}
		if h != nil {
			hits = append(hits, *h)
		}
	}
	x.vms.Put(machine)
	return hits, errs
}

// observe is Observe for one expectation.
func (e *expectation) observe(machine *vm.VM, env *Env) (*Hit, error) {
	start, err := run(machine, e.after, env)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	settle := false
	if !start {
		if settle, err = run(machine, e.expect, env); err != nil {
			return nil, fmt.Errorf("expect: %w", err)
		}
	}
	if !start && !settle {
		return nil, nil
	}
	key, err := evalKey(machine, e.key, env)
	if err != nil || key == "" {
		return nil, err
	}
	h := &Hit{Expectation: e.name, Key: key, Start: start}
	if start {
		h.Deadline = env.ReceivedAt.Add(e.within)
	}
	return h, nil
}

// evalKey runs a key program: its result must be a string of at most
// MaxKeyBytes.
func evalKey(machine *vm.VM, p *vm.Program, env *Env) (key string, err error) {
	defer func() {
		if r := recover(); r != nil {
			key, err = "", fmt.Errorf("key: panic: %v", r)
		}
	}()
	out, err := machine.Run(p, env)
	if err != nil {
		return "", fmt.Errorf("key: %w", err)
	}
	switch k := out.(type) {
	case string:
		if len(k) > MaxKeyBytes {
			return "", fmt.Errorf("key: longer than %d bytes", MaxKeyBytes)
		}
		return k, nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("key: expected string, but got %T", out)
}
