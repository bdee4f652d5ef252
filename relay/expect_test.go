package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/rules"
)

// expectConfig is a relay with a real file sink, "missed", that receives
// the missed events whose recording and bot are those of their after
// event, an HTTP sink rendering a template over the missed event, and
// one expectation whose timers run for within.
func expectConfig(dir, hookURL string, within time.Duration) string {
	return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace: 5s
storage:
  dir: %[1]s/data
  ack_wait: 5s
sources:
  recall:
    secrets: [%[2]s]
retry:
  initial_interval: 10ms
  max_interval: 50ms
sinks:
  missed:
    type: file
    path: %[1]s/missed.jsonl
  hook:
    type: http
    url: %[3]s
    body_template: '{"rec": {{ json .recording.id }}, "bot": {{ json .bot.id }}, "key": {{ json .payload.key }}, "event": {{ json .event }}}'
rules:
  - name: missed-transcripts
    when: event == "relay.expectation_missed" && object == "relay" && status == "expectation_missed" && recording.id == payload.key && bot.id == "bot_1" && source == "recall"
    sinks: [missed, hook]
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript" && status in ["done", "failed"]
    key: recording.id
    within: %[4]s
`, dir, testSecret, hookURL, within)
}

func recordingDone(rec string) string {
	return `{"event":"recording.done","data":{"data":{"code":"done"},"recording":{"id":"` + rec + `","metadata":{}},"bot":{"id":"bot_1","metadata":{"customer":"c"}}}}`
}

func transcriptDone(rec string) string {
	return `{"event":"transcript.done","data":{"data":{"code":"done"},"transcript":{"id":"t_` + rec + `"},"recording":{"id":"` + rec + `"},"bot":{"id":"bot_1"}}}`
}

// fileLine is one line of the file sink.
type fileLine struct {
	ReceivedAt time.Time       `json:"received_at"`
	Source     string          `json:"source"`
	MsgID      string          `json:"msg_id"`
	Event      string          `json:"event"`
	Rules      []string        `json:"rules"`
	Payload    json.RawMessage `json:"payload"`
}

func readLines(t *testing.T, path string) []fileLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []fileLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l fileLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// settled waits until the relay holds no fired timer and no delivery for
// the given sinks: everything that ran out so far is in the sinks.
func settled(t *testing.T, srv *Server, sinks ...string) {
	t.Helper()
	eventually(t, 20*time.Second, "fired timers and deliveries settled", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cons, err := srv.timers.stream.Consumer(ctx, firedConsumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		if err != nil || info.NumPending+uint64(info.NumAckPending) > 0 {
			return false
		}
		for _, sink := range sinks {
			c, err := srv.store.events.Consumer(ctx, sinkConsumerName(sink))
			if err != nil {
				return false
			}
			ci, err := c.Info(ctx)
			if err != nil || ci.NumPending+uint64(ci.NumAckPending) > 0 {
				return false
			}
		}
		return true
	})
}

func metricValue(t *testing.T, h *harness, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestExpectations: a met expectation emits nothing; a missed one exactly
// one missed event, with the after event's recording, bot and body, to a
// real file sink and through a template; an expect that arrives before its
// after does not settle the later timer; a sender's retry of the after
// event does not restart its timer; a fired timer handed out twice is
// stored once.
func TestExpectations(t *testing.T) {
	hook, hookSrv := newCapture()
	defer hookSrv.Close()
	dir := t.TempDir()
	h := startRealHarness(t, expectConfig(dir, hookSrv.URL, 2*time.Second))
	const openSeries = `relay_expectations_open{expectation="transcript-arrives"}`

	h.mustAccept("msg_t_early", transcriptDone("rec_early")) // before its after
	h.mustAccept("msg_a_early", recordingDone("rec_early"))
	h.mustAccept("msg_a_met", recordingDone("rec_met"))
	if got := metricValue(t, h, openSeries); got != "2" {
		t.Errorf("open timers: %s, want 2", got)
	}
	h.mustAccept("msg_t_met", transcriptDone("rec_met"))
	if got := metricValue(t, h, openSeries); got != "1" {
		t.Errorf("open timers after a settle: %s, want 1", got)
	}
	h.mustAccept("msg_a_missed", recordingDone("rec_missed"))
	// The sender retries the after event: a duplicate, the timer runs on.
	if code, answer := h.post("msg_a_missed", recordingDone("rec_missed")); code != 200 || !strings.Contains(answer, "duplicate") {
		t.Fatalf("retry: %d %s", code, answer)
	}

	path := filepath.Join(dir, "missed.jsonl")
	eventually(t, 20*time.Second, "two missed events in the file", func() bool { return len(readLines(t, path)) >= 2 })
	settled(t, h.srv, "missed", "hook")
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d missed events, want 2: %+v", len(lines), lines)
	}
	for i, rec := range []string{"rec_early", "rec_missed"} {
		l := lines[i]
		var p struct {
			Expectation string          `json:"expectation"`
			Key         string          `json:"key"`
			Deadline    time.Time       `json:"deadline"`
			After       json.RawMessage `json:"after"`
		}
		if err := json.Unmarshal(l.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if l.Event != rules.MissedEvent || l.Source != "recall" || p.Expectation != "transcript-arrives" || p.Key != rec ||
			l.MsgID != rules.MissedID("transcript-arrives", rec, "msg_a_"+strings.TrimPrefix(rec, "rec_")) ||
			strings.Join(l.Rules, ",") != "missed-transcripts" {
			t.Errorf("line %d: %+v, payload %+v", i, l, p)
		}
		var after bytes.Buffer
		_ = json.Compact(&after, []byte(recordingDone(rec)))
		if string(p.After) != after.String() {
			t.Errorf("payload.after %s, want %s", p.After, after.String())
		}
		if l.ReceivedAt.Before(p.Deadline) {
			t.Errorf("injected at %s, before its deadline %s", l.ReceivedAt, p.Deadline)
		}
	}
	hook.mu.Lock()
	bodies := append([][]byte(nil), hook.body...)
	hook.mu.Unlock()
	if len(bodies) != 2 || string(bodies[0]) != `{"rec": "rec_early", "bot": "bot_1", "key": "rec_early", "event": "relay.expectation_missed"}` {
		t.Errorf("templated deliveries: %q", bodies)
	}
	if got := metricValue(t, h, `relay_expectations_missed_total{expectation="transcript-arrives"}`); got != "2" {
		t.Errorf("missed total %s, want 2", got)
	}
	if got := metricValue(t, h, openSeries); got != "0" {
		t.Errorf("open timers at the end: %s, want 0", got)
	}

	// A fired timer handed out again (a crash before its ack, a second
	// relay) is injected again and dropped by the store as a duplicate.
	rec, _ := json.Marshal(timerRecord{Expectation: "transcript-arrives", Key: "rec_missed", Deadline: time.Now(),
		Source: "recall", MsgID: "msg_a_missed", After: json.RawMessage(recordingDone("rec_missed"))})
	if _, err := h.srv.store.js.PublishMsg(t.Context(), &nats.Msg{Subject: firedSubject + "transcript-arrives", Data: rec}); err != nil {
		t.Fatal(err)
	}
	settled(t, h.srv, "missed")
	if n := len(readLines(t, path)); n != 2 {
		t.Errorf("%d missed events after a repeat, want 2", n)
	}
}

// TestExpectationStreamSettings holds the timer stream to what the design
// relies on.
func TestExpectationStreamSettings(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(ctx, t)
	defer s.close()
	st, err := s.ensureExpectStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.Retention != jetstream.WorkQueuePolicy || !c.AllowMsgSchedules || c.Duplicates != time.Hour {
		t.Errorf("stream config %+v", c)
	}
}

// TestMissedEventReplayed: a missed event dead-lettered by a sink and
// replayed is still decoded as a missed event: the template sees the
// after event's recording.
func TestMissedEventReplayed(t *testing.T) {
	hook, hookSrv := newCapture(func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	defer hookSrv.Close()
	dir := t.TempDir()
	h := startRealHarness(t, expectConfig(dir, hookSrv.URL, time.Second))
	h.mustAccept("msg_a", recordingDone("rec_r"))
	hook.wait(t, 1)
	var dead []DeadLetter
	eventually(t, 20*time.Second, "the dead letter", func() bool { dead = h.deadLetters("hook"); return len(dead) == 1 })
	if dead[0].Event != rules.MissedEvent {
		t.Errorf("dead letter event %q", dead[0].Event)
	}
	if code := h.admin(http.MethodPost, fmt.Sprintf("/api/v1/dlq/%d/replay", dead[0].ID), nil); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	hook.wait(t, 1)
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if got := string(hook.body[1]); got != `{"rec": "rec_r", "bot": "bot_1", "key": "rec_r", "event": "relay.expectation_missed"}` {
		t.Errorf("replayed delivery: %s", got)
	}
}

// TestExpectationRemovedByReload: a timer whose expectation a reload
// removed runs out into nothing.
func TestExpectationRemovedByReload(t *testing.T) {
	hook, hookSrv := newCapture()
	defer hookSrv.Close()
	dir := t.TempDir()
	yaml := expectConfig(dir, hookSrv.URL, 2*time.Second)
	h := startRealHarness(t, yaml)
	h.mustAccept("msg_a", recordingDone("rec_1"))
	without := yaml[:strings.Index(yaml, "expectations:")]
	if err := os.WriteFile(h.path, []byte(without), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the timer to run out", func() bool {
		n, err := h.srv.timers.open(t.Context(), "transcript-arrives")
		return err == nil && n == 0
	})
	settled(t, h.srv, "missed", "hook")
	if lines := readLines(t, filepath.Join(dir, "missed.jsonl")); len(lines) != 0 {
		t.Errorf("missed events after the expectation was removed: %+v", lines)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.body) != 0 {
		t.Errorf("deliveries: %q", hook.body)
	}
}

// TestIngestTimerFailureAnswers503: when the timers cannot be started, the
// stored event is answered 503, so that the sender retries and the retry
// (a duplicate) starts them.
func TestIngestTimerFailureAnswers503(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(ctx, t)
	stream, err := s.ensureExpectStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	h := newTestIngest(t, store)
	set, err := rules.CompileExpectations([]rules.ExpectationSpec{{Name: "x", After: "true", Expect: "false", Key: "recording.id", Within: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	routes := *h.routes.Load()
	routes.expect = set
	h.routes.Store(&routes)
	h.timers = &timers{store: s, stream: stream, log: discardLogger(), metrics: h.metrics, now: time.Now}

	post := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, signed(t, testSecret, "msg_1", testNow, recordingDone("rec_1"), "svix"))
		return w.Code
	}
	s.close() // the store goes away
	if code := post(); code != http.StatusServiceUnavailable || len(store.events) != 1 {
		t.Fatalf("got %d with %d events stored, want 503 with the event stored", code, len(store.events))
	}
	s = openTestStore(ctx, t)
	defer s.close()
	if h.timers.stream, err = s.ensureExpectStream(ctx); err != nil {
		t.Fatal(err)
	}
	h.timers.store = s
	if code := post(); code != http.StatusOK {
		t.Fatalf("retry: %d", code)
	}
	if n, err := h.timers.open(ctx, "x"); err != nil || n != 1 {
		t.Errorf("open timers after the retry: %d, %v", n, err)
	}
}
