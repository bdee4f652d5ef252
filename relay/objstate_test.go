package relay

import (
	"context"
	"testing"
	"time"

	"github.com/relay-dev/relay/rules"
)

func TestOrder(t *testing.T) {
	t1 := time.Date(2025, 3, 14, 15, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	done := objState{UpdatedAt: t2.UnixNano(), Status: "done"}
	tests := []struct {
		name         string
		prev         objState
		known        bool
		at           time.Time
		status       string
		stale        bool
		previous     string
		next         objState
		wantRemember bool
	}{
		{"first", objState{}, false, t1, "processing", false, "", objState{UpdatedAt: t1.UnixNano(), Status: "processing"}, true},
		{"older after newer", done, true, t1, "processing", true, "done", objState{}, false},
		{"newer", objState{UpdatedAt: t1.UnixNano(), Status: "processing"}, true, t2, "done", false, "processing", done, true},
		{"same time", done, true, t2, "failed", false, "done", objState{UpdatedAt: t2.UnixNano(), Status: "failed"}, true},
		{"no updated_at", done, true, time.Time{}, "deleted", false, "done", objState{UpdatedAt: t2.UnixNano(), Status: "deleted"}, true},
	}
	for _, tt := range tests {
		env := &rules.Env{Status: tt.status, UpdatedAt: tt.at}
		stale, previous, next, remember := order(tt.prev, tt.known, env)
		if stale != tt.stale || previous != tt.previous || next != tt.next || remember != tt.wantRemember {
			t.Errorf("%s: got %v %q %+v %v", tt.name, stale, previous, next, remember)
		}
	}
}

func TestObjectKey(t *testing.T) {
	ref := func(id string) map[string]any { return map[string]any{"id": id, "metadata": map[string]any{}} }
	tests := []struct {
		env  rules.Env
		want string
	}{
		{rules.Env{Object: "transcript", Media: ref("t1"), Recording: ref("r1"), Bot: ref("b1")}, "transcript.t1"},
		{rules.Env{Object: "recording", Media: ref(""), Recording: ref("r1"), Bot: ref("b1")}, "recording.r1"},
		{rules.Env{Object: "bot", Media: ref(""), Recording: ref(""), Bot: ref("b1")}, "bot.b1"},
		{rules.Env{Object: "transcript", Media: ref(""), Recording: ref("r1")}, ""},
		{rules.Env{Object: "relay", Media: ref("x")}, ""},
		{rules.Env{Object: "video_mixed", Media: ref("a b/c")}, "video_mixed.h" + keyHash("a b/c")},
	}
	for _, tt := range tests {
		if got := objectKey(&tt.env); got != tt.want {
			t.Errorf("objectKey(%s %v) = %q, want %q", tt.env.Object, tt.env.Media, got, tt.want)
		}
	}
}

func transcriptEvent(status, id, updatedAt string) string {
	return `{"event":"transcript.` + status + `","data":{"data":{"code":"` + status + `","updated_at":"` + updatedAt + `"},"transcript":{"id":"` + id + `"},"recording":{"id":"rec_1"},"bot":{"id":"bot_1"}}}`
}

// TestStale: a processing that arrives after its done is stale, with
// previous_status "done"; the same for another object is not; the state
// outlives a restart (it is in the store).
func TestStale(t *testing.T) {
	dir := t.TempDir()
	yaml := testServerConfig(dir, `
rules:
  - name: late
    when: stale && previous_status == "done"
    sinks: [a]
  - name: in-order
    when: "!stale"
    sinks: [b]
`)
	tr := &testRegistry{}
	late, inOrder := newRecorder(), newRecorder()
	tr.set("a", late.send)
	tr.set("b", inOrder.send)
	srv := startServer(t, tr, yaml)
	h := newHarness(t, srv)
	h.mustAccept("msg_done", transcriptEvent("done", "t1", "2025-03-14T15:47:09Z"))
	h.mustAccept("msg_other", transcriptEvent("processing", "t2", "2025-03-14T15:00:00Z"))
	h.mustAccept("msg_late", transcriptEvent("processing", "t1", "2025-03-14T15:00:00Z"))
	if d := late.wait(t, 10*time.Second); d.MsgID != "msg_late" {
		t.Errorf("stale: got %s", d.MsgID)
	}
	for range 2 {
		if d := inOrder.wait(t, 10*time.Second); d.MsgID == "msg_late" {
			t.Errorf("in order: got %s", d.MsgID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	srv = startServer(t, tr, yaml)
	defer func() { _ = srv.Stop(ctx) }()
	h = newHarness(t, srv)
	h.mustAccept("msg_late_again", transcriptEvent("failed", "t1", "2025-03-14T15:10:00Z"))
	if d := late.wait(t, 10*time.Second); d.MsgID != "msg_late_again" {
		t.Errorf("stale after a restart: got %s", d.MsgID)
	}
}

func TestKVKeyToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"950132d0-41f2-4d79-a2f4-2c14525554e4", true},
		{"rec_1", true},
		{"a=b", true},
		{"", false},
		{"a.b", false},
		{"a b", false},
		{"a*", false},
		{"a>", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := kvKeyToken(tt.in); got != tt.want {
			t.Errorf("kvKeyToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
