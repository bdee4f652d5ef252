package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

// memState is sinks.State in memory.
type memState struct {
	mu   sync.Mutex
	rev  uint64
	vals map[string][]byte
	revs map[string]uint64
}

func newMemState() *memState {
	return &memState{vals: map[string][]byte{}, revs: map[string]uint64{}}
}

func (m *memState) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok {
		return nil, 0, sinks.ErrStateNotFound
	}
	return append([]byte(nil), v...), m.revs[key], nil
}

func (m *memState) Create(_ context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[key]; ok {
		return 0, sinks.ErrStateExists
	}
	m.rev++
	m.vals[key], m.revs[key] = append([]byte(nil), value...), m.rev
	return m.rev, nil
}

func (m *memState) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.revs[key]; !ok || cur != rev {
		return 0, sinks.ErrStateConflict
	}
	m.rev++
	m.vals[key], m.revs[key] = append([]byte(nil), value...), m.rev
	return m.rev, nil
}

func (m *memState) Delete(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.revs[key]; rev != 0 && (!ok || cur != rev) {
		return sinks.ErrStateConflict
	}
	delete(m.vals, key)
	delete(m.revs, key)
	return nil
}

func (m *memState) Keys(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.vals {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// threadSink builds a thread_by sink on f and st.
func threadSink(t *testing.T, f *slacktest.Server, st sinks.State, extra map[string]any) *Sink {
	t.Helper()
	opts := map[string]any{"token": "xoxb-test-token", "channel": "#oncall", "api_url": f.APIURL(),
		"thread_by": "recording.id", "rate": ""}
	for k, v := range extra {
		opts[k] = v
	}
	env := sinks.Env{
		CompileString: testCompile,
		State:         func(context.Context) (sinks.State, error) { return st, nil },
	}
	sk, err := New("oncall-slack", opts, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close(context.Background()) })
	return sk.(*Sink)
}

// testCompile stands in for rules.CompileString: a dotted path.
func testCompile(src string) (func(map[string]any) (string, error), error) {
	parts := strings.Split(src, ".")
	return func(data map[string]any) (string, error) {
		var v any = data
		for _, p := range parts {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		s, _ := v.(string)
		return s, nil
	}, nil
}

// recEvent is a Recall event of recording rec about object (recording,
// bot or a media object) id, with status and sub code, at minute m.
func recEvent(rec, object, id, status, subCode string, m int) sinks.Delivery {
	data := map[string]any{
		"data":      map[string]any{"code": status, "sub_code": nilIfEmpty(subCode), "updated_at": time.Date(2025, 3, 19, 17, m, 0, 0, time.UTC).Format(time.RFC3339Nano)},
		"recording": map[string]any{"id": rec, "metadata": map[string]any{}},
		"bot":       map[string]any{"id": "bot-1", "metadata": map[string]any{}},
	}
	if object != "recording" && object != "bot" {
		data[object] = map[string]any{"id": id, "metadata": map[string]any{}}
	}
	body, _ := json.Marshal(map[string]any{"event": object + "." + status, "data": data})
	d := deliveryFor(body)
	d.MsgID = fmt.Sprintf("msg-%s-%s-%s-%d", rec, object, status, m)
	return d
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// recordingLife is one recording's six events, in order.
func recordingLife() []sinks.Delivery {
	return []sinks.Delivery{
		recEvent("rec-1", "recording", "rec-1", "processing", "", 1),
		recEvent("rec-1", "recording", "rec-1", "done", "", 2),
		recEvent("rec-1", "video_mixed", "vm-1", "processing", "", 3),
		recEvent("rec-1", "transcript", "tr-1", "processing", "", 4),
		recEvent("rec-1", "video_mixed", "vm-1", "done", "", 5),
		recEvent("rec-1", "transcript", "tr-1", "failed", "zoom_captions_failure", 6),
	}
}

func TestThreadOneRecording(t *testing.T) {
	f := slacktest.New(t)
	sk := threadSink(t, f, newMemState(), nil)
	for _, d := range recordingLife() {
		if err := sk.Send(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.Calls()
	var posts, replies, updates []slacktest.Call
	for _, c := range calls {
		switch {
		case c.Method == "chat.postMessage" && c.ThreadTS == "":
			posts = append(posts, c)
		case c.Method == "chat.postMessage":
			replies = append(replies, c)
		case c.Method == "chat.update":
			updates = append(updates, c)
		}
	}
	if len(posts) != 1 || len(replies) != 5 || len(updates) != 5 {
		t.Fatalf("%d posts, %d replies, %d updates; want 1, 5, 5: %+v", len(posts), len(replies), len(updates), calls)
	}
	parent := "1700000000.000001"
	for _, r := range replies {
		if r.ThreadTS != parent {
			t.Errorf("reply in thread %q, want %q", r.ThreadTS, parent)
		}
	}
	for _, u := range updates {
		if u.TS != parent || u.Channel != "C0CHANNEL" {
			t.Errorf("update of %s in %s, want %s in C0CHANNEL", u.TS, u.Channel, parent)
		}
	}
	final := updates[len(updates)-1]
	checkFinalState(t, final)
	if !strings.HasPrefix(final.Text, "✗ transcript failed: zoom_captions_failure — recording rec-1") {
		t.Errorf("parent text %q does not say first what failed and for whom", final.Text)
	}
}

// checkFinalState checks that the parent lists each object once, latest.
func checkFinalState(t *testing.T, c slacktest.Call) {
	t.Helper()
	for _, want := range []string{
		"✓ recording done `rec-1`",
		"✓ video_mixed done `vm-1`",
		"✗ transcript failed `tr-1` — `zoom_captions_failure`: There was an error in enabling meeting captions for the Zoom call",
	} {
		if n := strings.Count(c.Blocks, want); n != 1 {
			t.Errorf("parent shows %q %d times:\n%s", want, n, c.Blocks)
		}
	}
	if strings.Contains(c.Blocks, "processing") {
		t.Errorf("parent still shows a superseded state:\n%s", c.Blocks)
	}
}

func TestThreadOutOfOrder(t *testing.T) {
	f := slacktest.New(t)
	sk := threadSink(t, f, newMemState(), nil)
	life := recordingLife()
	order := []int{1, 5, 0, 4, 3, 2} // done before processing, failed before processing
	for _, i := range order {
		if err := sk.Send(context.Background(), life[i]); err != nil {
			t.Fatal(err)
		}
	}
	var last slacktest.Call
	for _, c := range f.Calls() {
		if c.Method == "chat.update" || c.ThreadTS == "" {
			last = c
		}
	}
	checkFinalState(t, last)
}

// flakyState fails the first fails Updates with a store error, after
// storing the value when stored is set (a write whose answer was lost).
type flakyState struct {
	*memState
	mu     sync.Mutex
	fails  int
	stored bool
}

func (f *flakyState) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	f.mu.Lock()
	fail := f.fails > 0
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if !fail {
		return f.memState.Update(ctx, key, value, rev)
	}
	if f.stored {
		_, _ = f.memState.Update(ctx, key, value, rev)
	}
	return 0, errors.New("nats: timeout")
}

// TestThreadParentRecordedThroughStoreErrors: a store error when a posted
// parent is recorded (a NATS election) does not leave the thread
// unrecorded, which would start a second thread for the key: the record
// is tried again, and a write stored whose answer was lost counts.
func TestThreadParentRecordedThroughStoreErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fails  int
		stored bool
	}{
		{"writes failed", 2, false},
		{"answer lost", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := slacktest.New(t)
			sk := threadSink(t, f, &flakyState{memState: newMemState(), fails: tc.fails, stored: tc.stored}, nil)
			for _, d := range recordingLife()[:3] {
				if err := sk.Send(context.Background(), d); err != nil {
					t.Fatal(err)
				}
			}
			posts, replies := 0, 0
			for _, c := range f.Calls() {
				switch {
				case c.IsPost():
					posts++
				case c.IsReply():
					replies++
				}
			}
			if posts != 1 || replies != 2 {
				t.Errorf("%d parents and %d replies, want 1 and 2: %v", posts, replies, f.Calls())
			}
		})
	}
}

func TestThreadRetryDoesNotReplyTwice(t *testing.T) {
	f := slacktest.New(t)
	sk := threadSink(t, f, newMemState(), nil)
	life := recordingLife()
	for _, d := range []sinks.Delivery{life[0], life[1], life[1]} {
		if err := sk.Send(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	// parent, reply, update; the retry updates the parent again (its
	// first update may have failed) but does not reply again.
	if n := len(f.Calls()); n != 4 || f.Calls()[3].Method != "chat.update" {
		t.Errorf("%d calls, want 4: %+v", n, f.Calls())
	}
}

func TestThreadRaceOneParent(t *testing.T) {
	f := slacktest.New(t)
	st := newMemState()
	a, b := threadSink(t, f, st, nil), threadSink(t, f, st, nil)
	life := recordingLife()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, sk := range []*Sink{a, b} {
		wg.Go(func() { errs[i] = sk.Send(context.Background(), life[i]) })
	}
	wg.Wait()
	// The loser is told to retry; its retry replies in the winner's thread.
	for i, err := range errs {
		if err != nil {
			if sinks.IsPermanent(err) {
				t.Fatal(err)
			}
			if err := []*Sink{a, b}[i].Send(context.Background(), life[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	parents := 0
	for _, c := range f.Calls() {
		if c.Method == "chat.postMessage" && c.ThreadTS == "" {
			parents++
		}
	}
	if parents != 1 {
		t.Errorf("%d parent messages, want 1", parents)
	}
}

func TestSharedPacing(t *testing.T) {
	f := slacktest.New(t)
	opts := map[string]any{"token": "xoxb-shared", "channel": "C1", "api_url": f.APIURL(), "rate": "10/s"}
	a, err := New("a", opts, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New("b", opts, sinks.Env{})
	if err != nil {
		t.Fatal(err)
	}
	d := recEvent("rec-1", "recording", "rec-1", "done", "", 1)
	start := time.Now()
	var wg sync.WaitGroup
	for _, sk := range []sinks.Sink{a, b} {
		wg.Go(func() {
			for range 3 {
				if err := sk.Send(context.Background(), d); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// Six messages at 10/s on one channel: ≥ 500ms, not the 200ms two
	// independent buckets would take.
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Errorf("6 messages from two sinks on one channel took %v, want ≥ 500ms", took)
	}
}

func TestUpdateRetryAfterHonoured(t *testing.T) {
	f := slacktest.New(t)
	limited := true
	f.FailWith(func(c slacktest.Call, w http.ResponseWriter) bool {
		if c.Method != "chat.update" || !limited {
			return false
		}
		limited = false
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	})
	sk := threadSink(t, f, newMemState(), nil)
	life := recordingLife()
	if err := sk.Send(context.Background(), life[0]); err != nil {
		t.Fatal(err)
	}
	err := sk.Send(context.Background(), life[1])
	if wait, ok := sinks.RetryAfterOf(err); !ok || wait != time.Second {
		t.Fatalf("429 on chat.update: %v (wait %v), want a retry after 1s", err, wait)
	}
	// Every sink of the channel holds off until then.
	start := time.Now()
	if err := sk.Send(context.Background(), life[1]); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("next call after Retry-After: 1 went out after %v", took)
	}
	calls := f.Calls()
	if c := calls[len(calls)-1]; c.Method != "chat.update" || strings.Count(c.Blocks, "✓ recording done `rec-1`") != 1 {
		t.Errorf("the retry did not update the parent: %+v", c)
	}
	replies := 0
	for _, c := range calls {
		if c.ThreadTS != "" {
			replies++
		}
	}
	if replies != 1 {
		t.Errorf("%d replies, want 1 (the retry must not reply again)", replies)
	}
}

func TestThreadOptionErrors(t *testing.T) {
	env := sinks.Env{CompileString: testCompile}
	for _, tc := range []struct {
		opts map[string]any
		want string
	}{
		{map[string]any{"webhook_url": "https://hooks.slack.com/services/x", "thread_by": "recording.id"}, "thread_by: only with token"},
		{map[string]any{"webhook_url": "https://hooks.slack.com/services/x", "group_by": []any{"sub_code"}}, "group_by: only with token"},
		{map[string]any{"token": "xoxb-1", "channel": "C1", "thread_by": "recording.id", "group_by": []any{"sub_code"}}, "group_by: not with thread_by"},
		{map[string]any{"token": "xoxb-1", "channel": "C1", "group_wait": "10s"}, "group_wait: only with group_by"},
		{map[string]any{"token": "xoxb-1", "channel": "C1", "group_by": []any{"sub_code"}, "group_interval": "-1s"}, "group_interval: must not be negative"},
	} {
		_, err := New("s", tc.opts, env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	if _, err := New("s", map[string]any{"token": "xoxb-1", "channel": "C1", "thread_by": "recording.id"}, sinks.Env{}); err == nil {
		t.Error("thread_by without expressions accepted")
	}
}

// TestSequenceGolden pins the layout of a thread's parent (new and
// updated), a reply and a group message, through Preview as `relay test`
// shows them.
func TestSequenceGolden(t *testing.T) {
	env := sinks.Env{CompileString: testCompile}
	mk := func(opts map[string]any) *Sink {
		opts["token"], opts["channel"] = "xoxb-preview", "C0CHANNEL"
		sk, err := New("oncall-slack", opts, env)
		if err != nil {
			t.Fatal(err)
		}
		return sk.(*Sink)
	}
	thread := mk(map[string]any{"thread_by": "recording.id"})
	var previews []sinks.Preview
	for _, d := range recordingLife() {
		p, err := thread.Preview(d)
		if err != nil {
			t.Fatal(err)
		}
		previews = append(previews, p)
	}
	if len(previews[0].Then) != 0 || len(previews[1].Then) != 1 {
		t.Fatalf("previews: first %+v, second %+v", previews[0], previews[1])
	}
	last := previews[len(previews)-1]
	group := mk(map[string]any{"group_by": []any{"event", "sub_code"}})
	var gp sinks.Preview
	for i := range 38 {
		var err error
		if gp, err = group.Preview(transcriptFailure(i)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"thread.parent":         previews[0].Body,
		"thread.reply":          previews[1].Body,
		"thread.parent_updated": last.Then[0].Body,
		"group.update":          gp.Body,
	} {
		t.Run(name, func(t *testing.T) {
			checkGoldenBody(t, name, body)
		})
	}
	if !strings.HasSuffix(gp.Request, "/chat.update") || !strings.HasSuffix(previews[1].Then[0].Request, "/chat.update") {
		t.Errorf("updates preview as %q and %q", gp.Request, previews[1].Then[0].Request)
	}
}
