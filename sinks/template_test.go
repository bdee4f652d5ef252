package sinks

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// mrkdwn escapes the way the Slack sink does.
var mrkdwn = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

func templateData() map[string]any {
	return map[string]any{
		"event":      "bot.done",
		"channel":    "<!channel>",
		"mention":    "<@U1>",
		"link":       "<https://evil.example|Click>",
		"entity":     "&amp;",
		"n":          3.5,
		"ok":         true,
		"updated_at": time.Date(2025, 3, 19, 17, 44, 7, 0, time.UTC),
		"list":       []any{"<a>", "b"},
		"bot": map[string]any{
			"id":       "d9e9",
			"metadata": map[string]any{"name": "<!here> & co", "quote": "say \"hi\"\nbye"},
		},
	}
}

func render(t *testing.T, text string, opts ...TemplateOption) string {
	t.Helper()
	tmpl, err := ParseTemplate("t", text, opts...)
	if err != nil {
		t.Fatalf("ParseTemplate(%q): %v", text, err)
	}
	out, err := tmpl.Render(templateData())
	if err != nil {
		t.Fatalf("Render(%q): %v", text, err)
	}
	return out
}

func TestTemplateEscape(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{name: "channel ping", text: `{{ .channel }}`, want: "&lt;!channel&gt;"},
		{name: "mention", text: `{{ .mention }}`, want: "&lt;@U1&gt;"},
		{name: "link", text: `{{ .link }}`, want: "&lt;https://evil.example|Click&gt;"},
		{name: "entity shows as typed", text: `{{ .entity }}`, want: "&amp;amp;"},
		{name: "nested metadata", text: `{{ .bot.metadata.name }}`, want: "&lt;!here&gt; &amp; co"},
		{name: "literal text is the operator's", text: `<!here> <https://ops.example|runbook>: {{ .channel }}`, want: "<!here> <https://ops.example|runbook>: &lt;!channel&gt;"},
		{name: "raw opts out", text: `{{ raw .link }}`, want: "<https://evil.example|Click>"},
		{name: "raw of a piped value", text: `{{ .mention | raw }}`, want: "<@U1>"},
		{name: "raw then more is escaped", text: `{{ raw .mention | printf "%s!" }}`, want: "&lt;@U1&gt;!"},
		{name: "json", text: `{{ json .bot.metadata.name }}`, want: `"\u003c!here\u003e \u0026 co"`},
		{name: "truncate", text: `{{ truncate 5 .link }}`, want: "&lt;htt…"},
		{name: "printf", text: `{{ printf "%s/%s" .channel .mention }}`, want: "&lt;!channel&gt;/&lt;@U1&gt;"},
		{name: "constant", text: `{{ "<!everyone>" }}`, want: "&lt;!everyone&gt;"},
		{name: "if else", text: `{{ if .missing }}{{ .channel }}{{ else if .ok }}{{ .mention }}{{ else }}x{{ end }}`, want: "&lt;@U1&gt;"},
		{name: "range", text: `{{ range .list }}[{{ . }}]{{ end }}`, want: "[&lt;a&gt;][b]"},
		{name: "range else", text: `{{ range .missing }}x{{ else }}{{ .link }}{{ end }}`, want: "&lt;https://evil.example|Click&gt;"},
		{name: "with", text: `{{ with .bot.metadata }}{{ .name }}{{ end }}`, want: "&lt;!here&gt; &amp; co"},
		{name: "with else", text: `{{ with .missing }}x{{ else with .mention }}{{ . }}{{ end }}`, want: "&lt;@U1&gt;"},
		{name: "declaration prints nothing", text: `{{ $c := .channel }}{{ $c = .mention }}{{ $c }}`, want: "&lt;@U1&gt;"},
		{name: "define and template", text: `{{ define "m" }}<{{ .mention }}>{{ end }}{{ template "m" . }}`, want: "<&lt;@U1&gt;>"},
		{name: "block", text: `{{ block "b" . }}{{ .channel }}{{ end }}`, want: "&lt;!channel&gt;"},
		{name: "missing value", text: `[{{ .missing }}][{{ .bot.missing }}]`, want: "[][]"},
		{name: "number bool time", text: `{{ .n }} {{ .ok }} {{ .updated_at }}`, want: "3.5 true 2025-03-19 17:44:07 +0000 UTC"},
		{name: "map", text: `{{ .bot.metadata }}`, want: "map[name:&lt;!here&gt; &amp; co quote:say \"hi\"\nbye]"},
		{name: "comment", text: `{{/* <x> */}}a`, want: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(t, tt.text, Escape(mrkdwn)); got != tt.want {
				t.Errorf("render %q = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

// TestTemplateNoEscape checks that a template parsed without Escape prints
// values as they are, raw included.
func TestTemplateNoEscape(t *testing.T) {
	const text = `{{ .channel }} {{ raw .mention }} {{ .entity }} [{{ .missing }}] {{ json .bot.metadata.quote }}`
	want := `<!channel> <@U1> &amp; [] "say \"hi\"\nbye"`
	if got := render(t, text); got != want {
		t.Errorf("render = %q, want %q", got, want)
	}
}

// TestTemplateEscapeMatchesText checks that escaping with the identity
// changes nothing: the rewritten tree prints what text/template prints.
func TestTemplateEscapeMatchesText(t *testing.T) {
	for _, text := range []string{
		`{{ .event }} {{ .n }} {{ .ok }} {{ .updated_at }} {{ .bot }} {{ .list }} {{ .missing }} {{ . | len }}`,
		`{{ range $i, $v := .list }}{{ $i }}={{ $v }};{{ end }}{{ with $x := .bot.id }}{{ $x }}{{ end }}`,
		`{{ printf "%v|%q" .bot.metadata .event }}{{ index .list 1 }}{{ slice .event 1 3 }}`,
	} {
		plain := render(t, text)
		escaped := render(t, text, Escape(func(s string) string { return s }))
		if plain != escaped {
			t.Errorf("template %q:\nplain   %q\nescaped %q", text, plain, escaped)
		}
	}
}

func TestTemplateCannotCallEscaper(t *testing.T) {
	_, err := ParseTemplate("t", `{{ `+escapeFunc+` .x }}`, Escape(mrkdwn))
	if err == nil || !strings.HasPrefix(err.Error(), "invalid template: ") {
		t.Errorf("ParseTemplate = %v, want a parse error", err)
	}
}

func TestTemplateRenderErrorsArePermanent(t *testing.T) {
	tmpl, err := ParseTemplate("t", `{{ index .list 9 }}`, Escape(mrkdwn))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Render(templateData()); !IsPermanent(err) {
		t.Errorf("Render = %v, want a permanent error", err)
	}
}

// longNumber finds numbers big enough to make a fuzzed template run for
// long ({{ range 99999999 }}) or print a lot ({{ printf "%999999d" 1 }}).
var longNumber = regexp.MustCompile(`[0-9]{4}`)

// FuzzTemplateEscape parses and renders arbitrary templates over data
// holding an arbitrary value. Neither may panic; an escaped template
// whose own text has no < or > (and does not use raw) never prints one;
// escaping with the identity prints what text/template prints.
func FuzzTemplateEscape(f *testing.F) {
	for _, s := range []struct{ text, value string }{
		{`{{ .x }}`, "<!channel>"},
		{`hi {{ .m.k }} {{ json .m }}`, `<@U1> & "q"`},
		{`{{ range .l }}{{ . }}{{ end }}{{ with .x }}{{ . | printf "%q" }}{{ end }}`, "<https://x|y>"},
		{`{{ define "a" }}{{ .x }}{{ end }}{{ template "a" . }}{{ block "b" .m }}{{ .k }}{{ end }}`, "&amp;"},
		{`{{ $v := .x }}{{ if $v }}{{ $v }}{{ else }}-{{ end }}`, ">"},
		{`{{ raw .x }}`, "<b>"},
		{`{{ truncate 3 .x }}{{ .missing }}{{ . }}`, "<<<<"},
		{`{{ printf "%c" 60 }}`, ""},
	} {
		f.Add(s.text, s.value)
	}
	f.Fuzz(func(t *testing.T, text, value string) {
		if len(text) > 256 || strings.Count(text, "range") > 1 || longNumber.MatchString(text) {
			t.Skip("could run or print for long")
		}
		data := map[string]any{
			"x": value,
			"m": map[string]any{"k": value, value: "v"},
			"l": []any{value, 1.5, nil},
			"n": 42.0,
		}
		escaped, err := ParseTemplate("f", text, Escape(mrkdwn))
		if err != nil {
			return
		}
		out, err := escaped.Render(data)
		if err == nil && !strings.ContainsAny(text, "<>") && !strings.Contains(text, "raw") && strings.ContainsAny(out, "<>") {
			t.Errorf("template %q over %q printed %q", text, value, out)
		}

		if strings.ContainsAny(text+value, "<") {
			return // "<no value>" is printed, then removed, differently
		}
		plain, perr := ParseTemplate("f", text)
		identity, ierr := ParseTemplate("f", text, Escape(func(s string) string { return s }))
		if perr != nil || ierr != nil {
			t.Fatalf("parse: plain %v, identity %v", perr, ierr)
		}
		want, werr := plain.Render(data)
		got, gerr := identity.Render(data)
		if (werr == nil) != (gerr == nil) || got != want {
			t.Errorf("template %q over %q: identity-escaped %q (%v), text/template %q (%v)", text, value, got, gerr, want, werr)
		}
	})
}
