package relay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

func (h *harness) rewriteConfig(yaml string) {
	h.t.Helper()
	if err := os.WriteFile(h.path, []byte(yaml), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) scrape() string {
	h.t.Helper()
	resp, err := http.Get("http://" + h.srv.AdminAddr() + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

const onlyB = `
rules:
  - name: everything
    when: "true"
    sinks: [b]
`

func TestReloadAddsRule(t *testing.T) {
	tr := &testRegistry{}
	a, b := newRecorder(), newRecorder()
	tr.set("a", a.send)
	tr.set("b", b.send)
	dir := t.TempDir()
	h := startHarness(t, tr, testServerConfig(dir, onlyB))

	h.mustAccept("msg_before", sampleBody)
	b.wait(t, 10*time.Second)
	a.none(t, 200*time.Millisecond)

	h.rewriteConfig(testServerConfig(dir, onlyB+`  - name: failures-to-a
    when: status == "failed"
    sinks: [a]
`))
	if code := h.admin(http.MethodPost, "/-/reload", nil); code != 200 {
		t.Fatalf("reload: got %d, want 200", code)
	}
	h.mustAccept("msg_after", sampleBody)
	if d := a.wait(t, 10*time.Second); d.MsgID != "msg_after" || d.Rules[0] != "failures-to-a" {
		t.Errorf("a got %s via %v, want msg_after via failures-to-a", d.MsgID, d.Rules)
	}
	if !strings.Contains(h.scrape(), "relay_config_last_reload_successful 1") {
		t.Error("reload metric not 1 after a good reload")
	}
}

func TestReloadInvalidKeepsRunningConfig(t *testing.T) {
	tr := &testRegistry{}
	b := newRecorder()
	tr.set("b", b.send)
	dir := t.TempDir()
	h := startHarness(t, tr, testServerConfig(dir, onlyB))

	h.rewriteConfig(testServerConfig(dir, onlyB+`  - name: broken
    when: sub_cod == "x"
    sinks: [nowhere]
`))
	if err := h.srv.Reload(context.Background()); err == nil {
		t.Fatal("reload of an invalid config: got no error")
	}
	if code := h.admin(http.MethodPost, "/-/reload", nil); code != 400 {
		t.Errorf("reload endpoint: got %d, want 400", code)
	}
	if !strings.Contains(h.scrape(), "relay_config_last_reload_successful 0") {
		t.Error("reload metric not 0 after a failed reload")
	}
	h.mustAccept("msg_1", sampleBody)
	if d := b.wait(t, 10*time.Second); d.MsgID != "msg_1" {
		t.Errorf("got %s, want msg_1 through the running config", d.MsgID)
	}
	if got := len(h.srv.Config().Rules); got != 1 {
		t.Errorf("running config has %d rules, want the old 1", got)
	}
}

// TestReloadRemovedSinkDeadLetters: deliveries queued for a sink that a
// reload removes are dead-lettered with reason "sink removed", not lost.
func TestReloadRemovedSinkDeadLetters(t *testing.T) {
	tr := &testRegistry{}
	tr.set("a", func(context.Context, sinks.Delivery) error { return errBoom })
	dir := t.TempDir()
	yaml := strings.Replace(testServerConfig(dir, twoRules), "max_attempts: 3", "max_attempts: 1000", 1)
	h := startHarness(t, tr, yaml)
	h.srv.engine.drainEvery = 20 * time.Millisecond
	for i := range 5 {
		h.mustAccept(fmt.Sprintf("msg_rm%d", i), sampleBody)
	}
	withoutA := strings.NewReplacer("  a:\n    type: fake\n", "", "sinks: [a]", "sinks: [b]", "sinks: [a, b]", "sinks: [b]").Replace(yaml)
	h.rewriteConfig(withoutA)
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "5 dead letters for the removed sink", func() bool { return len(h.deadLetters("a")) == 5 })
	for _, dl := range h.deadLetters("a") {
		if dl.LastError != "sink removed" {
			t.Errorf("dead letter %d: reason %q, want %q", dl.ID, dl.LastError, "sink removed")
		}
	}
	eventually(t, 15*time.Second, "the removed sink's consumer deleted", func() bool {
		_, ok := h.srv.engine.worker("a")
		return !ok
	})
}

// TestReloadUnderLoad reloads repeatedly while more than a thousand events
// are in flight: every accepted event is still delivered.
func TestReloadUnderLoad(t *testing.T) {
	tr := &testRegistry{}
	var mu sync.Mutex
	got := map[string]int{}
	tr.set("b", func(_ context.Context, d sinks.Delivery) error {
		mu.Lock()
		got[d.MsgID]++
		mu.Unlock()
		return nil
	})
	dir := t.TempDir()
	h := startHarness(t, tr, testServerConfig(dir, onlyB))

	const total = 1500
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= total; i = next.Add(1) {
				h.mustAccept(fmt.Sprintf("msg_l%d", i), sampleBody)
			}
		}()
	}
	for i := 0; next.Load() < total; i++ {
		// Alternate the concurrency of b and a rule, so each reload
		// really changes the sink and the rules.
		yaml := testServerConfig(dir, onlyB+fmt.Sprintf("  - name: extra%d\n    when: \"false\"\n    sinks: [a]\n", i))
		yaml = strings.Replace(yaml, "  b:\n    type: fake\n", fmt.Sprintf("  b:\n    type: fake\n    concurrency: %d\n", 1+i%4), 1)
		h.rewriteConfig(yaml)
		if err := h.srv.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	eventually(t, 30*time.Second, "every event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total
	})
}

func TestMetricsNames(t *testing.T) {
	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	h.mustAccept("msg_m", sampleBody)
	body := h.scrape()
	for _, name := range []string{
		"relay_ingest_requests_total", "relay_events_accepted_total",
		"relay_rule_matches_total", "relay_rule_errors_total",
		"relay_deliveries_total", "relay_delivery_duration_seconds",
		"relay_dead_letters", "relay_pending_deliveries",
		"relay_config_last_reload_successful",
		// server.ingest_priority at work.
		"relay_ingest_load", "relay_deliveries_yielding",
		"relay_delivery_yield_seconds_total",
	} {
		if !strings.Contains(body, "# HELP "+name+" ") || !strings.Contains(body, "\n"+name) {
			t.Errorf("metric %s missing or without help text", name)
		}
	}
	for _, series := range []string{
		`relay_ingest_requests_total{code="200",source="recall"} 1`,
		`relay_events_accepted_total{source="recall"} 1`,
		`relay_rule_matches_total{rule="failures"} 1`,
		`relay_rule_errors_total{rule="everything"} 0`,
	} {
		if !strings.Contains(body, series) {
			t.Errorf("series %s missing", series)
		}
	}
}

// TestRestartWithoutSinkDeadLetters: a sink removed from the config while
// the relay was stopped still has its queued deliveries dead-lettered.
func TestRestartWithoutSinkDeadLetters(t *testing.T) {
	tr := &testRegistry{}
	tr.set("a", func(context.Context, sinks.Delivery) error { return errBoom })
	dir := t.TempDir()
	yaml := strings.Replace(testServerConfig(dir, twoRules), "max_attempts: 3", "max_attempts: 1000", 1)
	srv := startServer(t, tr, yaml)
	h := newHarness(t, srv)
	for i := range 3 {
		h.mustAccept(fmt.Sprintf("msg_o%d", i), sampleBody)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	withoutA := strings.NewReplacer("  a:\n    type: fake\n", "", "sinks: [a]", "sinks: [b]", "sinks: [a, b]", "sinks: [b]").Replace(yaml)
	srv = startServer(t, tr, withoutA)
	defer srv.Stop(context.Background())
	h.srv = srv
	eventually(t, 20*time.Second, "3 dead letters for the removed sink", func() bool { return len(h.deadLetters("a")) == 3 })
	for _, dl := range h.deadLetters("a") {
		if dl.LastError != "sink removed" || len(dl.Rules) != 2 {
			t.Errorf("dead letter: got reason %q rules %v", dl.LastError, dl.Rules)
		}
	}
}

// TestReloadConcurrency: a sink's concurrency follows every reload, there
// and back: the attempts its worker runs at a time, and its consumer's
// MaxAckPending, which leaves room for the deliveries waiting for a retry.
func TestReloadConcurrency(t *testing.T) {
	dir := t.TempDir()
	withConcurrency := func(n int) string {
		return strings.Replace(testServerConfig(dir, onlyB), "  b:\n    type: fake\n", fmt.Sprintf("  b:\n    type: fake\n    concurrency: %d\n", n), 1)
	}
	h := startHarness(t, nil, withConcurrency(4))
	for _, n := range []int{2, 4, 7} {
		h.rewriteConfig(withConcurrency(n))
		if err := h.srv.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		// A handle of its own: the worker's cached info must not be touched.
		c, err := h.srv.store.events.Consumer(t.Context(), sinkConsumerName("b"))
		if err != nil {
			t.Fatal(err)
		}
		info := c.CachedInfo()
		if got := info.Config.MaxAckPending; got != maxAckPending(n) {
			t.Errorf("after reload to %d: consumer MaxAckPending %d, want %d", n, got, maxAckPending(n))
		}
		w, _ := h.srv.engine.worker("b")
		w.slots.mu.Lock()
		limit := w.slots.limit
		w.slots.mu.Unlock()
		if limit != n {
			t.Errorf("after reload to %d: %d attempts at a time", n, limit)
		}
	}
}
