package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// Dry runs use a fixed Meta so that their output is deterministic.
const (
	// DryRunMsgID is the message id of every dry-run event.
	DryRunMsgID = "msg_dryrun"
)

// DryRunReceivedAt returns the receive time of every dry-run event,
// 2025-01-01T00:00:00Z.
func DryRunReceivedAt() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

// DryRunResult is what the relay would do with one event.
type DryRunResult struct {
	// Event is the body's event type ("" when it has none).
	Event string `json:"event"`
	// Rules are the matched rules, in rule order; never nil.
	Rules []string `json:"rules"`
	// RuleErrors are the rules that failed at run time (and so did not match).
	RuleErrors []DryRunError `json:"rule_errors,omitempty"`
	// Deliveries are the routed sinks, in the order the matched rules first
	// name them; never nil.
	Deliveries []DryRunDelivery `json:"deliveries"`
}

// DryRunDelivery is what one routed sink would send.
type DryRunDelivery struct {
	// Sink is the sink's name.
	Sink string `json:"sink"`
	// Type is the sink's config type ("slack", "http", "file", ...).
	Type string `json:"type"`
	// Rules are the rules that routed the event to this sink, in rule order.
	Rules []string `json:"rules"`
	// Preview is what the sink would send; nil when the sink cannot preview
	// or the preview failed.
	Preview *sinks.Preview `json:"preview,omitempty"`
	// Error says why the preview failed (a template error, say): the real
	// delivery would fail the same way.
	Error string `json:"error,omitempty"`
}

// DryRunError is a rule that failed at run time.
type DryRunError struct {
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// Error is the failure, with its 1-based (line:column) when known.
	Error string `json:"error"`
}

// BuildSinks builds every configured sink with reg, exactly as the server
// does. On error nothing stays open; otherwise closing the sinks is the
// caller's job.
func BuildSinks(cfg *Config, reg *sinks.Registry) (map[string]sinks.Sink, error) {
	return buildSinks(cfg, reg)
}

// CloseSinks closes every sink built by BuildSinks, ignoring errors.
func CloseSinks(built map[string]sinks.Sink) { closeSinks(built) }

// DryRun evaluates the config's rules over one event body and asks every
// routed sink for a preview. It sends nothing.
//
// The event is evaluated as if received on source (the first source in
// sorted order when source is ""), with message id DryRunMsgID at
// DryRunReceivedAt; each delivery is attempt 1 and carries the rules that
// routed it, as the server would build it. Rules that fail at run time are
// reported in RuleErrors; a failed preview in its delivery's Error; a sink
// that is not a sinks.Previewer gets neither Preview nor Error. DryRun
// returns an error only when body is not a JSON object or source is not
// configured.
func DryRun(cfg *Config, built map[string]sinks.Sink, source string, body []byte) (DryRunResult, error) {
	res := DryRunResult{Rules: []string{}, Deliveries: []DryRunDelivery{}}
	source, err := dryRunSource(cfg, source)
	if err != nil {
		return res, err
	}
	meta := rules.Meta{Source: source, MsgID: DryRunMsgID, ReceivedAt: DryRunReceivedAt()}
	env, err := rules.NewEnv(body, meta)
	if err != nil {
		return res, err
	}
	return dryRunEnv(cfg, built, env, body), nil
}

// dryRunEnv is DryRun for an event already decoded as env: the rules'
// result and each routed sink's preview.
func dryRunEnv(cfg *Config, built map[string]sinks.Sink, env *rules.Env, body []byte) DryRunResult {
	res := DryRunResult{Event: env.Event, Rules: []string{}, Deliveries: []DryRunDelivery{}}
	meta := rules.Meta{Source: env.Source, MsgID: env.MsgID, ReceivedAt: env.ReceivedAt}

	eval := cfg.RuleSet.Eval(env)
	res.Rules = append(res.Rules, eval.Rules...)
	for _, re := range eval.Errors {
		res.RuleErrors = append(res.RuleErrors, DryRunError{
			Rule:  re.Rule,
			Error: strings.TrimPrefix(re.Error(), fmt.Sprintf("rule %q: ", re.Rule)),
		})
	}

	// eval.Route is the route ingest stores with the event.
	route := eval.Route
	for _, name := range eval.Sinks {
		dd := DryRunDelivery{Sink: name, Type: cfg.Sinks[name].Type, Rules: route[name]}
		d := sinks.Delivery{
			MsgID:      meta.MsgID,
			Source:     meta.Source,
			Event:      env.Event,
			Rules:      route[name],
			Body:       body,
			Data:       env.Data(),
			ReceivedAt: meta.ReceivedAt,
			Attempt:    1,
		}
		switch sk, ok := built[name]; {
		case !ok:
			dd.Error = "sink not built"
		default:
			if pv, ok := sk.(sinks.Previewer); ok {
				p, err := pv.Preview(d)
				if err != nil {
					dd.Error = err.Error()
				} else {
					dd.Preview = &p
				}
			}
		}
		res.Deliveries = append(res.Deliveries, dd)
	}
	return res
}

// Failed reports whether the dry run found a problem: a rule that failed at
// run time or a delivery whose preview failed.
func (r DryRunResult) Failed() bool {
	if len(r.RuleErrors) > 0 {
		return true
	}
	for _, d := range r.Deliveries {
		if d.Error != "" {
			return true
		}
	}
	return false
}

// Sinks returns the names of the routed sinks, in delivery order.
func (r DryRunResult) Sinks() []string {
	out := make([]string, 0, len(r.Deliveries))
	for _, d := range r.Deliveries {
		out = append(out, d.Sink)
	}
	return out
}

// caseFile is the YAML schema of a routing test file.
type caseFile struct {
	Cases []caseSpec `yaml:"cases"`
}

// caseSpec is one routing test as written.
type caseSpec struct {
	Name   string         `yaml:"name"`
	Event  string         `yaml:"event"`
	Set    map[string]any `yaml:"set"`
	Source string         `yaml:"source"`
	// ExpectRules and ExpectSinks are nil when not checked; [] expects none.
	ExpectRules *[]string `yaml:"expect_rules"`
	ExpectSinks *[]string `yaml:"expect_sinks"`
	// Sequence, instead of Event, runs several events against a fake
	// clock (see sequence.go).
	Sequence []stepSpec `yaml:"sequence"`
}

// CaseReport is the outcome of a routing test file.
type CaseReport struct {
	// Cases holds every case's result, in file order.
	Cases []CaseResult `json:"cases"`
	// Passed and Failed count the cases.
	Passed int `json:"passed"`
	Failed int `json:"failed"`
}

// CaseResult is the outcome of one routing test.
type CaseResult struct {
	// Name is the case's name.
	Name string `json:"name"`
	// Event is the event file as written in the cases file.
	Event string `json:"event"`
	// Passed is true when Problems is empty.
	Passed bool `json:"passed"`
	// Rules and Sinks are what the event actually matched and reached.
	Rules []string `json:"rules"`
	Sinks []string `json:"sinks"`
	// Problems says why the case failed, one line each, for example
	// "rules: missing [a], unexpected [b]".
	Problems []string `json:"problems,omitempty"`
	// Steps are the results of a sequence's steps, in order (absent for a
	// single event).
	Steps []StepResult `json:"steps,omitempty"`
}

// RunCases runs the routing tests in the YAML file at casesPath against cfg
// and the sinks in built (see DryRun). The file holds a list of cases:
//
//	cases:
//	  - name: zoom captions failure pages on-call   # required, unique
//	    event: events/transcript.failed.json         # required; relative to the file
//	    set:                                         # optional overrides
//	      data.bot.metadata.customer_id: cus_vip     # dotted path: YAML value
//	    source: recall                               # optional
//	    expect_rules: [zoom-captions-failures]       # optional; exact, any order
//	    expect_sinks: [oncall-slack]                 # optional; exact, any order
//
// A case may instead give a sequence of events at offsets of a fake clock,
// with the stale and previous_status values and the missed events each step
// expects (see sequence.go and docs/reference.md).
//
// A case fails when its event cannot be read, decoded or overridden, when a
// rule fails at run time, when a routed sink's preview fails, or when the
// matched rules or reached sinks differ from the expected ones. Unknown keys
// are errors. RunCases returns an error only when the file cannot be read or
// is invalid; failing cases are reported in the CaseReport.
func RunCases(cfg *Config, built map[string]sinks.Sink, casesPath string) (CaseReport, error) {
	specs, err := readCases(casesPath)
	if err != nil {
		return CaseReport{}, err
	}
	report := CaseReport{Cases: make([]CaseResult, 0, len(specs))}
	dir := filepath.Dir(casesPath)
	for _, c := range specs {
		r := runCase(cfg, built, dir, c)
		if r.Passed {
			report.Passed++
		} else {
			report.Failed++
		}
		report.Cases = append(report.Cases, r)
	}
	return report, nil
}

// unknownField rewrites yaml.v3's "field x not found in type relay.caseSpec".
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// readCases reads and validates a routing test file.
func readCases(path string) ([]caseSpec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cases: %w", err)
	}
	var cf caseFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		msg := unknownField.ReplaceAllString(err.Error(), "unknown key $1")
		return nil, fmt.Errorf("cases %s: %s", path, msg)
	}
	var errs []error
	if len(cf.Cases) == 0 {
		errs = append(errs, errors.New("cases: at least one case required"))
	}
	firstAt := make(map[string]int)
	for i, c := range cf.Cases {
		p := fmt.Sprintf("cases[%d]", i)
		if strings.TrimSpace(c.Name) == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", p))
		} else if j, dup := firstAt[c.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: duplicate case name %q (first at cases[%d])", p, c.Name, j))
		} else {
			firstAt[c.Name] = i
		}
		switch {
		case len(c.Sequence) > 0:
			errs = append(errs, checkSequence(p, c)...)
		case strings.TrimSpace(c.Event) == "":
			errs = append(errs, fmt.Errorf("%s.event: required", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cases %s: %w", path, err)
	}
	return cf.Cases, nil
}

// runCase runs one routing test; dir is the cases file's directory.
func runCase(cfg *Config, built map[string]sinks.Sink, dir string, c caseSpec) CaseResult {
	if len(c.Sequence) > 0 {
		return runSequence(cfg, built, dir, c)
	}
	r := CaseResult{Name: c.Name, Event: c.Event, Rules: []string{}, Sinks: []string{}}
	fail := func(format string, args ...any) CaseResult {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
		return r
	}
	body, problem := readCaseEvent(dir, c.Event, c.Set)
	if problem != "" {
		return fail("%s", problem)
	}
	res, err := DryRun(cfg, built, c.Source, body)
	if err != nil {
		return fail("event: %v", err)
	}
	r.Rules, r.Sinks = res.Rules, res.Sinks()
	r.Problems = append(r.Problems, resultProblems(res, c.ExpectRules, c.ExpectSinks)...)
	r.Passed = len(r.Problems) == 0
	return r
}

// readCaseEvent reads a case's event file (relative to dir) and applies its
// overrides; problem says what failed.
func readCaseEvent(dir, path string, set map[string]any) (body []byte, problem string) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Sprintf("event: %v", err)
	}
	if len(set) > 0 {
		if body, err = applyOverrides(body, set); err != nil {
			return nil, fmt.Sprintf("set: %v", err)
		}
	}
	return body, ""
}

// setDiff compares want and got as sets: "missing [a, b], unexpected [c]",
// or "" when they are equal. Missing names keep want's order, unexpected
// ones got's.
func setDiff(want, got []string) string {
	var missing, unexpected []string
	for _, w := range want {
		if !slices.Contains(got, w) && !slices.Contains(missing, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) && !slices.Contains(unexpected, g) {
			unexpected = append(unexpected, g)
		}
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing ["+strings.Join(missing, ", ")+"]")
	}
	if len(unexpected) > 0 {
		parts = append(parts, "unexpected ["+strings.Join(unexpected, ", ")+"]")
	}
	return strings.Join(parts, ", ")
}

// applyOverrides sets each dotted path of set in the JSON object body to its
// value and re-encodes the body. Missing objects along a path are created;
// a numeric segment indexes an array. Paths are applied in sorted order.
func applyOverrides(body []byte, set map[string]any) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep numbers as written
	var root map[string]any
	if err := dec.Decode(&root); err != nil || root == nil {
		return nil, errors.New("event is not a JSON object")
	}
	for _, path := range slices.Sorted(maps.Keys(set)) {
		if err := setPath(root, path, set[path]); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return out, nil
}

// setPath sets the dotted path in root to v.
func setPath(root map[string]any, path string, v any) error {
	segs := strings.Split(path, ".")
	var cur any = root
	for i, seg := range segs {
		if seg == "" {
			return errors.New("empty path segment")
		}
		last := i == len(segs)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[seg] = v
				return nil
			}
			next, ok := c[seg]
			if !ok || next == nil {
				next = map[string]any{}
				c[seg] = next
			}
			cur = next
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(c) {
				return fmt.Errorf("%s: no such array index", strings.Join(segs[:i+1], "."))
			}
			if last {
				c[n] = v
				return nil
			}
			cur = c[n]
		default:
			return fmt.Errorf("%s: not an object", strings.Join(segs[:i], "."))
		}
	}
	return nil
}
