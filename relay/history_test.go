package relay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
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
