package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks"
)

const failuresOnly = `
rules:
  - name: failures
    when: status == "failed"
    sinks: [a]
`

// TestDedupeSurvivesRestart: ids accepted before a restart are duplicates
// after it, whether their event was delivered or went nowhere: with
// history, the stream's own window rebuilt from the events it keeps; with
// no history, the ids recorded as the events were trimmed.
func TestDedupeSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		storage string
		seen    int // ids read back from RELAY_IDS at start
	}{
		{"history", "", 0},
		{"no history", "  history: 0s", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tr := &testRegistry{}
			rec := newRecorder()
			tr.set("a", rec.send)
			yaml := historyServerConfig(dir, tc.storage, failuresOnly)
			srv := startServer(t, tr, yaml)
			h := newHarness(t, srv)
			h.mustAccept("msg_delivered", sampleBody)
			h.mustAccept("msg_nowhere", `{"event":"bot.joining_call"}`)
			if d := rec.wait(t, 10*time.Second); d.MsgID != "msg_delivered" {
				t.Fatalf("delivered %s", d.MsgID)
			}
			if tc.seen > 0 {
				eventually(t, 10*time.Second, "both events trimmed from history", func() bool {
					info, err := srv.store.events.Info(context.Background())
					return err == nil && info.State.Msgs == 0
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.Stop(ctx); err != nil {
				t.Fatal(err)
			}

			srv = startServer(t, tr, yaml)
			t.Cleanup(func() { _ = srv.Stop(context.Background()) })
			h = newHarness(t, srv)
			for _, id := range []string{"msg_delivered", "msg_nowhere"} {
				body := sampleBody
				if id == "msg_nowhere" {
					body = `{"event":"bot.joining_call"}`
				}
				if code, answer := h.post(id, body); code != 200 || !strings.Contains(answer, `"duplicate"`) {
					t.Errorf("%s after a restart: got %d %s, want 200 duplicate", id, code, answer)
				}
			}
			h.mustAccept("msg_new", sampleBody)
			if d := rec.wait(t, 10*time.Second); d.MsgID != "msg_new" {
				t.Fatalf("delivered %s, want msg_new", d.MsgID)
			}
			rec.none(t, 300*time.Millisecond)
			if n := srv.store.history.seen.len(); n != tc.seen {
				t.Errorf("ids read back at start: %d, want %d", n, tc.seen)
			}
		})
	}
}

// TestDedupeWindowBoundsSeenIDs: ids older than the dedupe window are not
// read back.
func TestDedupeWindowBoundsSeenIDs(t *testing.T) {
	var s seenIDs
	now := time.Now()
	s.add("recall:old", now.Add(-2*time.Hour).UnixNano())
	s.add("recall:new", now.UnixNano())
	if !s.has("recall", "old") || !s.has("recall", "new") || s.has("recall", "other") {
		t.Fatal("has")
	}
	s.expire(now.Add(-time.Hour))
	if s.has("recall", "old") || !s.has("recall", "new") || s.len() != 1 {
		t.Errorf("after expire: old %v, new %v, len %d", s.has("recall", "old"), s.has("recall", "new"), s.len())
	}
}

// eventsPage is the answer of GET /api/v1/events.
type eventsPage struct {
	Events     []StoredEvent `json:"events"`
	NextCursor string        `json:"next_cursor"`
}

// TestEventsAPI: stored events newest first with their routing and each
// sink's trail, filtered by where, since and pages; one event with its
// payload.
func TestEventsAPI(t *testing.T) {
	tr := &testRegistry{}
	tr.set("b", func(_ context.Context, d sinks.Delivery) error {
		if d.MsgID == "msg_2" {
			return sinks.Permanent(errors.New("no thanks"))
		}
		return nil
	})
	h := startHarness(t, tr, testServerConfig(t.TempDir(), twoRules))
	bodies := map[string]string{
		"msg_1": sampleBody,
		"msg_2": `{"event":"recording.done","data":{"data":{"code":"done"}}}`,
		"msg_3": `{"event":"bot.joining_call"}`,
	}
	for _, id := range []string{"msg_1", "msg_2", "msg_3"} {
		h.mustAccept(id, bodies[id])
	}
	var page eventsPage
	eventually(t, 10*time.Second, "every delivery settled in the trail", func() bool {
		if h.admin("GET", "/api/v1/events", &page) != 200 || len(page.Events) != 3 {
			return false
		}
		for _, e := range page.Events {
			for _, st := range e.Sinks {
				if st.Status == StatusPending {
					return false
				}
			}
		}
		return true
	})
	if got := []string{page.Events[0].MsgID, page.Events[1].MsgID, page.Events[2].MsgID}; !slices.Equal(got, []string{"msg_3", "msg_2", "msg_1"}) {
		t.Fatalf("order: %v", got)
	}
	e1 := page.Events[2]
	if e1.Event != "transcript.failed" || e1.Source != "recall" || !slices.Equal(e1.Rules, []string{"everything", "failures"}) ||
		e1.Sinks["a"].Status != StatusDelivered || e1.Sinks["b"].Status != StatusDelivered || e1.Sinks["a"].Attempts != 1 || e1.Payload != nil {
		t.Errorf("msg_1: %+v", e1)
	}
	if st := page.Events[1].Sinks["b"]; st.Status != StatusDeadLettered || st.LastError != "no thanks" {
		t.Errorf("msg_2 at b: %+v", st)
	}

	q := func(v url.Values) eventsPage {
		t.Helper()
		var p eventsPage
		if code := h.admin("GET", "/api/v1/events?"+v.Encode(), &p); code != 200 {
			t.Fatalf("%v: %d", v, code)
		}
		return p
	}
	if p := q(url.Values{"where": {`event == "recording.done"`}}); len(p.Events) != 1 || p.Events[0].MsgID != "msg_2" {
		t.Errorf("where event: %+v", p.Events)
	}
	if p := q(url.Values{"where": {`"failures" in rules && "b" in sinks`}}); len(p.Events) != 1 || p.Events[0].MsgID != "msg_1" {
		t.Errorf("where rules/sinks: %+v", p.Events)
	}
	if p := q(url.Values{"since": {time.Now().Add(time.Hour).Format(time.RFC3339)}}); len(p.Events) != 0 {
		t.Errorf("since the future: %+v", p.Events)
	}
	if p := q(url.Values{"since": {"1h"}, "until": {time.Now().Add(-time.Hour).Format(time.RFC3339)}}); len(p.Events) != 0 {
		t.Errorf("until an hour ago: %+v", p.Events)
	}
	// Pages.
	var seen []string
	v := url.Values{"limit": {"2"}}
	for range 3 {
		p := q(v)
		for _, e := range p.Events {
			seen = append(seen, e.MsgID)
		}
		if p.NextCursor == "" {
			break
		}
		v.Set("cursor", p.NextCursor)
	}
	if !slices.Equal(seen, []string{"msg_3", "msg_2", "msg_1"}) {
		t.Errorf("pages: %v", seen)
	}

	// A bad where: 400 with the compiler's message.
	code, body := h.adminRaw("GET", "/api/v1/events?where="+url.QueryEscape(`sub_cod == "x"`))
	if code != 400 || !strings.Contains(body, `"where: unknown name sub_cod (1:1)"`) {
		t.Errorf("bad where: %d %s", code, body)
	}

	var one StoredEvent
	if code := h.admin("GET", "/api/v1/events/"+strconvU(e1.ID), &one); code != 200 {
		t.Fatalf("show: %d", code)
	}
	if one.MsgID != "msg_1" || string(one.Payload) != sampleBody || one.Sinks["a"].Status != StatusDelivered {
		t.Errorf("show: %+v", one)
	}
	if code := h.admin("GET", "/api/v1/events/999", nil); code != 404 {
		t.Errorf("show a missing id: %d", code)
	}
}

// adminRaw calls the admin API and returns the status and the body.
func (h *harness) adminRaw(method, path string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://"+h.srv.AdminAddr()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEventsReplayBackfills: a replay delivers the stored events a where
// selects to one sink, through its queue, with the event's message id;
// a dry run sends nothing.
func TestEventsReplayBackfills(t *testing.T) {
	tr := &testRegistry{}
	recA, recB := newRecorder(), newRecorder()
	tr.set("a", recA.send)
	tr.set("b", recB.send)
	h := startHarness(t, tr, testServerConfig(t.TempDir(), failuresOnly))
	h.mustAccept("msg_1", sampleBody)
	h.mustAccept("msg_2", `{"event":"recording.done"}`)
	h.mustAccept("msg_3", sampleBody)
	recA.wait(t, 10*time.Second)
	recA.wait(t, 10*time.Second)

	var rep ReplayReport
	if code := h.admin("POST", "/api/v1/events/replay?sink=b&dry_run=true&where="+url.QueryEscape(`status == "failed"`), &rep); code != 200 {
		t.Fatalf("dry run: %d", code)
	}
	if !rep.DryRun || rep.Matched != 2 || len(rep.IDs) != 2 {
		t.Errorf("dry run: %+v", rep)
	}
	recB.none(t, 200*time.Millisecond)
	if code := h.admin("POST", "/api/v1/events/replay?sink=b&where="+url.QueryEscape(`status == "failed"`), &rep); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	var got []string
	for range 2 {
		d := recB.wait(t, 10*time.Second)
		if d.Attempt != 1 || !slices.Equal(d.Rules, []string{"failures"}) {
			t.Errorf("replayed %s attempt %d rules %v", d.MsgID, d.Attempt, d.Rules)
		}
		got = append(got, d.MsgID)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"msg_1", "msg_3"}) {
		t.Errorf("replayed %v", got)
	}
	recB.none(t, 200*time.Millisecond)
	recA.none(t, 0)
	// The trail shows the backfilled sink.
	eventually(t, 10*time.Second, "b in msg_1's trail", func() bool {
		var e StoredEvent
		h.admin("GET", "/api/v1/events/"+strconvU(rep.IDs[0]), &e)
		return e.Sinks["b"].Status == StatusDelivered && e.Sinks["a"].Status == StatusDelivered
	})
	for _, tt := range []struct {
		query string
		code  int
	}{
		{"sink=nope&where=true", 409},
		{"where=true", 400},
		{"sink=b", 400},
		{"sink=b&where=" + url.QueryEscape("sink == 1"), 400},
	} {
		if code, body := h.adminRaw("POST", "/api/v1/events/replay?"+tt.query); code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.query, code, body, tt.code)
		}
	}
}

// TestDeadLettersWhere: list, replay and purge take a where over the event,
// the sink, the error and the attempts.
func TestDeadLettersWhere(t *testing.T) {
	tr := &testRegistry{}
	var fail atomic.Bool
	fail.Store(true)
	tr.set("a", func(_ context.Context, d sinks.Delivery) error {
		if fail.Load() {
			return sinks.Permanent(errors.New("gone: " + d.MsgID))
		}
		return nil
	})
	h := startHarness(t, tr, testServerConfig(t.TempDir(), failuresOnly))
	h.mustAccept("msg_1", sampleBody)
	h.mustAccept("msg_2", strings.Replace(sampleBody, "zoom_captions_failure", "other", 1))
	h.mustAccept("msg_3", sampleBody)
	var page struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
	}
	eventually(t, 10*time.Second, "three dead letters", func() bool {
		return h.admin("GET", "/api/v1/dlq", &page) == 200 && len(page.DeadLetters) == 3
	})
	list := func(where string) []string {
		t.Helper()
		if code := h.admin("GET", "/api/v1/dlq?where="+url.QueryEscape(where), &page); code != 200 {
			t.Fatalf("%s: %d", where, code)
		}
		var ids []string
		for _, d := range page.DeadLetters {
			ids = append(ids, d.MsgID)
		}
		return ids
	}
	if got := list(`sub_code == "other"`); !slices.Equal(got, []string{"msg_2"}) {
		t.Errorf("where sub_code: %v", got)
	}
	if got := list(`sink == "a" && attempts == 1 && last_error contains "msg_3" && "failures" in rules`); !slices.Equal(got, []string{"msg_3"}) {
		t.Errorf("where sink, attempts, last_error, rules: %v", got)
	}
	if code, body := h.adminRaw("GET", "/api/v1/dlq?where="+url.QueryEscape("attempts == \"x\"")); code != 400 || !strings.Contains(body, "where: invalid operation") {
		t.Errorf("bad where: %d %s", code, body)
	}
	fail.Store(false)
	var replayed struct {
		Replayed []uint64 `json:"replayed"`
	}
	if code := h.admin("POST", "/api/v1/dlq/replay?where="+url.QueryEscape(`msg_id == "msg_1"`), &replayed); code != 200 || len(replayed.Replayed) != 1 {
		t.Fatalf("replay where: %d %+v", code, replayed)
	}
	var purged struct {
		Purged int `json:"purged"`
	}
	if code := h.admin("DELETE", "/api/v1/dlq?where="+url.QueryEscape(`msg_id == "msg_2"`), &purged); code != 200 || purged.Purged != 1 {
		t.Fatalf("purge where: %d %+v", code, purged)
	}
	eventually(t, 10*time.Second, "msg_3 left alone", func() bool {
		got := list("true")
		return slices.Equal(got, []string{"msg_3"})
	})
	// The replayed event's trail says so.
	eventually(t, 10*time.Second, "msg_1 delivered in its trail", func() bool {
		var p eventsPage
		h.admin("GET", "/api/v1/events?where="+url.QueryEscape(`msg_id == "msg_1"`), &p)
		return len(p.Events) == 1 && p.Events[0].Sinks["a"].Status == StatusDelivered && p.Events[0].Sinks["a"].Attempts == 1
	})
}

// TestBacktest compares the stored routing with a candidate's, per rule and
// per sink, with example ids.
func TestBacktest(t *testing.T) {
	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	h.mustAccept("msg_1", sampleBody)                        // failures, everything
	h.mustAccept("msg_2", `{"event":"recording.done"}`)      // everything
	h.mustAccept("msg_3", `{"event":"bot.fatal","data":{}}`) // everything
	post := func(req BacktestRequest, query string) (*BacktestReport, int, string) {
		t.Helper()
		b, _ := json.Marshal(req)
		resp, err := http.Post("http://"+h.srv.AdminAddr()+"/api/v1/backtest?"+query, "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var rep BacktestReport
		_ = json.Unmarshal(body, &rep)
		return &rep, resp.StatusCode, string(body)
	}
	same := BacktestRequest{Rules: []BacktestRule{
		{Name: "failures", When: `status == "failed"`, Sinks: []string{"a"}},
		{Name: "everything", When: "true", Sinks: []string{"a", "b"}},
	}}
	rep, code, body := post(same, "")
	if code != 200 || rep.Events != 3 || rep.Changed != 0 || rep.Rules["everything"].Before != 3 || rep.Sinks["a"].After != 3 {
		t.Fatalf("same rules: %d %s", code, body)
	}
	cand := BacktestRequest{Rules: []BacktestRule{
		{Name: "failures", When: `status == "failed" || event == "bot.fatal"`, Sinks: []string{"a", "c"}},
		{Name: "done", When: `status == "done"`, Sinks: []string{"b"}},
	}}
	rep, _, body = post(cand, "")
	if rep.Changed != 3 || len(rep.Examples) != 3 {
		t.Errorf("changed: %s", body)
	}
	ids := func(c *BacktestCount) string { return fmt.Sprint(c.Before, c.After, len(c.Gained), len(c.Lost)) }
	for name, want := range map[string]string{"everything": "3 0 0 3", "failures": "1 2 1 0", "done": "0 1 1 0"} {
		if got := ids(rep.Rules[name]); got != want {
			t.Errorf("rule %s: %s, want %s", name, got, want)
		}
	}
	for name, want := range map[string]string{"a": "3 2 0 1", "b": "3 1 0 2", "c": "0 2 2 0"} {
		if got := ids(rep.Sinks[name]); got != want {
			t.Errorf("sink %s: %s, want %s", name, got, want)
		}
	}
	rep, _, body = post(cand, "where="+url.QueryEscape(`event == "recording.done"`))
	if rep.Events != 1 || rep.Changed != 1 {
		t.Errorf("with where: %s", body)
	}
	if _, code, body := post(cand, "where="+url.QueryEscape(`evnt == 1`)); code != 400 || !strings.Contains(body, "where: unknown name evnt") {
		t.Errorf("bad where: %d %s", code, body)
	}
	if _, code, body := post(BacktestRequest{Rules: []BacktestRule{{Name: "x", When: "sub_cod", Sinks: []string{"a"}}}}, ""); code != 400 || !strings.Contains(body, "unknown name sub_cod") {
		t.Errorf("bad candidate: %d %s", code, body)
	}
}

// historyServerConfig is a config with sinks a and b (fake), retries that
// go on for an hour, breakers that probe every 100 ms, and extra storage
// keys.
func historyServerConfig(dir, storage, rules string) string {
	return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace: 5s
storage:
  dir: %s
  sync: 1s
  ack_wait: 5s
%s
sources:
  recall:
    secrets: [%s]
retry:
  max_attempts: 100000
  initial_interval: 20ms
  max_interval: 100ms
  max_age: 1h
sinks:
  a:
    type: fake
    breaker: {cooldown: 100ms}
  b:
    type: fake
    breaker: {cooldown: 100ms}
%s`, dir, storage, testSecret, rules)
}

// switchSink is a fake sink that fails (retryably) while down.
type switchSink struct {
	down atomic.Bool
	rec  *recorder
}

func newSwitchSink(down bool) *switchSink {
	s := &switchSink{rec: newRecorder()}
	s.down.Store(down)
	return s
}

func (s *switchSink) send(ctx context.Context, d sinks.Delivery) error {
	if s.down.Load() {
		return errors.New("sink down")
	}
	return s.rec.send(ctx, d)
}

func listIDs(t *testing.T, h *harness) []string {
	t.Helper()
	var p eventsPage
	if code := h.admin("GET", "/api/v1/events?limit=1000", &p); code != 200 {
		t.Fatalf("list: %d", code)
	}
	var ids []string
	for _, e := range p.Events {
		ids = append(ids, e.MsgID)
	}
	return ids
}

// TestHistoryKeepsUndelivered: an event whose sink is down for longer than
// storage.history stays (in history too) and is delivered when the sink
// returns; delivered events leave history after storage.history.
func TestHistoryKeepsUndelivered(t *testing.T) {
	tr := &testRegistry{}
	a, b := newSwitchSink(true), newSwitchSink(false)
	tr.set("a", a.send)
	tr.set("b", b.send)
	h := startHarness(t, tr, historyServerConfig(t.TempDir(), "  history: 1s", `
rules:
  - {name: to-a, when: 'event == "a"', sinks: [a]}
  - {name: to-b, when: 'event == "b"', sinks: [b]}
`))
	// Delivered and routed-nowhere events leave history after it.
	a.down.Store(false)
	h.mustAccept("msg_a0", `{"event":"a"}`)
	h.mustAccept("msg_nowhere", `{"event":"x"}`)
	a.rec.wait(t, 10*time.Second)
	eventually(t, 10*time.Second, "delivered events out of history", func() bool {
		return len(listIDs(t, h)) == 0
	})
	// An undelivered event stays past storage.history, and so does what
	// came after it (the stream is trimmed up to the oldest event a sink
	// has yet to settle).
	a.down.Store(true)
	h.mustAccept("msg_a", `{"event":"a"}`)
	h.mustAccept("msg_b", `{"event":"b"}`)
	b.rec.wait(t, 10*time.Second)
	waitGuardRounds(t, h.srv, 3*time.Second) // three times storage.history
	if got := listIDs(t, h); !slices.Equal(got, []string{"msg_b", "msg_a"}) {
		t.Fatalf("after storage.history with a down: %v, want msg_b and msg_a (undelivered)", got)
	}
	var e StoredEvent
	h.admin("GET", "/api/v1/events/3", &e)
	if st := e.Sinks["a"]; st.Status != StatusRetrying || st.Attempts < 2 || st.LastError != "sink down" {
		t.Errorf("a's trail while down: %+v", st)
	}
	a.down.Store(false)
	if d := a.rec.wait(t, 10*time.Second); d.MsgID != "msg_a" {
		t.Fatalf("delivered %s", d.MsgID)
	}
	eventually(t, 10*time.Second, "msg_a and msg_b out of history once msg_a is delivered", func() bool {
		return len(listIDs(t, h)) == 0
	})
	a.rec.none(t, 200*time.Millisecond)
	// Its id is still a duplicate.
	if code, answer := h.post("msg_a", `{"event":"a"}`); code != 200 || !strings.Contains(answer, "duplicate") {
		t.Errorf("msg_a again: %d %s", code, answer)
	}
}

// waitGuardRounds waits until the store guard has ended a round that
// began at least d from now.
func waitGuardRounds(t *testing.T, srv *Server, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		started := time.Now()
		select {
		case <-*srv.store.passed.Load():
		case <-time.After(10 * time.Second):
			t.Fatal("no store guard round in 10s")
		}
		if started.After(deadline) {
			return
		}
	}
}

// padded is an event of about n bytes.
func padded(event string, n int) string {
	return fmt.Sprintf(`{"event":%q,"pad":%q}`, event, strings.Repeat("x", n))
}

// TestStoreFull: history is given up first; only when what is left is
// undelivered does ingest answer 503 with Retry-After, and /readyz 503
// naming the reason; both recover once deliveries free space.
func TestStoreFull(t *testing.T) {
	tr := &testRegistry{}
	a := newSwitchSink(false)
	tr.set("a", a.send)
	h := startHarness(t, tr, historyServerConfig(t.TempDir(), "  max_bytes: 128KiB", `
rules:
  - {name: to-a, when: "true", sinks: [a]}
`))
	if got := metricFloat(h, "relay_store_max_bytes"); got != 128<<10 {
		t.Errorf("relay_store_max_bytes: %v", got)
	}
	// Delivered events: history makes room, ingest never refuses.
	for i := range 120 {
		h.mustAccept(fmt.Sprintf("msg_d%d", i), padded("delivered", 2000))
		time.Sleep(15 * time.Millisecond)
	}
	eventually(t, 10*time.Second, "history given up early", func() bool { return metricFloat(h, "relay_history_evicted_total") > 0 })
	if n := metricFloat(h, "relay_history_events"); n < 1 || n >= 120 {
		t.Errorf("relay_history_events: %v", n)
	}
	if b := metricFloat(h, "relay_store_bytes"); b <= 0 || b > 128<<10 {
		t.Errorf("relay_store_bytes: %v", b)
	}

	// Undelivered events fill it: 503 with Retry-After, and /readyz.
	a.down.Store(true)
	var full bool
	for i := 0; i < 400 && !full; i++ {
		code, answer := h.postRaw(fmt.Sprintf("msg_u%d", i), padded("undelivered", 2000))
		switch {
		case code == 503:
			if answer.Header.Get("Retry-After") == "" || !strings.Contains(answer.body, "store full") {
				t.Fatalf("503 without Retry-After or reason: %v %s", answer.Header, answer.body)
			}
			full = true
		case code != 200:
			t.Fatalf("post: %d %s", code, answer.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !full {
		t.Fatal("never full")
	}
	if code, body := h.adminRaw("GET", "/readyz"); code != 503 || !strings.Contains(body, "store full") {
		t.Errorf("readyz while full: %d %s", code, body)
	}
	// The sink returns: everything is delivered, and both recover.
	a.down.Store(false)
	eventually(t, 20*time.Second, "ready again", func() bool {
		code, _ := h.adminRaw("GET", "/readyz")
		return code == 200
	})
	h.mustAccept("msg_after", padded("after", 100))
}

// rawAnswer is an ingest answer with its header.
type rawAnswer struct {
	http.Header
	body string
}

// postRaw is post, with the answer's header.
func (h *harness) postRaw(id, body string) (int, rawAnswer) {
	h.t.Helper()
	req, err := relaytest.SignedRequest("http://"+h.srv.IngestAddr()+"/webhooks/recall", h.wh, id, time.Now(), []byte(body))
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, rawAnswer{resp.Header, string(b)}
}

// metricFloat reads an unlabelled metric from the admin listener's
// /metrics (-1 when absent).
func metricFloat(h *harness, name string) float64 {
	h.t.Helper()
	f, err := strconv.ParseFloat(metricValue(h.t, h, name), 64)
	if err != nil {
		return -1
	}
	return f
}

// TestSinkFloors: what the store guard may trim, from the consumers' state,
// and which events past that every sink has settled.
func TestSinkFloors(t *testing.T) {
	floors := sinkFloors{
		"relay-sink-a": {ackFloor: 10, next: 11}, // deliveries outstanding
		"relay-sink-b": {ackFloor: 30},           // nothing pending
		"relay-sink-c": {ackFloor: 5, next: 21},  // undelivered, none handed out
	}
	if got := floors.safeSeq(&jetstream.StreamInfo{State: jetstream.StreamState{LastSeq: 40}}); got != 11 {
		t.Errorf("safeSeq: %d, want 11", got)
	}
	if got := (sinkFloors{"relay-sink-b": {ackFloor: 30}}).safeSeq(&jetstream.StreamInfo{State: jetstream.StreamState{LastSeq: 40}}); got != 41 {
		t.Errorf("safeSeq with nothing pending: %d, want 41", got)
	}
	route := nats.Header{hdrRoute: []string{`{"a":["r"],"b":["r"]}`}}
	for _, tc := range []struct {
		seq     uint64
		subject string
		header  nats.Header
		settled bool
	}{
		{12, "relay.to.recall", nil, true},        // routed nowhere
		{12, "relay.to.recall.b", nil, true},      // b is past it
		{12, "relay.to.recall.a.b", nil, false},   // a is not
		{9, "relay.to.recall.a.b", nil, true},     // both are
		{12, "relay.to.recall.gone", nil, true},   // no consumer left
		{12, "relay.events.recall", route, false}, // a, by the route header
		{31, "relay.replay.b", nil, false},        // b's replay, past its floor
		{30, "relay.replay.b", nil, true},         // at its floor
		{5, "relay.to.recall.c", nil, true},       // at c's floor
		{7, "relay.to.recall.c", nil, false},      // past it
		{7, "relay.to.recall.b.c", nil, false},    // c has not
	} {
		m := &storedMsg{Seq: tc.seq, Subject: tc.subject, Header: tc.header}
		if got := floors.settled(m); got != tc.settled {
			t.Errorf("settled(%d %s) = %v, want %v", tc.seq, tc.subject, got, tc.settled)
		}
	}
}

// TestTrimmedIDsFollowed: an id another relay of the store records as it
// trims its event inside the dedupe window is a duplicate here too, without
// a restart (every relay follows RELAY_IDS).
func TestTrimmedIDsFollowed(t *testing.T) {
	h := startHarness(t, nil, testServerConfig(t.TempDir(), failuresOnly))
	trimmed := &storedMsg{Time: time.Now(), Header: nats.Header{
		nats.MsgIdHdr: []string{"recall:msg_trimmed_elsewhere"},
		hdrReceivedAt: []string{time.Now().UTC().Format(time.RFC3339Nano)},
	}}
	if err := h.srv.store.recordIDs(context.Background(), []*storedMsg{trimmed}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the recorded id followed", func() bool {
		return h.srv.store.seenBefore("recall", "msg_trimmed_elsewhere")
	})
	if code, answer := h.post("msg_trimmed_elsewhere", sampleBody); code != 200 || !strings.Contains(answer, `"duplicate"`) {
		t.Errorf("an id trimmed by another relay: %d %s, want 200 duplicate", code, answer)
	}
}

// TestEvictPastUndelivered: an old event a down sink has not settled holds
// back trimming by range, yet the delivered events after it still leave
// history early when the store nears max_bytes (one by one), so ingest
// goes on; the undelivered event stays.
func TestEvictPastUndelivered(t *testing.T) {
	tr := &testRegistry{}
	a, b := newSwitchSink(true), newSwitchSink(false)
	tr.set("a", a.send)
	tr.set("b", b.send)
	h := startHarness(t, tr, historyServerConfig(t.TempDir(), "  max_bytes: 128KiB", `
rules:
  - {name: to-a, when: 'event == "a"', sinks: [a]}
  - {name: to-b, when: 'event == "b"', sinks: [b]}
`))
	h.mustAccept("msg_a", `{"event":"a"}`)
	for i := range 150 { // about three times what 128 KiB holds
		id := fmt.Sprintf("msg_b%d", i)
		if code, answer := h.post(id, padded("b", 2000)); code != 200 {
			t.Fatalf("%s: %d %s (the store should have given up delivered events)", id, code, answer)
		}
		if d := b.rec.wait(t, 10*time.Second); d.MsgID != id {
			t.Fatalf("b got %s, want %s", d.MsgID, id)
		}
	}
	if n := metricFloat(h, "relay_history_evicted_total"); n <= 0 {
		t.Errorf("relay_history_evicted_total: %v", n)
	}
	var e StoredEvent
	if code := h.admin("GET", "/api/v1/events/1", &e); code != 200 || e.MsgID != "msg_a" {
		t.Errorf("the undelivered event: %d %+v", code, e)
	}
}
