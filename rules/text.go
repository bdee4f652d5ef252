package rules

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// CompileString compiles an expr-lang expression over template data (the
// map Env.Data returns: every name a rule sees, plus sub_code_reason and
// sub_code_severity) whose result is a string, e.g. `recording.id` or
// `sub_code + "/" + source`. It returns a function that evaluates it on one
// event's data; that function is safe for concurrent use and reports a
// result that is not a string as an error.
//
// Errors are one line ending in the 1-based (line:column) of the fault, as
// Compile reports them.
func CompileString(src string) (func(data map[string]any) (string, error), error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("required")
	}
	program, err := compileString(src)
	if err != nil {
		return nil, errors.New(describe(err, true))
	}
	return func(data map[string]any) (string, error) {
		out, err := vm.Run(program, data)
		if err != nil {
			return "", errors.New(describe(err, false))
		}
		s, ok := out.(string)
		if !ok {
			return "", fmt.Errorf("expected string, but got %T", out)
		}
		return s, nil
	}, nil
}

// compileString compiles one string expression against the shape of
// Env.Data, turning a compiler panic into an error.
func compileString(src string) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compiler panic: %v", r)
		}
	}()
	return expr.Compile(src, expr.Env((&Env{}).Data()), expr.AsKind(reflect.String))
}
