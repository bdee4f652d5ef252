package relay

import (
	"context"
	"strings"
	"testing"
	"time"
)

const failuresOnly = `
rules:
  - name: failures
    when: status == "failed"
    sinks: [a]
`

// waitCopied waits until the history writer has copied n events.
func waitCopied(t *testing.T, srv *Server, n uint64) {
	t.Helper()
	eventually(t, 10*time.Second, "events copied into history", func() bool {
		info, err := srv.store.history.hist.Info(context.Background())
		return err == nil && info.State.Msgs >= n
	})
}

// TestDedupeSurvivesRestart: ids accepted before a restart are duplicates
// after it, whether their event was delivered, is queued or went nowhere.
func TestDedupeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	tr := &testRegistry{}
	rec := newRecorder()
	tr.set("a", rec.send)
	yaml := testServerConfig(dir, failuresOnly)
	srv := startServer(t, tr, yaml)
	h := newHarness(t, srv)
	h.mustAccept("msg_delivered", sampleBody)
	h.mustAccept("msg_nowhere", `{"event":"bot.joining_call"}`)
	if d := rec.wait(t, 10*time.Second); d.MsgID != "msg_delivered" {
		t.Fatalf("delivered %s", d.MsgID)
	}
	waitCopied(t, srv, 2)
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
	if n := srv.store.history.seen.len(); n != 2 {
		t.Errorf("ids read back at start: %d, want 2", n)
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
