package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/sinks"
)

func TestDeliveryOncePerSink(t *testing.T) {
	tr := &testRegistry{}
	a, b := newRecorder(), newRecorder()
	tr.set("a", a.send)
	tr.set("b", b.send)
	h := startHarness(t, tr, testServerConfig(t.TempDir(), twoRules))

	h.mustAccept("msg_1", sampleBody)
	if code, answer := h.post("msg_1", sampleBody); code != 200 || !strings.Contains(answer, `"duplicate"`) {
		t.Fatalf("repeat: got %d %s, want 200 duplicate", code, answer)
	}
	da := a.wait(t, 10*time.Second)
	db := b.wait(t, 10*time.Second)
	if !slices.Equal(da.Rules, []string{"failures", "everything"}) {
		t.Errorf("a: rules %v, want [failures everything]", da.Rules)
	}
	if !slices.Equal(db.Rules, []string{"everything"}) {
		t.Errorf("b: rules %v, want [everything]", db.Rules)
	}
	if da.MsgID != "msg_1" || da.Source != "recall" || da.Event != "transcript.failed" || da.Attempt != 1 {
		t.Errorf("a: got %+v", da)
	}
	if string(da.Body) != sampleBody {
		t.Errorf("a: body changed: %s", da.Body)
	}
	if da.Data["sub_code_reason"] == "" {
		t.Errorf("a: template data lacks sub_code_reason: %v", da.Data)
	}
	// Two rules routed the event to a, and the sender repeated it: still
	// one delivery per sink.
	a.none(t, 300*time.Millisecond)
	b.none(t, 0)
}

func TestDeliveryRetryThenSuccess(t *testing.T) {
	tr := &testRegistry{}
	rec := newRecorder()
	var calls atomic.Int32
	tr.set("a", func(ctx context.Context, d sinks.Delivery) error {
		if calls.Add(1) <= 2 {
			return sinks.RetryAfter(errBoom, 20*time.Millisecond)
		}
		return rec.send(ctx, d)
	})
	h := startHarness(t, tr, testServerConfig(t.TempDir(), twoRules))
	h.mustAccept("msg_r", sampleBody)
	d := rec.wait(t, 10*time.Second)
	if d.Attempt != 3 {
		t.Errorf("delivered at attempt %d, want 3", d.Attempt)
	}
	if n := len(h.deadLetters("a")); n != 0 {
		t.Errorf("%d dead letters, want 0", n)
	}
}

func TestDeliveryDeadLetters(t *testing.T) {
	tr := &testRegistry{}
	tr.set("a", func(context.Context, sinks.Delivery) error {
		return sinks.Permanent(errBoom) // dead-lettered at once
	})
	tr.set("b", func(context.Context, sinks.Delivery) error {
		return errBoom // retried until max_attempts (3)
	})
	h := startHarness(t, tr, testServerConfig(t.TempDir(), twoRules))
	h.mustAccept("msg_d", sampleBody)

	eventually(t, 10*time.Second, "two dead letters", func() bool {
		return len(h.deadLetters("a")) == 1 && len(h.deadLetters("b")) == 1
	})
	da := h.deadLetters("a")[0]
	if da.Attempts != 1 || da.LastError != "boom" || da.MsgID != "msg_d" || da.Source != "recall" ||
		da.Event != "transcript.failed" || !slices.Equal(da.Rules, []string{"failures", "everything"}) {
		t.Errorf("permanent: got %+v", da)
	}
	db := h.deadLetters("b")[0]
	if db.Attempts != 3 || db.LastError != "gave up after 3 attempts: boom" {
		t.Errorf("exhausted: got %+v", db)
	}
	if db.FirstAttemptAt.IsZero() || db.LastAttemptAt.Before(db.FirstAttemptAt) {
		t.Errorf("exhausted: attempt times %v .. %v", db.FirstAttemptAt, db.LastAttemptAt)
	}

	var one DeadLetter
	if code := h.admin(http.MethodGet, "/api/v1/dlq/"+u64(da.ID), &one); code != 200 {
		t.Fatalf("show: %d", code)
	}
	if string(one.Payload) != sampleBody {
		t.Errorf("show: payload %s, want the original body", one.Payload)
	}
	if code := h.admin(http.MethodGet, "/api/v1/dlq/999", nil); code != 404 {
		t.Errorf("show missing: got %d, want 404", code)
	}

	// Replay a's dead letter to a sink that now works.
	rec := newRecorder()
	tr.set("a", rec.send)
	if code := h.admin(http.MethodPost, "/api/v1/dlq/"+u64(da.ID)+"/replay", nil); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	d := rec.wait(t, 10*time.Second)
	if d.Attempt != 1 || d.MsgID != "msg_d" || !slices.Equal(d.Rules, []string{"failures", "everything"}) || string(d.Body) != sampleBody {
		t.Errorf("replayed delivery: got %+v", d)
	}
	if n := len(h.deadLetters("a")); n != 0 {
		t.Errorf("after replay: %d dead letters of a, want 0", n)
	}
	if n := len(h.deadLetters("b")); n != 1 {
		t.Errorf("after replay: %d dead letters of b, want 1 (replay is per dead letter)", n)
	}
	if code := h.admin(http.MethodDelete, "/api/v1/dlq?sink=b", nil); code != 200 {
		t.Fatalf("purge: %d", code)
	}
	if n := len(h.deadLetters("")); n != 0 {
		t.Errorf("after purge: %d dead letters, want 0", n)
	}
}

func TestSlowSinkDoesNotDelayAnother(t *testing.T) {
	tr := &testRegistry{}
	release := make(chan struct{})
	defer close(release)
	tr.set("a", func(ctx context.Context, d sinks.Delivery) error {
		select { // stuck until the end of the test
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	fast := newRecorder()
	tr.set("b", fast.send)
	h := startHarness(t, tr, testServerConfig(t.TempDir(), twoRules))
	for i := range 20 {
		h.mustAccept("msg_s"+u64(uint64(i)), sampleBody)
	}
	for range 20 {
		fast.wait(t, 10*time.Second)
	}
}

func u64(n uint64) string { return strconvU(n) }

// TestStopLeavesQueued: a delivery still in flight when the shutdown grace
// ends stays queued and is delivered by the next start (within ack_wait).
func TestStopLeavesQueued(t *testing.T) {
	tr := &testRegistry{}
	started := make(chan struct{}, 1)
	tr.set("a", func(ctx context.Context, d sinks.Delivery) error {
		started <- struct{}{}
		<-ctx.Done() // hangs until the grace runs out
		return ctx.Err()
	})
	dir := t.TempDir()
	yaml := strings.Replace(testServerConfig(dir, onlyB), "sinks: [b]", "sinks: [a]", 1)
	yaml = strings.Replace(yaml, "shutdown_grace: 5s", "shutdown_grace: 200ms", 1)
	srv := startServer(t, tr, yaml)
	h := newHarness(t, srv)
	h.mustAccept("msg_q", sampleBody)
	<-started
	begin := time.Now()
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("stop took %s with a 200ms grace", took)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	rec := newRecorder()
	tr.set("a", rec.send)
	srv = startServer(t, tr, yaml)
	defer srv.Stop(context.Background())
	if d := rec.wait(t, 15*time.Second); d.MsgID != "msg_q" || d.Attempt != 2 {
		t.Errorf("after restart: got %s attempt %d, want msg_q attempt 2", d.MsgID, d.Attempt)
	}
}

func TestReadyz(t *testing.T) {
	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	if code := h.admin(http.MethodGet, "/readyz", nil); code != 200 {
		t.Errorf("readyz: got %d, want 200", code)
	}
	if code := h.admin(http.MethodGet, "/healthz", nil); code != 200 {
		t.Errorf("healthz: got %d, want 200", code)
	}
	h.srv.ingest.draining.Store(true)
	if code := h.admin(http.MethodGet, "/readyz", nil); code != 503 {
		t.Errorf("readyz while draining: got %d, want 503", code)
	}
	h.srv.ingest.draining.Store(false)
	h.srv.store.nc.Close() // the store is gone
	if code := h.admin(http.MethodGet, "/readyz", nil); code != 503 {
		t.Errorf("readyz without a store: got %d, want 503", code)
	}
	if code, _ := h.post("msg_x", sampleBody); code != 503 {
		t.Errorf("ingest without a store: got %d, want 503", code)
	}
}

// TestSinkConcurrencyBound: no more deliveries are in flight to a sink
// than its concurrency.
func TestSinkConcurrencyBound(t *testing.T) {
	tr := &testRegistry{}
	release := make(chan struct{})
	var mu sync.Mutex
	inFlight, peak := 0, 0
	entered := make(chan struct{}, 100)
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	})
	yaml := strings.Replace(testServerConfig(t.TempDir(), onlyB), "  b:\n    type: fake\n", "  b:\n    type: fake\n    concurrency: 2\n", 1)
	h := startHarness(t, tr, yaml)
	for i := range 10 {
		h.mustAccept(fmt.Sprintf("msg_c%d", i), sampleBody)
	}
	<-entered
	<-entered
	select {
	case <-entered:
		t.Fatal("a third delivery started with concurrency 2")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	for range 8 {
		<-entered
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 2 {
		t.Errorf("peak in flight %d, want 2", peak)
	}
}

// TestRetryLoggedOncePerErrorText: a sink failing again and again with the
// same error logs it once, and again only when the text changes.
func TestRetryLoggedOncePerErrorText(t *testing.T) {
	tr := &testRegistry{}
	var calls atomic.Int32
	rec := newRecorder()
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		switch n := calls.Add(1); {
		case n <= 3:
			return errBoom
		case n == 4:
			return errors.New("other")
		}
		return rec.send(ctx, d)
	})
	yaml := strings.Replace(testServerConfig(t.TempDir(), onlyB), "max_attempts: 3", "max_attempts: 10", 1)
	var logs lockedLog
	srv := startServerLogging(t, tr, yaml, slog.New(slog.NewJSONHandler(&logs, nil)))
	defer srv.Stop(context.Background())
	newHarness(t, srv).mustAccept("msg_log", sampleBody)
	rec.wait(t, 10*time.Second)
	// The worker logs the recovery after the send has returned.
	eventually(t, 10*time.Second, "a recovery line", func() bool {
		return strings.Contains(logs.String(), `"msg":"sink recovered"`)
	})
	out := logs.String()
	if got := strings.Count(out, `"msg":"delivery failed, will retry"`); got != 2 {
		t.Errorf("%d retry lines for 3 x boom then other, want 2:\n%s", got, out)
	}
}

// TestDeadLetterLogNamesSinkOnce: the dead-letter line names its sink once.
// The worker's logger already carries "sink"; a line that adds it again
// has the key twice in JSON, which log pipelines disagree on.
func TestDeadLetterLogNamesSinkOnce(t *testing.T) {
	tr := &testRegistry{}
	tr.set("b", func(context.Context, sinks.Delivery) error { return sinks.Permanent(errBoom) })
	var logs lockedLog
	srv := startServerLogging(t, tr, testServerConfig(t.TempDir(), onlyB), slog.New(slog.NewJSONHandler(&logs, nil)))
	defer srv.Stop(context.Background())
	newHarness(t, srv).mustAccept("msg_dl", sampleBody)
	var line string
	eventually(t, 10*time.Second, "a dead-letter line", func() bool {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, `"msg":"delivery dead-lettered"`) {
				line = l
				return true
			}
		}
		return false
	})
	keys, err := topLevelKeys(line)
	if err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if n := keys["sink"]; n != 1 {
		t.Errorf(`"sink" %d times, want once: %s`, n, line)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["sink"] != "b" || rec["msg_id"] != "msg_dl" {
		t.Errorf("line %s: want sink b and msg_id msg_dl (err %v)", line, err)
	}
}

// topLevelKeys counts how often each key appears in the JSON object line,
// duplicates included (encoding/json keeps only the last).
func topLevelKeys(line string) (map[string]int, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object (%v)", err)
	}
	keys := make(map[string]int)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys[tok.(string)]++
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeadLetterPages: the list is newest first and pages with the cursor.
func TestDeadLetterPages(t *testing.T) {
	tr := &testRegistry{}
	tr.set("b", func(context.Context, sinks.Delivery) error { return sinks.Permanent(errBoom) })
	h := startHarness(t, tr, testServerConfig(t.TempDir(), onlyB))
	for i := range 5 {
		h.mustAccept(fmt.Sprintf("msg_p%d", i), sampleBody)
	}
	eventually(t, 10*time.Second, "5 dead letters", func() bool { return len(h.deadLetters("b")) == 5 })

	var ids []uint64
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("more pages than dead letters")
		}
		var page struct {
			DeadLetters []DeadLetter `json:"dead_letters"`
			NextCursor  string       `json:"next_cursor"`
		}
		if code := h.admin(http.MethodGet, "/api/v1/dlq?limit=2&cursor="+cursor, &page); code != 200 {
			t.Fatalf("list: %d", code)
		}
		if len(page.DeadLetters) > 2 {
			t.Fatalf("page of %d, want at most 2", len(page.DeadLetters))
		}
		for _, dl := range page.DeadLetters {
			ids = append(ids, dl.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(ids) != 5 {
		t.Fatalf("got %d dead letters over the pages, want 5", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Errorf("not newest first: %v", ids)
		}
	}
	for _, bad := range []string{"limit=0", "limit=5000", "limit=x", "cursor=abc"} {
		if code := h.admin(http.MethodGet, "/api/v1/dlq?"+bad, nil); code != 400 {
			t.Errorf("%s: got %d, want 400", bad, code)
		}
	}
}

// TestSinkSeesOnlyItsEvents: the subject an event is stored under names its
// sinks, so a sink's consumer is handed only the events routed to it; an
// event routed nowhere is not stored; one routed to more sinks than a
// subject names reaches each of them through the route header.
func TestSinkSeesOnlyItsEvents(t *testing.T) {
	const many = maxSubjectSinks + 1
	tr := &testRegistry{}
	recs := map[string]*recorder{}
	var sinksYAML, all strings.Builder
	for i := range many {
		name := fmt.Sprintf("s%d", i)
		recs[name] = newRecorder()
		tr.set(name, recs[name].send)
		fmt.Fprintf(&sinksYAML, "  %s:\n    type: fake\n", name)
		if i > 0 {
			all.WriteString(", ")
		}
		all.WriteString(name)
	}
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: %s
sources:
  recall:
    secrets: [%s]
sinks:
%srules:
  - name: failed-to-s0
    when: status == "failed"
    sinks: [s0]
  - name: done-to-s1-s2
    when: event == "recording.done"
    sinks: [s2, s1]
  - name: fatal-to-all
    when: event == "bot.fatal"
    sinks: [%s]
`, t.TempDir(), testSecret, sinksYAML.String(), all.String())
	h := startHarness(t, tr, yaml)

	h.mustAccept("msg_failed", sampleBody)
	h.mustAccept("msg_done", `{"event":"recording.done","data":{"data":{"code":"done"}}}`)
	h.mustAccept("msg_nowhere", `{"event":"bot.joining_call","data":{"data":{"code":"joining_call"}}}`)
	h.mustAccept("msg_fatal", `{"event":"bot.fatal","data":{"data":{"code":"fatal"}}}`)
	if code, answer := h.post("msg_nowhere", `{"event":"bot.joining_call","data":{"data":{"code":"joining_call"}}}`); code != 200 || !strings.Contains(answer, `"duplicate"`) {
		t.Fatalf("repeat of an event routed nowhere: got %d %s, want 200 duplicate", code, answer)
	}

	want := map[string][]string{ // sink -> msg ids, in order
		"s0": {"msg_failed", "msg_fatal"},
		"s1": {"msg_done", "msg_fatal"},
		"s2": {"msg_done", "msg_fatal"},
	}
	for i := 3; i < many; i++ {
		want[fmt.Sprintf("s%d", i)] = []string{"msg_fatal"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, ids := range want {
		for _, id := range ids {
			if d := recs[name].wait(t, 10*time.Second); d.MsgID != id {
				t.Fatalf("%s: got %s, want %s", name, d.MsgID, id)
			}
		}
		// The server handed the consumer only these (and, for the event
		// routed to every sink, no other).
		info, err := h.srv.engine.workers[name].cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Delivered.Consumer; got != uint64(len(ids)) {
			t.Errorf("%s: the server handed its consumer %d messages, want %d", name, got, len(ids))
		}
	}
	for _, r := range recs {
		r.none(t, 0)
	}
	// Everything settled: history may be trimmed past the last event.
	var safe, last uint64
	settled := poll(10*time.Second, func() bool {
		info, err := h.srv.store.events.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		floors, err := h.srv.store.sinkFloors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		safe, last = floors.safeSeq(info), info.State.LastSeq
		return safe == last+1
	})
	if !settled {
		t.Fatalf("the store may be trimmed up to %d, not past the last event %d, 10s after every delivery", safe, last)
	}
}

func TestRouteFiltersMatchEventSubjects(t *testing.T) {
	route := func(names ...string) map[string][]string {
		r := map[string][]string{}
		for _, n := range names {
			r[n] = []string{"rule"}
		}
		return r
	}
	tests := []struct {
		route map[string][]string
		subj  string
	}{
		{route(), "relay.to.recall"},
		{route("b", "a"), "relay.to.recall.a.b"},
		{route("a-1", "a_2", "Z"), "relay.to.recall.Z.a-1.a_2"},
		{route("s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"), "relay.events.recall"},
	}
	for _, tt := range tests {
		got := eventSubject("recall", slices.Sorted(maps.Keys(tt.route)))
		if got != tt.subj {
			t.Errorf("eventSubject(%v) = %s, want %s", tt.route, got, tt.subj)
		}
		// Exactly the consumers of the routed sinks read a routed subject;
		// every consumer reads relay.events.<source>.
		fallback := strings.HasPrefix(got, eventsSubject)
		for _, sink := range []string{"a", "b", "Z", "a-1", "a_2", "s0", "s8", "other"} {
			_, routed := tt.route[sink]
			matched := slices.ContainsFunc(routeFilters(sink), func(f string) bool { return subjectMatches(f, got) })
			if want := routed || fallback; matched != want {
				t.Errorf("subject %s: sink %s reads it: %v, want %v", got, sink, matched, want)
			}
		}
	}
}

// subjectMatches is NATS subject matching: "*" one token, ">" the rest.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// TestUpgradeKeepsEarlierEvents: a store written by a version that kept
// every event under relay.events.<source> and filtered consumers on it (or
// not at all) is delivered from after an upgrade, and the consumers get the
// routing filters.
func TestUpgradeKeepsEarlierEvents(t *testing.T) {
	dir := t.TempDir()
	yaml := testServerConfig(dir, twoRules)
	// First start: creates the streams and the consumers; then stop.
	h := startServer(t, &testRegistry{}, yaml)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// As the earlier version left it: consumer a unfiltered, b on the old
	// pair of filters, and an event for both under relay.events.recall.
	s, err := openJetStream(ctx, StorageConfig{Dir: dir, SyncInterval: time.Second, DedupeWindow: time.Hour}, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for sink, filters := range map[string][]string{"a": nil, "b": {eventsSubject + ">", replaySubject + "b"}} {
		cfg := consumerConfig(sink, 4, 5*time.Second)
		cfg.FilterSubjects = filters
		if _, err := s.events.UpdateConsumer(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg(eventsSubject + "recall")
	m.Data = []byte(sampleBody)
	m.Header.Set(hdrMsgID, "msg_old")
	m.Header.Set(hdrSource, "recall")
	m.Header.Set(hdrReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(hdrRoute, `{"a":["failures","everything"],"b":["everything"]}`)
	if _, err := s.js.PublishMsg(ctx, m, jetstream.WithMsgID("recall:msg_old")); err != nil {
		t.Fatal(err)
	}
	s.close()

	tr := &testRegistry{}
	a, b := newRecorder(), newRecorder()
	tr.set("a", a.send)
	tr.set("b", b.send)
	h2 := startHarness(t, tr, yaml)
	for name, r := range map[string]*recorder{"a": a, "b": b} {
		if d := r.wait(t, 10*time.Second); d.MsgID != "msg_old" || d.Source != "recall" {
			t.Fatalf("%s: got %s from %s, want msg_old from recall", name, d.MsgID, d.Source)
		}
		info, err := h2.srv.engine.workers[name].cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(info.Config.FilterSubjects, routeFilters(name)) {
			t.Errorf("%s: filters %v after the upgrade, want %v", name, info.Config.FilterSubjects, routeFilters(name))
		}
	}
	// New events take the routed subjects and still arrive once.
	h2.mustAccept("msg_new", sampleBody)
	if d := a.wait(t, 10*time.Second); d.MsgID != "msg_new" {
		t.Fatalf("a: got %s, want msg_new", d.MsgID)
	}
	if d := b.wait(t, 10*time.Second); d.MsgID != "msg_new" {
		t.Fatalf("b: got %s, want msg_new", d.MsgID)
	}
	a.none(t, 200*time.Millisecond)
	b.none(t, 0)
}

// TestLongDeliveryIsNotRedelivered: a delivery that takes longer than
// ack_wait keeps its message with progress heartbeats, so JetStream does not
// hand it out again meanwhile.
func TestLongDeliveryIsNotRedelivered(t *testing.T) {
	tr := &testRegistry{}
	calls := make(chan string, 10)
	release := make(chan struct{})
	tr.set("a", func(ctx context.Context, d sinks.Delivery) error {
		calls <- d.MsgID
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	yaml := strings.Replace(testServerConfig(t.TempDir(), twoRules), "  ack_wait: 5s\n", "  ack_wait: 1s\n", 1)
	h := startHarness(t, tr, yaml)
	h.mustAccept("msg_slow", sampleBody)
	select {
	case id := <-calls:
		if id != "msg_slow" {
			t.Fatalf("delivered %s, want msg_slow", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	// Three ack_waits with the delivery in flight: no second attempt.
	select {
	case id := <-calls:
		t.Fatalf("%s handed out again while its delivery was in flight", id)
	case <-time.After(3 * time.Second):
	}
	close(release)
	select {
	case id := <-calls:
		t.Fatalf("%s delivered again after it succeeded", id)
	case <-time.After(1500 * time.Millisecond):
	}
}

// TestAttemptersReusedAndStopped: a sink's attempts run on goroutines its
// worker reuses, at most twice its concurrency of them, and none of them
// is left once the relay has stopped.
func TestAttemptersReusedAndStopped(t *testing.T) {
	before := attempters()
	tr := &testRegistry{}
	var mu sync.Mutex
	ran := map[string]bool{} // the goroutines the attempts ran on
	sent := make(chan struct{}, 100)
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		var buf [64]byte
		id, _, _ := strings.Cut(string(buf[:runtime.Stack(buf[:], false)]), " [") // "goroutine N"
		mu.Lock()
		ran[id] = true
		mu.Unlock()
		sent <- struct{}{}
		return nil
	})
	yaml := strings.Replace(testServerConfig(t.TempDir(), onlyB), "  b:\n    type: fake\n", "  b:\n    type: fake\n    concurrency: 2\n", 1)
	srv := startServer(t, tr, yaml)
	h := newHarness(t, srv)
	const n = 40
	for i := range n {
		h.mustAccept(fmt.Sprintf("msg_r%d", i), sampleBody)
	}
	for i := range n {
		select {
		case <-sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d events delivered in 10 s", i, n)
		}
	}
	mu.Lock()
	if len(ran) > 4 {
		t.Errorf("%d attempts ran on %d goroutines, want at most 4 (twice the concurrency)", n, len(ran))
	}
	mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stop has cancelled the attempters' context; each returns once it
	// sees that.
	deadline := time.Now().Add(5 * time.Second)
	for attempters() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempters left 5 s after the relay stopped (%d before it started)", attempters(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attempters counts the goroutines running worker.attempter.
func attempters() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "relay.(*worker).attempter(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
