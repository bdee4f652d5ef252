package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
)

// Template is a parsed Go text/template over a Delivery's Data. Safe for
// concurrent use.
type Template struct {
	t *template.Template
}

// ParseTemplate parses text. Besides the standard functions, templates have
// json (encode a value as JSON) and truncate (cut a string to n runes, adding
// "…"). A parse error is a configuration error.
func ParseTemplate(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=zero").Funcs(template.FuncMap{
		"json":     toJSON,
		"truncate": truncate,
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("invalid template: %w", err)
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
