package relay

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"

	"github.com/relay-dev/relay/rules"
)

// BacktestRule is one rule of a candidate config, as the backtest route
// takes it.
type BacktestRule struct {
	Name  string   `json:"name"`
	When  string   `json:"when"`
	Sinks []string `json:"sinks"`
	Stop  bool     `json:"stop,omitempty"`
}

// BacktestRequest is the body of POST /api/v1/backtest: the candidate's
// rules.
type BacktestRequest struct {
	Rules []BacktestRule `json:"rules"`
}

// BacktestRules turns a config's rules into a backtest request's.
func BacktestRules(specs []rules.Spec) []BacktestRule {
	out := make([]BacktestRule, len(specs))
	for i, sp := range specs {
		out[i] = BacktestRule{Name: sp.Name, When: sp.When, Sinks: sp.Sinks, Stop: sp.Stop}
	}
	return out
}

// BacktestCount compares, for one rule or one sink, how many stored events
// it had before (as stored: what the relay routed when it accepted them)
// and after (as the candidate would route them).
type BacktestCount struct {
	Before int `json:"before"`
	After  int `json:"after"`
	// Gained and Lost are example ids (up to backtestExamples each) of
	// events the candidate adds to the rule or sink and takes away from it.
	Gained []uint64 `json:"gained"`
	Lost   []uint64 `json:"lost"`
}

// Changed reports whether anything differs for the rule or sink.
func (c BacktestCount) Changed() bool { return len(c.Gained) > 0 || len(c.Lost) > 0 }

// BacktestReport is the answer of a backtest.
type BacktestReport struct {
	// Events is the number of stored events compared; Changed how many of
	// them the candidate routes differently (other sinks, or the same sinks
	// for other rules).
	Events  int `json:"events"`
	Changed int `json:"changed"`
	// Examples are ids of changed events, up to backtestExamples.
	Examples []uint64 `json:"examples"`
	// Rules and Sinks hold every rule and sink of either side.
	Rules map[string]*BacktestCount `json:"rules"`
	Sinks map[string]*BacktestCount `json:"sinks"`
	// RuleErrors counts, per candidate rule, the events on which it failed
	// at run time (counted as not matched).
	RuleErrors map[string]int `json:"rule_errors,omitempty"`
}

// backtestExamples bounds the example ids of each difference.
const backtestExamples = 5

// backtest evaluates set over every stored event q selects and compares its
// routing with the stored one.
func (s *jsStore) backtest(ctx context.Context, q eventQuery, set *rules.Set) (*BacktestReport, error) {
	rep := &BacktestReport{Examples: []uint64{}, Rules: map[string]*BacktestCount{}, Sinks: map[string]*BacktestCount{}}
	err := s.eachEvent(ctx, q, func(e StoredEvent) error {
		env, err := rules.NewEnv(e.body, rules.Meta{Source: e.Source, MsgID: e.MsgID, ReceivedAt: e.ReceivedAt})
		if err != nil {
			return nil // not an object: ingest would not have stored it
		}
		res := set.Eval(env)
		for _, re := range res.Errors {
			if rep.RuleErrors == nil {
				rep.RuleErrors = map[string]int{}
			}
			rep.RuleErrors[re.Rule]++
		}
		rep.Events++
		if rep.compare(e.ID, e.route, res.Route) {
			rep.Changed++
			if len(rep.Examples) < backtestExamples {
				rep.Examples = append(rep.Examples, e.ID)
			}
		}
		return nil
	})
	return rep, err
}

// compare counts one event's routing before and after and reports whether
// it differs.
func (rep *BacktestReport) compare(id uint64, before, after map[string][]string) bool {
	changed := false
	tally := func(counts map[string]*BacktestCount, was, is map[string]bool) {
		for name := range union(was, is) {
			c := counts[name]
			if c == nil {
				c = &BacktestCount{Gained: []uint64{}, Lost: []uint64{}}
				counts[name] = c
			}
			switch {
			case was[name] && is[name]:
				c.Before++
				c.After++
			case was[name]:
				c.Before++
				changed = true
				if len(c.Lost) < backtestExamples {
					c.Lost = append(c.Lost, id)
				}
			default:
				c.After++
				changed = true
				if len(c.Gained) < backtestExamples {
					c.Gained = append(c.Gained, id)
				}
			}
		}
	}
	tally(rep.Sinks, keySet(before), keySet(after))
	tally(rep.Rules, ruleSet(before), ruleSet(after))
	for sink, names := range before {
		if !changed && after[sink] != nil && !slices.Equal(names, after[sink]) {
			changed = true // the same sinks, for other rules
		}
	}
	return changed
}

func keySet(route map[string][]string) map[string]bool {
	out := make(map[string]bool, len(route))
	for k := range route {
		out[k] = true
	}
	return out
}

func ruleSet(route map[string][]string) map[string]bool {
	out := map[string]bool{}
	for _, names := range route {
		for _, n := range names {
			out[n] = true
		}
	}
	return out
}

func union(a, b map[string]bool) map[string]bool {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]bool{}
	}
	maps.Copy(out, b)
	return out
}

// maxBacktestBody bounds the candidate rules a backtest takes.
const maxBacktestBody = 8 << 20

func (s *Server) handleBacktest(w http.ResponseWriter, r *http.Request) {
	var req BacktestRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBacktestBody+1))
	if err != nil || len(body) > maxBacktestBody || json.Unmarshal(body, &req) != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(`body must be {"rules":[...]}, at most 8 MiB`))
		return
	}
	specs := make([]rules.Spec, len(req.Rules))
	for i, br := range req.Rules {
		specs[i] = rules.Spec{Name: br.Name, When: br.When, Sinks: br.Sinks, Stop: br.Stop}
	}
	set, err := rules.Compile(specs, nil)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("candidate rules: "+err.Error()))
		return
	}
	eq, ok := s.eventQueryOf(w, r.URL.Query(), compileEventFilter)
	if !ok {
		return
	}
	rep, err := s.store.backtest(r.Context(), eq, set)
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSONValue(w, http.StatusOK, rep)
}
