package relay

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

// withSinkB returns a test config whose sink b has the given extra keys
// (indented YAML lines) and whose retry block is replaced by retry.
func withSinkB(t *testing.T, extra, retry string) string {
	yaml := testServerConfig(t.TempDir(), onlyB)
	yaml = strings.Replace(yaml, "  b:\n    type: fake\n", "  b:\n    type: fake\n"+extra, 1)
	return strings.Replace(yaml, "retry:\n  max_attempts: 3\n  initial_interval: 10ms\n  max_interval: 50ms\n", retry, 1)
}

// TestPoisonedEventDoesNotBlockItsSink: with concurrency 1, an event the
// destination refuses forever keeps retrying while the events after it
// are delivered: its waits for a retry hold no slot.
func TestPoisonedEventDoesNotBlockItsSink(t *testing.T) {
	tr := &testRegistry{}
	rec := newRecorder()
	var badCalls atomic.Int32
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		if d.MsgID == "msg_bad" {
			badCalls.Add(1)
			return &sinks.StatusError{Code: 500, Status: "500 Internal Server Error"}
		}
		return rec.send(ctx, d)
	})
	yaml := withSinkB(t, "    concurrency: 1\n", "retry:\n  max_attempts: 1000\n  initial_interval: 100ms\n  max_interval: 200ms\n")
	h := startHarness(t, tr, yaml)
	h.mustAccept("msg_bad", sampleBody)
	eventually(t, 10*time.Second, "the first attempt of the bad event", func() bool { return badCalls.Load() >= 1 })
	start := time.Now()
	for i := range 100 {
		h.mustAccept(fmt.Sprintf("msg_ok%d", i), sampleBody)
	}
	for i := range 100 {
		// Concurrency 1 and nothing failing among them: in order.
		if d, want := rec.wait(t, 10*time.Second), fmt.Sprintf("msg_ok%d", i); d.MsgID != want {
			t.Fatalf("delivered %s, want %s", d.MsgID, want)
		}
	}
	took := time.Since(start)
	t.Logf("100 events accepted and delivered behind the bad one in %s; it was tried %d times", took, badCalls.Load())
	if took > 5*time.Second {
		t.Errorf("100 healthy events took %s behind a failing one, want a few seconds at most", took)
	}
	before := badCalls.Load()
	eventually(t, 10*time.Second, "the bad event retried again", func() bool { return badCalls.Load() > before })
	if n := len(h.deadLetters("b")); n != 0 {
		t.Errorf("%d dead letters, want 0 (the bad event keeps retrying)", n)
	}
}

// attemptLog records the attempts a fake sink sees, with their times.
type attemptLog struct {
	mu    sync.Mutex
	at    []time.Time
	ids   []string
	count atomic.Int32
}

func (a *attemptLog) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = append(a.at, time.Now())
	a.ids = append(a.ids, id)
	a.count.Add(1)
}

func (a *attemptLog) snapshot() ([]time.Time, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.at...), append([]string(nil), a.ids...)
}

// TestBreakerOpensProbesCloses: after `failures` failed attempts in a row
// the sink gets one probe per cooldown and nothing else; the gauge and the
// log say so; when a probe succeeds the breaker closes and the backlog is
// delivered, nothing dead-lettered.
func TestBreakerOpensProbesCloses(t *testing.T) {
	tr := &testRegistry{}
	rec := newRecorder()
	var attempts attemptLog
	var down atomic.Bool
	down.Store(true)
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		attempts.add(d.MsgID)
		if down.Load() {
			return &sinks.StatusError{Code: 503, Status: "503 Service Unavailable"}
		}
		return rec.send(ctx, d)
	})
	const cooldown = 300 * time.Millisecond
	// max_attempts above breaker.failures: the first event's own attempts,
	// which open the breaker, must not also exhaust it (the probes that
	// follow do not count against any event).
	yaml := withSinkB(t, "    concurrency: 1\n    breaker: {failures: 3, cooldown: 300ms}\n", "retry:\n  max_attempts: 5\n  initial_interval: 10ms\n  max_interval: 20ms\n")
	var logs lockedLog
	srv := startServerLogging(t, tr, yaml, slog.New(slog.NewJSONHandler(&logs, nil)))
	defer srv.Stop(context.Background())
	h := newHarness(t, srv)
	if !strings.Contains(h.scrape(), `relay_sink_breaker_open{sink="b"} 0`) {
		t.Error(`relay_sink_breaker_open{sink="b"} is not 0 from the start`)
	}
	for i := range 10 {
		h.mustAccept(fmt.Sprintf("msg_%d", i), sampleBody)
	}
	eventually(t, 10*time.Second, "the breaker to open", func() bool {
		return strings.Contains(h.scrape(), `relay_sink_breaker_open{sink="b"} 1`)
	})
	if !strings.Contains(logs.String(), `"msg":"sink breaker opened: deliveries wait for a probe"`) ||
		!strings.Contains(logs.String(), `"err":"status 503 Service Unavailable"`) {
		t.Errorf("no warning with the error when the breaker opened:\n%s", logs.String())
	}
	// Three failures in a row opened it; then one probe per cooldown.
	eventually(t, 10*time.Second, "three probes", func() bool { return attempts.count.Load() >= 3+3 })
	times, _ := attempts.snapshot()
	for i := 3; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < cooldown-50*time.Millisecond {
			t.Errorf("attempts %d and %d only %s apart while the breaker was open", i-1, i, gap)
		}
	}

	down.Store(false)
	for range 10 {
		rec.wait(t, 10*time.Second)
	}
	eventually(t, 10*time.Second, "the breaker to close", func() bool {
		return strings.Contains(h.scrape(), `relay_sink_breaker_open{sink="b"} 0`) &&
			strings.Contains(logs.String(), `"msg":"sink breaker closed"`)
	})
	if n := len(h.deadLetters("b")); n != 0 {
		t.Errorf("%d dead letters, want 0: the probes' failures are the sink's, not the events'", n)
	}
}

// TestBreakerHonoursRetryAfter: a Retry-After opens the breaker for that
// long at once: the next event waits for it.
func TestBreakerHonoursRetryAfter(t *testing.T) {
	tr := &testRegistry{}
	rec := newRecorder()
	var attempts attemptLog
	var first atomic.Bool
	const wait = time.Second
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		attempts.add(d.MsgID)
		if first.CompareAndSwap(false, true) {
			return sinks.RetryAfter(&sinks.StatusError{Code: 429, Status: "429 Too Many Requests"}, wait)
		}
		return rec.send(ctx, d)
	})
	yaml := withSinkB(t, "    concurrency: 1\n", "retry:\n  max_attempts: 3\n  initial_interval: 10ms\n  max_interval: 5s\n")
	h := startHarness(t, tr, yaml)
	h.mustAccept("msg_1", sampleBody)
	h.mustAccept("msg_2", sampleBody)
	rec.wait(t, 10*time.Second)
	rec.wait(t, 10*time.Second)
	times, ids := attempts.snapshot()
	if len(times) != 3 || ids[0] != "msg_1" {
		t.Fatalf("attempts %v, want msg_1 refused, then both delivered", ids)
	}
	if gap := times[1].Sub(times[0]); gap < wait-50*time.Millisecond {
		t.Errorf("the next attempt came %s after a Retry-After of %s", gap, wait)
	}
}

// TestSinkDownLongerThanMaxAge: a sink down for longer than max_age (and
// for more attempts than max_attempts) gets its whole backlog when it
// comes back; nothing is dead-lettered, and the down sink was not hammered.
func TestSinkDownLongerThanMaxAge(t *testing.T) {
	tr := &testRegistry{}
	rec := newRecorder()
	var attempts atomic.Int32
	var down atomic.Bool
	down.Store(true)
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		if down.Load() {
			attempts.Add(1)
			return &sinks.StatusError{Code: 503, Status: "503 Service Unavailable"}
		}
		return rec.send(ctx, d)
	})
	const outage = 2 * time.Second
	yaml := withSinkB(t, "    breaker: {failures: 2, cooldown: 100ms}\n", "retry:\n  max_attempts: 3\n  initial_interval: 10ms\n  max_interval: 50ms\n  max_age: 500ms\n")
	h := startHarness(t, tr, yaml)
	start := time.Now()
	for i := range 20 {
		h.mustAccept(fmt.Sprintf("msg_%d", i), sampleBody)
	}
	eventually(t, 10*time.Second, "the breaker to open", func() bool {
		return strings.Contains(h.scrape(), `relay_sink_breaker_open{sink="b"} 1`)
	})
	for time.Since(start) < outage { // the outage: the sink stays down this long
		time.Sleep(50 * time.Millisecond)
		if n := len(h.deadLetters("b")); n != 0 {
			t.Fatalf("%d dead letters during the outage", n)
		}
	}
	down.Store(false)
	seen := map[string]bool{}
	for len(seen) < 20 {
		seen[rec.wait(t, 10*time.Second).MsgID] = true
	}
	if n := len(h.deadLetters("b")); n != 0 {
		t.Errorf("%d dead letters after an outage longer than max_age, want 0", n)
	}
	// 4 first attempts at most (concurrency 4), then one probe per 100ms.
	if n := attempts.Load(); n > 4+int32(outage/(100*time.Millisecond))+5 {
		t.Errorf("the down sink got %d attempts in %s, want about one per cooldown", n, outage)
	}
}

// TestPanicsAreDeadLettered: a sink, or the message it renders, that
// panics in Send dead-letters the delivery with reason "panic: <value>",
// and the relay keeps accepting and delivering. A panic in a function a
// template calls is turned into a render error by text/template itself: a
// permanent error, dead-lettered at once with the panic's text.
func TestPanicsAreDeadLettered(t *testing.T) {
	tmpl, err := sinks.ParseTemplate("t", "{{ .x.Kaboom }}")
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRegistry{}
	rec := newRecorder()
	tr.set("b", func(ctx context.Context, d sinks.Delivery) error {
		switch d.MsgID {
		case "msg_sink":
			panic("kaboom")
		case "msg_render":
			_, err := renderWithABug(d)
			return err
		case "msg_template":
			_, err := tmpl.Render(map[string]any{"x": kaboomer{}})
			return err
		}
		return rec.send(ctx, d)
	})
	h := startHarness(t, tr, testServerConfig(t.TempDir(), onlyB))
	want := map[string]string{
		"msg_sink":     "panic: kaboom",
		"msg_render":   "panic: assignment to entry in nil map",
		"msg_template": `render template: template: t:1:5: executing "t" at <.x.Kaboom>: error calling Kaboom: template kaboom`,
	}
	for id := range want {
		h.mustAccept(id, sampleBody)
	}
	eventually(t, 10*time.Second, "three dead letters", func() bool { return len(h.deadLetters("b")) == 3 })
	for _, dl := range h.deadLetters("b") {
		if dl.LastError != want[dl.MsgID] || dl.Attempts != 1 {
			t.Errorf("%s: reason %q after %d attempts, want %q after 1", dl.MsgID, dl.LastError, dl.Attempts, want[dl.MsgID])
		}
	}
	h.mustAccept("msg_after", sampleBody)
	if d := rec.wait(t, 10*time.Second); d.MsgID != "msg_after" {
		t.Errorf("delivered %s, want msg_after", d.MsgID)
	}
}

// renderWithABug stands for a sink building its message inside Send with a
// bug that panics: it writes to a nil map.
func renderWithABug(d sinks.Delivery) (string, error) {
	var counts map[string]int
	counts[d.MsgID]++ //lint:ignore SA5000 the panic is the point: a sink with a bug
	return "", nil
}

// kaboomer has a method a template can call, which panics.
type kaboomer struct{}

func (kaboomer) Kaboom() string { panic("template kaboom") }
