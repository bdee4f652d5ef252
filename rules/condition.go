package rules

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Condition is a compiled boolean expression over an environment type the
// caller chooses: a search filter ("where") rather than a routing rule. It
// is immutable and safe for concurrent use.
type Condition struct {
	program *vm.Program
	vms     sync.Pool // *vm.VM
}

// CompileCondition compiles src as a boolean expression over env, a value
// of the struct type the condition will be evaluated on (Env, or a struct
// embedding Env and adding names of its own), type-checked as rules are:
// expr.Compile(src, expr.Env(env), expr.AsBool()). A compile error is
// expr's message on one line followed by its 1-based " (line:column)",
// (1:1) when expr gives no position, as Compile reports a rule's when.
// An empty src is an error.
func CompileCondition(src string, env any) (c *Condition, err error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("compiler panic: %v", r)
		}
	}()
	p, err := expr.Compile(src, expr.Env(env), expr.AsBool())
	if err != nil {
		return nil, errors.New(describe(err, true))
	}
	return &Condition{program: p}, nil
}

// Match evaluates the condition over env, which must be of the type it was
// compiled for (a pointer to it works too). A run-time error, a panic or a
// non-boolean result is returned as an error and counts as not matched.
// A nil Condition matches everything.
func (c *Condition) Match(env any) (bool, error) {
	if c == nil {
		return true, nil
	}
	machine, _ := c.vms.Get().(*vm.VM)
	if machine == nil {
		machine = &vm.VM{}
	}
	ok, err := runAny(machine, c.program, env)
	if err == nil {
		c.vms.Put(machine) // a VM is reused only after a clean run
	}
	return ok, err
}

// runAny is run for an environment of any type.
func runAny(machine *vm.VM, program *vm.Program, env any) (matched bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			matched, err = false, fmt.Errorf("panic: %v", r)
		}
	}()
	out, err := machine.Run(program, env)
	if err != nil {
		return false, errors.New(describe(err, false))
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("%w, but got %T", errNotBool, out)
	}
	return b, nil
}
