package relay

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// A routing test may be a sequence of events at offsets of a fake clock
// that starts at DryRunReceivedAt: the relay's order awareness (stale,
// previous_status) and expectation timers run over it as they would in
// serve, without a clock being waited on. Before each step's event, the
// timers whose deadline is at or before the step's offset run out, in
// deadline order, each as a missed event at its deadline.
//
//	cases:
//	  - name: transcript never arrives
//	    sequence:
//	      - at: 0s
//	        event: events/recording.done.json
//	      - at: 31m                  # no event: the clock moves on
//	        expect_missed:
//	          - expectation: transcript-arrives
//	            expect_sinks: [oncall-slack]

// stepSpec is one step of a sequence as written.
type stepSpec struct {
	At     caseDuration   `yaml:"at"`
	Event  string         `yaml:"event"`
	Set    map[string]any `yaml:"set"`
	Source string         `yaml:"source"`
	// Each expectation is checked only when given.
	ExpectRules          *[]string     `yaml:"expect_rules"`
	ExpectSinks          *[]string     `yaml:"expect_sinks"`
	ExpectStale          *bool         `yaml:"expect_stale"`
	ExpectPreviousStatus *string       `yaml:"expect_previous_status"`
	ExpectMissed         *[]missedSpec `yaml:"expect_missed"`
}

// missedSpec is one missed event a step expects.
type missedSpec struct {
	Expectation string    `yaml:"expectation"`
	Key         *string   `yaml:"key"`
	ExpectRules *[]string `yaml:"expect_rules"`
	ExpectSinks *[]string `yaml:"expect_sinks"`
}

// caseDuration is a Go duration written as a string ("31m").
type caseDuration time.Duration

// UnmarshalYAML reads a duration such as 0s or 31m.
func (d *caseDuration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid offset %q (want a duration such as 0s or 31m)", n.Line, n.Value)
	}
	*d = caseDuration(v)
	return nil
}

// StepResult is the outcome of one step of a sequence.
type StepResult struct {
	// At is the step's offset, as a Go duration.
	At string `json:"at"`
	// Missed are the missed events of the timers that ran out before the
	// step's event, in deadline order.
	Missed []MissedResult `json:"missed"`
	// Event is the step's event file, "" for a step that only moves the
	// clock; the rest describes that event.
	Event          string   `json:"event,omitempty"`
	Type           string   `json:"type,omitempty"`
	Rules          []string `json:"rules"`
	Sinks          []string `json:"sinks"`
	Stale          bool     `json:"stale"`
	PreviousStatus string   `json:"previous_status"`
}

// MissedResult is one missed event of a sequence.
type MissedResult struct {
	Expectation string   `json:"expectation"`
	Key         string   `json:"key"`
	Deadline    string   `json:"deadline"`
	Rules       []string `json:"rules"`
	Sinks       []string `json:"sinks"`
}

// checkSequence validates the steps of case c (at config path p).
func checkSequence(p string, c caseSpec) []error {
	var errs []error
	if c.Event != "" || c.Set != nil || c.Source != "" || c.ExpectRules != nil || c.ExpectSinks != nil {
		errs = append(errs, fmt.Errorf("%s: event, set, source, expect_rules and expect_sinks go in the steps of a sequence", p))
	}
	for i, st := range c.Sequence {
		sp := fmt.Sprintf("%s.sequence[%d]", p, i)
		if i > 0 && st.At < c.Sequence[i-1].At {
			errs = append(errs, fmt.Errorf("%s.at: before the previous step", sp))
		}
		if st.Event == "" && (st.Set != nil || st.Source != "" || st.ExpectRules != nil || st.ExpectSinks != nil ||
			st.ExpectStale != nil || st.ExpectPreviousStatus != nil) {
			errs = append(errs, fmt.Errorf("%s: a step without event only moves the clock (and may have expect_missed)", sp))
		}
		if st.ExpectMissed != nil {
			for j, m := range *st.ExpectMissed {
				if strings.TrimSpace(m.Expectation) == "" {
					errs = append(errs, fmt.Errorf("%s.expect_missed[%d].expectation: required", sp, j))
				}
			}
		}
	}
	return errs
}

// openTimer is a timer of a sequence's fake clock.
type openTimer struct {
	rec   timerRecord
	order int // start order, to break deadline ties
}

// sequenceRun is the state of one sequence: the fake clock's timers and
// the objects' state.
type sequenceRun struct {
	cfg     *Config
	built   map[string]sinks.Sink
	dir     string
	objects *objects
	timers  map[string]openTimer // by timerSubjectOf(name, key)
	started int
	now     time.Time
}

// runSequence runs a sequence case; see the comment at the top of the file.
func runSequence(cfg *Config, built map[string]sinks.Sink, dir string, c caseSpec) CaseResult {
	r := CaseResult{Name: c.Name, Event: fmt.Sprintf("sequence of %d steps", len(c.Sequence)), Rules: []string{}, Sinks: []string{}}
	run := &sequenceRun{cfg: cfg, built: built, dir: dir, timers: make(map[string]openTimer), now: DryRunReceivedAt()}
	run.objects = newObjects(nil, nil, objectHistory(cfg.Storage), func() time.Time { return run.now }, slog.New(slog.DiscardHandler))
	for i, st := range c.Sequence {
		sr, problems := run.step(i, st)
		for _, pr := range problems {
			r.Problems = append(r.Problems, fmt.Sprintf("step %d (at %s): %s", i+1, time.Duration(st.At), pr))
		}
		r.Steps = append(r.Steps, sr)
	}
	r.Passed = len(r.Problems) == 0
	return r
}

// step moves the clock to the step's offset, runs out the timers due, then
// evaluates the step's event; it returns the step's result and problems.
func (run *sequenceRun) step(i int, st stepSpec) (StepResult, []string) {
	at := DryRunReceivedAt().Add(time.Duration(st.At))
	sr := StepResult{At: time.Duration(st.At).String(), Missed: []MissedResult{}, Event: st.Event, Rules: []string{}, Sinks: []string{}}
	var problems []string
	for _, t := range run.due(at) {
		m, probs := run.fire(t)
		sr.Missed = append(sr.Missed, m)
		problems = append(problems, probs...)
	}
	run.now = at
	if st.ExpectMissed != nil {
		problems = append(problems, checkMissed(*st.ExpectMissed, sr.Missed)...)
	}
	if st.Event == "" {
		return sr, problems
	}
	body, problem := readCaseEvent(run.dir, st.Event, st.Set)
	if problem != "" {
		return sr, append(problems, problem)
	}
	source, err := dryRunSource(run.cfg, st.Source)
	if err != nil {
		return sr, append(problems, "event: "+err.Error())
	}
	msgID := DryRunMsgID + "_" + strconv.Itoa(i+1)
	env, err := rules.NewEnv(body, rules.Meta{Source: source, MsgID: msgID, ReceivedAt: at})
	if err != nil {
		return sr, append(problems, "event: "+err.Error())
	}
	track := run.objects.annotate(context.Background(), env)
	res := dryRunEnv(run.cfg, run.built, env, body)
	run.objects.record(track)
	run.observe(env, Event{Source: source, MsgID: msgID, Body: body, ReceivedAt: at})

	sr.Type, sr.Rules, sr.Sinks = res.Event, res.Rules, res.Sinks()
	sr.Stale, sr.PreviousStatus = env.Stale, env.PreviousStatus
	problems = append(problems, resultProblems(res, st.ExpectRules, st.ExpectSinks)...)
	if st.ExpectStale != nil && *st.ExpectStale != env.Stale {
		problems = append(problems, fmt.Sprintf("stale: got %v, want %v", env.Stale, *st.ExpectStale))
	}
	if st.ExpectPreviousStatus != nil && *st.ExpectPreviousStatus != env.PreviousStatus {
		problems = append(problems, fmt.Sprintf("previous_status: got %q, want %q", env.PreviousStatus, *st.ExpectPreviousStatus))
	}
	return sr, problems
}

// dryRunSource is the source a dry run evaluates on: name, or the first
// configured source by name.
func dryRunSource(cfg *Config, name string) (string, error) {
	if name == "" {
		if names := slices.Sorted(maps.Keys(cfg.Sources)); len(names) > 0 {
			return names[0], nil
		}
		return "", nil
	}
	if _, ok := cfg.Sources[name]; !ok {
		return "", fmt.Errorf("unknown source %q", name)
	}
	return name, nil
}

// observe starts and settles the fake clock's timers for an event, as
// timers.observe does for a stored one.
func (run *sequenceRun) observe(env *rules.Env, ev Event) {
	hits, _ := run.cfg.ExpectSet.Observe(env)
	for _, hit := range hits {
		subj := timerSubjectOf(hit.Expectation, hit.Key)
		if !hit.Start {
			delete(run.timers, subj)
			continue
		}
		run.started++
		run.timers[subj] = openTimer{order: run.started, rec: timerRecord{
			Expectation: hit.Expectation, Key: hit.Key, Deadline: hit.Deadline.UTC(),
			Source: ev.Source, MsgID: ev.MsgID, After: ev.Body,
		}}
	}
}

// due removes and returns the timers whose deadline is at or before at,
// in deadline order.
func (run *sequenceRun) due(at time.Time) []openTimer {
	var out []openTimer
	for subj, t := range run.timers {
		if !t.rec.Deadline.After(at) {
			out = append(out, t)
			delete(run.timers, subj)
		}
	}
	slices.SortFunc(out, func(a, b openTimer) int {
		return cmp.Or(a.rec.Deadline.Compare(b.rec.Deadline), cmp.Compare(a.order, b.order))
	})
	return out
}

// fire runs one timer out at its deadline: its missed event through the
// rules and the routed sinks' previews.
func (run *sequenceRun) fire(t openTimer) (MissedResult, []string) {
	rec := t.rec
	m := MissedResult{Expectation: rec.Expectation, Key: rec.Key, Deadline: rec.Deadline.Format(time.RFC3339Nano), Rules: []string{}, Sinks: []string{}}
	run.now = rec.Deadline
	body, err := rules.NewMissed(rec.Expectation, rec.Key, rec.Deadline, rec.After).Body()
	if err != nil {
		return m, []string{err.Error()}
	}
	env, err := rules.NewMissedEnv(body, rules.Meta{Source: rec.Source, MsgID: rules.MissedID(rec.Expectation, rec.Key, rec.MsgID), ReceivedAt: rec.Deadline})
	if err != nil {
		return m, []string{err.Error()}
	}
	res := dryRunEnv(run.cfg, run.built, env, body)
	m.Rules, m.Sinks = res.Rules, res.Sinks()
	var problems []string
	for _, p := range resultProblems(res, nil, nil) {
		problems = append(problems, fmt.Sprintf("missed %s (%s): %s", rec.Expectation, rec.Key, p))
	}
	return m, problems
}

// checkMissed compares the missed events of a step with the expected ones,
// in order.
func checkMissed(want []missedSpec, got []MissedResult) []string {
	var problems []string
	if len(want) != len(got) {
		names := make([]string, len(got))
		for i, m := range got {
			names[i] = m.Expectation + " (" + m.Key + ")"
		}
		return []string{fmt.Sprintf("missed: got %d [%s], want %d", len(got), strings.Join(names, ", "), len(want))}
	}
	for i, w := range want {
		g := got[i]
		if w.Expectation != g.Expectation || (w.Key != nil && *w.Key != g.Key) {
			problems = append(problems, fmt.Sprintf("missed[%d]: got %s (%s), want %s", i, g.Expectation, g.Key, w.Expectation))
			continue
		}
		if w.ExpectRules != nil {
			if d := setDiff(*w.ExpectRules, g.Rules); d != "" {
				problems = append(problems, fmt.Sprintf("missed[%d] rules: %s", i, d))
			}
		}
		if w.ExpectSinks != nil {
			if d := setDiff(*w.ExpectSinks, g.Sinks); d != "" {
				problems = append(problems, fmt.Sprintf("missed[%d] sinks: %s", i, d))
			}
		}
	}
	return problems
}

// resultProblems lists what is wrong with one dry run: rules that failed,
// previews that failed, and the matched rules or reached sinks when they
// differ from the expected ones (when given).
func resultProblems(res DryRunResult, expectRules, expectSinks *[]string) []string {
	var problems []string
	for _, re := range res.RuleErrors {
		problems = append(problems, fmt.Sprintf("rule error: %s: %s", re.Rule, re.Error))
	}
	if expectRules != nil {
		if d := setDiff(*expectRules, res.Rules); d != "" {
			problems = append(problems, "rules: "+d)
		}
	}
	if expectSinks != nil {
		if d := setDiff(*expectSinks, res.Sinks()); d != "" {
			problems = append(problems, "sinks: "+d)
		}
	}
	for _, d := range res.Deliveries {
		if d.Error != "" {
			problems = append(problems, fmt.Sprintf("sink %s: preview failed: %s", d.Sink, d.Error))
		}
	}
	return problems
}
