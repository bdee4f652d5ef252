package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relay-dev/relay/relay"
	"github.com/relay-dev/relay/sinks"
)

// testCommand is `relay test`: a dry run of event files through the rules
// and sinks (nothing is sent), or routing unit tests with --cases.
//
// Exit codes: 0 all good; 1 a rule failed at run time, a preview failed, an
// event file is unreadable or not a JSON object, a case failed, or the
// config or cases file is invalid; 2 usage.
func testCommand() *cobra.Command {
	var (
		configPath string
		casesPath  string
		source     string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "test [-c FILE] [--json] [--source NAME] EVENT.json... | --cases CASES.yaml",
		Short: "Dry-run events through the rules and sinks, or run routing tests; sends nothing",
		Long: `Dry-run event files through the rules and sinks: for each event, the rules
it matches and what each routed sink would send (Slack message, HTTP
request, file line). Nothing is sent.

With --cases, run routing tests instead: each case names an event file
(relative to the cases file) with optional overrides, and the rules and
sinks it must reach.

Dry runs use a fixed message id (` + relay.DryRunMsgID + `) and receive time
(` + relay.DryRunReceivedAt().Format("2006-01-02T15:04:05Z07:00") + `) so that their output is stable.`,
		Example: `  relay test -c relay.yaml events/transcript.failed.json
  relay test --json events/*.json
  relay test -c relay.yaml --cases rules_test.yaml`,
		RunE: func(cmd *cobra.Command, files []string) error {
			switch {
			case casesPath == "" && len(files) == 0:
				return usageErr("test needs event files or --cases FILE")
			case casesPath != "" && len(files) > 0:
				return usageErr("test takes event files or --cases FILE, not both")
			case casesPath != "" && source != "":
				return usageErr("--source: not with --cases (set source per case)")
			}
			if configPath == "" {
				configPath = defaultConfigPath()
			}

			reg := registry(nil)
			cfg, err := relay.LoadConfig(configPath, relay.LoadOptions{Registry: reg})
			if err != nil {
				printProblems(cmd.ErrOrStderr(), err)
				return errFailed
			}
			if _, ok := cfg.Sources[source]; source != "" && !ok {
				return usageErr("--source: unknown source %q (configured: %s)", source, strings.Join(slices.Sorted(maps.Keys(cfg.Sources)), ", "))
			}
			built, err := relay.BuildSinks(cfg, reg)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			defer relay.CloseSinks(built)

			if casesPath != "" {
				return runCases(cmd.OutOrStdout(), cfg, built, casesPath, asJSON)
			}
			return runDryRun(cmd.OutOrStdout(), cfg, built, source, files, asJSON)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "config file (default: relay.yaml, else configs/relay.yaml)")
	cmd.Flags().StringVar(&casesPath, "cases", "", "run the routing tests in this YAML file")
	cmd.Flags().StringVar(&source, "source", "", "evaluate events as received on this source (default: the first, sorted by name)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// fileResult is one event file's dry run in --json output: result, or
// error when the file could not be read or is not a JSON object.
type fileResult struct {
	File   string              `json:"file"`
	Result *relay.DryRunResult `json:"result,omitempty"`
	Error  string              `json:"error,omitempty"`
}

// runDryRun dry-runs every file and prints the results; it fails (exit 1)
// when any file is unreadable or not a JSON object, a rule fails at run time
// or a preview fails. Every file is processed either way.
func runDryRun(w io.Writer, cfg *relay.Config, built map[string]sinks.Sink, source string, files []string, asJSON bool) error {
	out := make([]fileResult, 0, len(files))
	failed := false
	for _, f := range files {
		fr := fileResult{File: f}
		body, err := os.ReadFile(f)
		if err == nil {
			var res relay.DryRunResult
			if res, err = relay.DryRun(cfg, built, source, body); err == nil {
				fr.Result = &res
				failed = failed || res.Failed()
			}
		}
		if err != nil {
			fr.Error = err.Error()
			failed = true
		}
		out = append(out, fr)
	}
	if asJSON {
		if err := writeJSON(w, out); err != nil {
			return err
		}
	} else {
		for i, fr := range out {
			if i > 0 {
				fmt.Fprintln(w)
			}
			writeFileResult(w, fr)
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// runCases runs the routing tests and prints each failing case with its
// problems, then a summary line; it fails (exit 1) when any case fails.
func runCases(w io.Writer, cfg *relay.Config, built map[string]sinks.Sink, casesPath string, asJSON bool) error {
	report, err := relay.RunCases(cfg, built, casesPath)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if asJSON {
		if err := writeJSON(w, report); err != nil {
			return err
		}
	} else {
		for _, c := range report.Cases {
			if c.Passed {
				continue
			}
			fmt.Fprintf(w, "FAIL %s (%s)\n", c.Name, c.Event)
			for _, p := range c.Problems {
				fmt.Fprintf(w, "  %s\n", p)
			}
		}
		fmt.Fprintf(w, "%d passed, %d failed\n", report.Passed, report.Failed)
	}
	if report.Failed > 0 {
		return errFailed
	}
	return nil
}

// writeFileResult prints one event file's dry run as text:
//
//	== events/transcript.failed.json
//	event: transcript.failed
//	rules: zoom-captions-failures, archive-everything
//	-> oncall-slack (slack) via zoom-captions-failures
//	   POST https://hooks.slack.com/[redacted]
//	   ...
func writeFileResult(w io.Writer, fr fileResult) {
	fmt.Fprintf(w, "== %s\n", fr.File)
	if fr.Result == nil {
		fmt.Fprintf(w, "error: %s\n", fr.Error)
		return
	}
	res := fr.Result
	fmt.Fprintf(w, "event: %s\n", orNone(res.Event))
	fmt.Fprintf(w, "rules: %s\n", orNone(strings.Join(res.Rules, ", ")))
	for _, re := range res.RuleErrors {
		fmt.Fprintf(w, "rule error: %s: %s\n", re.Rule, re.Error)
	}
	for _, d := range res.Deliveries {
		fmt.Fprintf(w, "-> %s (%s) via %s\n", d.Sink, d.Type, strings.Join(d.Rules, ", "))
		switch {
		case d.Error != "":
			writeIndented(w, "error: "+d.Error)
		case d.Preview == nil:
			writeIndented(w, "(this sink type cannot show a preview)")
		default:
			writeIndented(w, renderPreview(*d.Preview))
		}
	}
}

// renderPreview renders a preview like an HTTP message: the request line,
// the headers sorted by name, a blank line and the body. A Slack message
// is shown as indented JSON; other bodies exactly as they would be sent.
func renderPreview(p sinks.Preview) string {
	var b strings.Builder
	if p.Request != "" {
		b.WriteString(p.Request + "\n")
	}
	for _, k := range slices.Sorted(maps.Keys(p.Headers)) {
		fmt.Fprintf(&b, "%s: %s\n", k, p.Headers[k])
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	body := p.Body
	if p.Kind == "slack" {
		var ind bytes.Buffer
		if json.Indent(&ind, []byte(body), "", "  ") == nil {
			body = ind.String()
		}
	}
	b.WriteString(body)
	for _, then := range p.Then {
		b.WriteString("\n\n" + renderPreview(then))
	}
	return b.String()
}

// writeIndented prints text indented by three spaces, without trailing
// whitespace on blank lines, ending with exactly one newline.
func writeIndented(w io.Writer, text string) {
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(w, "   %s\n", strings.TrimRight(line, " \t\r"))
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("encode json: %w", err)}
	}
	return nil
}
