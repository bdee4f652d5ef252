package relay

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/relay-dev/relay/relay/console"
	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// The console's routes: the pages (relay/console) and the small JSON
// routes they read besides the dead-letter and events APIs
// (docs/reference.md, Admin listener and Console).

// mountConsole adds the web console and its JSON routes to the admin mux.
func (s *Server) mountConsole(mux *http.ServeMux) {
	console.Mount(mux, console.Options{Token: s.adminToken, Now: s.opts.Now})
	mux.Handle("GET /api/v1/overview", s.auth(s.handleOverview))
	mux.Handle("GET /api/v1/rules", s.auth(s.handleRules))
	mux.Handle("POST /api/v1/route", s.auth(s.handleRoute))
	mux.Handle("GET /api/v1/config", s.auth(s.handleConfig))
}

// adminToken is the admin token in force ("" when none is set).
func (s *Server) adminToken() string { return s.cfg.Load().Server.AdminToken.Reveal() }

// Overview is the answer of GET /api/v1/overview: the relay's state at a
// glance, from its metrics (counts are since the process started).
type Overview struct {
	Now time.Time `json:"now"`
	// Accepted counts the events accepted, every source together; the
	// console derives the accept rate from two readings.
	Accepted int64 `json:"accepted"`
	// Requests counts webhook answers by source and status code.
	Requests     []RequestCount        `json:"requests"`
	Sinks        []SinkOverview        `json:"sinks"`
	Expectations []ExpectationOverview `json:"expectations"`
	Store        StoreOverview         `json:"store"`
}

// RequestCount is the number of webhook requests a source answered with
// one status code.
type RequestCount struct {
	Source string `json:"source"`
	Code   string `json:"code"`
	Count  int64  `json:"count"`
}

// SinkOverview is one configured sink's state.
type SinkOverview struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Delivered, Retried and DeadLettered count delivery attempts by
	// outcome; DeadLetters and Pending are what the store holds now.
	Delivered    int64 `json:"delivered"`
	Retried      int64 `json:"retried"`
	DeadLettered int64 `json:"dead_lettered"`
	DeadLetters  int64 `json:"dead_letters"`
	Pending      int64 `json:"pending"`
	BreakerOpen  bool  `json:"breaker_open"`
	// LastError is the error of the sink's latest attempt when it failed,
	// "" when it succeeded (or nothing was attempted).
	LastError string `json:"last_error"`
}

// ExpectationOverview is one expectation's timers.
type ExpectationOverview struct {
	Name   string `json:"name"`
	Open   int64  `json:"open"`
	Missed int64  `json:"missed"`
}

// StoreOverview is what the store holds against its limit.
type StoreOverview struct {
	Bytes         int64 `json:"bytes"`
	MaxBytes      int64 `json:"max_bytes"`
	HistoryEvents int64 `json:"history_events"`
}

// series is one metric series: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// gatherSeries reads every metric of the registry, by name.
func (s *Server) gatherSeries(ctx context.Context) (map[string][]series, error) {
	s.refreshGauges(ctx)
	fams, err := s.metrics.Registry.Gather()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]series, len(fams))
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			sr := series{labels: map[string]string{}, value: seriesValue(m)}
			for _, l := range m.GetLabel() {
				sr.labels[l.GetName()] = l.GetValue()
			}
			out[f.GetName()] = append(out[f.GetName()], sr)
		}
	}
	return out, nil
}

func seriesValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// sumBy adds up the series of name whose label key is value ("" key: all).
func sumBy(all map[string][]series, name, key, value string) int64 {
	var n float64
	for _, sr := range all[name] {
		if key == "" || sr.labels[key] == value {
			n += sr.value
		}
	}
	return int64(n)
}

// outcome is the count of name's series with both labels.
func outcome(all map[string][]series, name, sink, kind string) int64 {
	for _, sr := range all[name] {
		if sr.labels["sink"] == sink && sr.labels["outcome"] == kind {
			return int64(sr.value)
		}
	}
	return 0
}

func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	all, err := s.gatherSeries(ctx)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody("read metrics"))
		return
	}
	cfg := s.cfg.Load()
	ov := Overview{
		Now:          s.opts.Now().UTC(),
		Accepted:     sumBy(all, "relay_events_accepted_total", "", ""),
		Requests:     []RequestCount{},
		Sinks:        []SinkOverview{},
		Expectations: []ExpectationOverview{},
		Store: StoreOverview{
			Bytes:         sumBy(all, "relay_store_bytes", "", ""),
			MaxBytes:      sumBy(all, "relay_store_max_bytes", "", ""),
			HistoryEvents: sumBy(all, "relay_history_events", "", ""),
		},
	}
	for _, sr := range all["relay_ingest_requests_total"] {
		ov.Requests = append(ov.Requests, RequestCount{Source: sr.labels["source"], Code: sr.labels["code"], Count: int64(sr.value)})
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Sinks)) {
		ov.Sinks = append(ov.Sinks, SinkOverview{
			Name:         name,
			Type:         cfg.Sinks[name].Type,
			Delivered:    outcome(all, "relay_deliveries_total", name, "delivered"),
			Retried:      outcome(all, "relay_deliveries_total", name, "retried"),
			DeadLettered: outcome(all, "relay_deliveries_total", name, "dead_lettered"),
			DeadLetters:  sumBy(all, "relay_dead_letters", "sink", name),
			Pending:      sumBy(all, "relay_pending_deliveries", "sink", name),
			BreakerOpen:  sumBy(all, "relay_sink_breaker_open", "sink", name) > 0,
			LastError:    s.sinkLastError(name),
		})
	}
	for _, e := range cfg.Expectations {
		ov.Expectations = append(ov.Expectations, ExpectationOverview{
			Name:   e.Name,
			Open:   sumBy(all, "relay_expectations_open", "expectation", e.Name),
			Missed: sumBy(all, "relay_expectations_missed_total", "expectation", e.Name),
		})
	}
	writeJSONValue(w, http.StatusOK, ov)
}

// sinkLastError is the error of the sink's latest attempt ("" when it
// succeeded or the sink has no worker).
func (s *Server) sinkLastError(name string) string {
	if s.engine == nil {
		return ""
	}
	wk, ok := s.engine.worker(name)
	if !ok {
		return ""
	}
	wk.mu.Lock()
	defer wk.mu.Unlock()
	return wk.lastErr
}

// RuleOverview is one running rule with its hits since the start.
type RuleOverview struct {
	BacktestRule
	Matched int64 `json:"matched"`
	Errors  int64 `json:"errors"`
}

func (s *Server) handleRules(w http.ResponseWriter, r *http.Request) {
	all, err := s.gatherSeries(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody("read metrics"))
		return
	}
	cfg := s.cfg.Load()
	resp := struct {
		Rules   []RuleOverview `json:"rules"`
		Sources []string       `json:"sources"`
		Sinks   []string       `json:"sinks"`
	}{Rules: []RuleOverview{}, Sources: slices.Sorted(maps.Keys(cfg.Sources)), Sinks: slices.Sorted(maps.Keys(cfg.Sinks))}
	for _, br := range BacktestRules(cfg.Rules) {
		resp.Rules = append(resp.Rules, RuleOverview{
			BacktestRule: br,
			Matched:      sumBy(all, "relay_rule_matches_total", "rule", br.Name),
			Errors:       sumBy(all, "relay_rule_errors_total", "rule", br.Name),
		})
	}
	writeJSONValue(w, http.StatusOK, resp)
}

// handleRoute evaluates the running rules over the event in the body, as
// if source had received it now, and answers which rules match and which
// sinks it would go to (a DryRunResult without previews). Nothing is sent
// or stored.
func (s *Server) handleRoute(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.Load().Server.MaxBodyBytes))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody("event larger than server.max_body_bytes"))
		return
	}
	cfg := s.cfg.Load()
	source, err := dryRunSource(cfg, r.URL.Query().Get("source"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	env, err := rules.NewEnv(body, rules.Meta{Source: source, MsgID: DryRunMsgID, ReceivedAt: s.opts.Now()})
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("event: "+err.Error()))
		return
	}
	eval := cfg.RuleSet.Eval(env)
	res := DryRunResult{Event: env.Event, Rules: append([]string{}, eval.Rules...), Deliveries: []DryRunDelivery{}}
	for _, re := range eval.Errors {
		res.RuleErrors = append(res.RuleErrors, DryRunError{Rule: re.Rule, Error: strings.TrimPrefix(re.Error(), fmt.Sprintf("rule %q: ", re.Rule))})
	}
	for _, name := range eval.Sinks {
		res.Deliveries = append(res.Deliveries, DryRunDelivery{Sink: name, Type: cfg.Sinks[name].Type, Rules: eval.Route[name]})
	}
	writeJSONValue(w, http.StatusOK, res)
}

// reloadFailure is why the latest reload failed; nil after one succeeded.
type reloadFailure struct {
	at   time.Time
	errs []string
}

// noteReload records the outcome of a reload for the console.
func (s *Server) noteReload(err error) {
	if err == nil {
		s.reloadFailed.Store(nil)
		return
	}
	f := &reloadFailure{at: s.opts.Now().UTC()}
	for _, e := range Problems(err) {
		f.errs = append(f.errs, e.Error())
	}
	s.reloadFailed.Store(f)
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	all, err := s.gatherSeries(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody("read metrics"))
		return
	}
	type lastLoad struct {
		OK bool `json:"ok"`
		// SucceededAt is the last successful load (start or reload).
		SucceededAt time.Time `json:"succeeded_at"`
		// FailedAt and Errors describe the latest reload when it failed.
		FailedAt *time.Time `json:"failed_at,omitempty"`
		Errors   []string   `json:"errors,omitempty"`
	}
	ll := lastLoad{
		OK:          sumBy(all, "relay_config_last_reload_successful", "", "") == 1,
		SucceededAt: time.Unix(sumBy(all, "relay_config_last_reload_success_timestamp_seconds", "", ""), 0).UTC(),
	}
	if f := s.reloadFailed.Load(); f != nil && !ll.OK {
		ll.FailedAt, ll.Errors = &f.at, f.errs
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"config": configView(s.cfg.Load()), "last_load": ll})
}

// configView is cfg as the config file spells it (its keys), with every
// secret redacted: sinks.Secret values, every value of a sink option whose
// key names a secret (token, secret, password, key, webhook) or of a
// headers map, and the credentials, path and query of every URL (as
// sinks.RedactURL shows them). Values the file does not set show their
// defaults.
func configView(cfg *Config) map[string]any {
	out := viewOf(reflect.ValueOf(*cfg)).(map[string]any)
	sinkViews := map[string]any{}
	for name, sc := range cfg.Sinks {
		v := viewOf(reflect.ValueOf(sc)).(map[string]any)
		maps.Copy(v, redactOptions(sc.Options))
		sinkViews[name] = v
	}
	out["sinks"] = sinkViews
	return out
}

var stringerType = reflect.TypeFor[fmt.Stringer]()

// viewOf turns a config value into maps, slices and scalars, keyed by
// koanf tags (untagged fields are derived, not keys, and left out).
func viewOf(v reflect.Value) any {
	if v.Type().Implements(stringerType) && v.Kind() != reflect.Struct {
		return v.Interface().(fmt.Stringer).String() // Secret, Duration, ByteSize
	}
	switch v.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("koanf"), ",")
			if tag != "" {
				out[tag] = viewOf(v.Field(i))
			}
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = viewOf(v.MapIndex(k))
		}
		return out
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = viewOf(v.Index(i))
		}
		return out
	case reflect.String:
		return redactURLString(v.String())
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return viewOf(v.Elem())
	}
	return v.Interface()
}

// secretOptionWords mark a sink option whose value is secret.
var secretOptionWords = []string{"secret", "token", "password", "key", "webhook", "auth", "credential"}

// redactOptions is a sink's own options with secrets redacted.
func redactOptions(opts map[string]any) map[string]any {
	out := make(map[string]any, len(opts))
	for k, v := range opts {
		lk := strings.ToLower(k)
		switch {
		case slices.ContainsFunc(secretOptionWords, func(w string) bool { return strings.Contains(lk, w) }):
			out[k] = redactAll(v)
		case lk == "headers":
			out[k] = redactAll(v)
		default:
			out[k] = redactValue(v)
		}
	}
	return out
}

// redactAll replaces every scalar under v with "[redacted]" (keeping map
// keys, such as header names).
func redactAll(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = redactAll(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = redactAll(x)
		}
		return out
	case nil:
		return nil
	}
	return sinks.Secret(fmt.Sprint(v)).String()
}

// redactValue redacts the URLs under v.
func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return redactOptions(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = redactValue(x)
		}
		return out
	case string:
		return redactURLString(t)
	}
	return v
}

// redactURLString shows s through sinks.RedactURL when it is an absolute
// URL, else as it is.
func redactURLString(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsAny(s, " \n") {
		return s
	}
	return sinks.RedactURL(u)
}
