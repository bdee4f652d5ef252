package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
)

// Template is a parsed Go text/template over a Delivery's Data. Safe for
// concurrent use.
type Template struct {
	t *template.Template
}

// A TemplateOption changes how ParseTemplate builds a Template.
type TemplateOption func(*templateConfig)

type templateConfig struct {
	escape func(string) string
}

// Escape makes every value an action of the template prints pass through
// escape, the way html/template escapes for HTML: the template's own text is
// written as it is, and `{{ raw .x }}` opts a value out. A sink whose
// destination gives some characters a meaning (Slack's mrkdwn) uses it so
// that event data cannot inject markup.
func Escape(escape func(string) string) TemplateOption {
	return func(c *templateConfig) { c.escape = escape }
}

// escapeFunc names the function Escape appends to every printing action.
// It is added to the template after parsing, so a template cannot call it.
const escapeFunc = "_relay_escape"

// ParseTemplate parses text. Besides the standard functions, templates have
// json (encode a value as JSON), truncate (cut a string to n runes, adding
// "…") and raw (with Escape, print a value unescaped; it must end its
// action; without Escape it changes nothing). A parse error is a
// configuration error.
func ParseTemplate(name, text string, opts ...TemplateOption) (*Template, error) {
	var c templateConfig
	for _, o := range opts {
		o(&c)
	}
	t, err := template.New(name).Option("missingkey=zero").Funcs(template.FuncMap{
		"json":     toJSON,
		"truncate": truncate,
		"raw":      raw,
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("invalid template: %w", err)
	}
	if c.escape != nil {
		t.Funcs(template.FuncMap{escapeFunc: escaper(c.escape)})
		seen := make(map[*parse.Tree]bool)
		for _, tt := range t.Templates() {
			if tt.Tree != nil && !seen[tt.Tree] {
				seen[tt.Tree] = true
				escapeNode(tt.Tree.Root)
			}
		}
	}
	return &Template{t: t}, nil
}

// Render executes the template over data. Its errors are permanent: the same
// data would fail again.
func (t *Template) Render(data map[string]any) (string, error) {
	var b bytes.Buffer
	if err := t.t.Execute(&b, data); err != nil {
		return "", Permanent(fmt.Errorf("render template: %w", err))
	}
	return strings.ReplaceAll(b.String(), "<no value>", ""), nil
}

// escapeNode appends the escaper to every action under n that prints its
// value. Conditions of if, range and with print nothing; neither do actions
// that declare or assign variables. Template invocations print through the
// invoked template's own actions, which ParseTemplate escapes separately.
func escapeNode(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			escapeNode(c)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 {
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand,
				Pos:      n.Pos,
				Args:     []parse.Node{parse.NewIdentifier(escapeFunc).SetPos(n.Pos)},
			})
		}
	case *parse.IfNode:
		escapeNode(n.List)
		escapeNode(n.ElseList)
	case *parse.RangeNode:
		escapeNode(n.List)
		escapeNode(n.ElseList)
	case *parse.WithNode:
		escapeNode(n.List)
		escapeNode(n.ElseList)
	}
}

// rawText is a value that raw exempted from escaping.
type rawText string

// raw marks v as text to print unescaped.
func raw(v any) (rawText, error) {
	s, err := printable(v)
	return rawText(s), err
}

// escaper returns the function appended to printing actions: it prints v as
// text/template would, then escapes the result unless raw made v.
func escaper(escape func(string) string) func(any) (string, error) {
	return func(v any) (string, error) {
		switch v := v.(type) {
		case rawText:
			return string(v), nil
		case string:
			return escape(v), nil
		}
		s, err := printable(v)
		return escape(s), err
	}
}

var (
	errorType    = reflect.TypeFor[error]()
	stringerType = reflect.TypeFor[fmt.Stringer]()
)

// printable formats v the way a text/template action prints it, except
// that a missing value gives "" where text/template prints "<no value>"
// (which Render removes anyway).
func printable(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		return "", nil
	}
	if !rv.Type().Implements(errorType) && !rv.Type().Implements(stringerType) {
		switch rv.Kind() {
		case reflect.Chan, reflect.Func:
			return "", fmt.Errorf("can't print value of type %s", rv.Type())
		}
	}
	return fmt.Sprint(rv.Interface()), nil
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// truncate cuts s to at most n runes, ending with "…" when it cut.
func truncate(n int, s string) string {
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n == 1 {
		return "…"
	}
	return string(r[:n-1]) + "…"
}
