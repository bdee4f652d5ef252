package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

// dyingState is the state of a relay killed right after Slack took a
// message it posted: the first `keep` updates are stored, the next one
// ends the caller's context and fails, as the process stopped there.
type dyingState struct {
	*memState
	mu   sync.Mutex
	keep int
	kill context.CancelFunc
}

func (d *dyingState) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	d.mu.Lock()
	dead := d.keep == 0
	d.keep--
	d.mu.Unlock()
	if dead {
		d.kill()
		return 0, context.Canceled
	}
	return d.memState.Update(ctx, key, value, rev)
}

// logTo points sk's log at a buffer (before any goroutine of sk runs).
func logTo(sk *Sink) *relaytest.LockedBuffer {
	l := &relaytest.LockedBuffer{}
	sk.log = logger(l)
	return l
}

func logger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// answerHistory makes f answer conversations.history with the Slack error
// code, when code is not "", and counts those answers.
func answerHistory(f *slacktest.Server, code string) *atomic.Int32 {
	var refused atomic.Int32
	if code == "" {
		return &refused
	}
	f.FailWith(func(c slacktest.Call, w http.ResponseWriter) bool {
		if c.Method != "conversations.history" {
			return false
		}
		refused.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":false,"error":%q}`, code)
		return true
	})
	return &refused
}

// TestThreadParentOfAStoppedRelay: a relay that posted a thread's parent
// and was killed before recording it leaves the thread's lock behind. The
// relay that takes the lock over once it expires finds that parent in the
// channel's history and replies in its thread, instead of starting a second
// thread for the recording, whenever it can look.
func TestThreadParentOfAStoppedRelay(t *testing.T) {
	for _, tc := range []struct {
		name      string
		channel   string // the sinks' channel option
		warmUp    bool   // the stopped relay posted another thread first (and so knew the channel's ID)
		posted    bool   // Slack took the stopped relay's parent
		history   string // conversations.history's error code, "" for ok
		parents   int    // want
		lookups   int    // want
		adopted   bool
		warning   string // in the taking-over relay's log
		wantReply bool
	}{
		{name: "channel given by ID", channel: slacktest.Channel, posted: true, parents: 1, lookups: 1, adopted: true},
		{name: "channel ID learnt from an earlier post", channel: "#oncall", warmUp: true, posted: true, parents: 1, lookups: 1, adopted: true},
		{name: "stopped before posting", channel: slacktest.Channel, posted: false, parents: 1, lookups: 1},
		{name: "no history scope", channel: slacktest.Channel, posted: true, history: "missing_scope", parents: 2, lookups: 0, warning: "missing_scope"},
		{name: "channel ID unknown", channel: "#oncall", posted: true, parents: 2, lookups: 0, warning: "channel's ID is not known"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := slacktest.New(t)
			mem := newMemState()
			life := recordingLife()
			// An hour back: the local API compares oldest with the time a
			// message reached it.
			t0 := time.Now().Add(-time.Hour).UTC()
			opts := map[string]any{"channel": tc.channel}

			// The relay that stops.
			ctx, kill := context.WithCancel(context.Background())
			dying := &dyingState{memState: mem, keep: 1 << 30, kill: kill}
			a := threadSink(t, f, dying, opts)
			a.now = func() time.Time { return t0 }
			if tc.warmUp {
				other := recEvent("rec-0", "recording", "rec-0", "processing", "", 1)
				if err := a.Send(context.Background(), other); err != nil {
					t.Fatal(err)
				}
			}
			before := len(f.Calls())
			if tc.posted {
				dying.mu.Lock()
				dying.keep = 0 // the parent's record is the update it dies in
				dying.mu.Unlock()
				if err := a.Send(ctx, life[0]); err != nil {
					t.Fatal(err)
				}
			} else {
				lock := threadState{Key: "rec-1", LockedAt: t0, Channel: a.knownChannel()}
				if _, err := mem.Create(context.Background(), threadKey("oncall-slack", "rec-1"), stateJSON(lock)); err != nil {
					t.Fatal(err)
				}
			}
			orphan := ""
			if calls := f.Calls(); tc.posted {
				if len(calls) != before+1 || !calls[before].IsPost() {
					t.Fatalf("the stopped relay made calls %v, want one post", calls[before:])
				}
				orphan = calls[before].TS
			}

			// The relay taking over, once the lock expired.
			answerHistory(f, tc.history)
			b := threadSink(t, f, mem, opts)
			b.now = func() time.Time { return t0.Add(parentLockTTL + time.Second) }
			log := logTo(b)
			if err := b.Send(context.Background(), life[1]); err != nil {
				t.Fatal(err)
			}
			// The stopped relay's event comes again (it was never acknowledged).
			if tc.posted {
				if err := b.Send(context.Background(), life[0]); err != nil {
					t.Fatal(err)
				}
			}

			var parents, replies []string
			for _, c := range f.Calls()[before:] {
				switch {
				case c.IsPost():
					parents = append(parents, c.TS)
				case c.IsReply():
					replies = append(replies, c.ThreadTS)
				}
			}
			if len(parents) != tc.parents {
				t.Errorf("%d parents for the recording (%v), want %d", len(parents), parents, tc.parents)
			}
			if n := len(f.Lookups()); n != tc.lookups {
				t.Errorf("%d looks at the channel's history, want %d", n, tc.lookups)
			}
			raw, _, err := mem.Get(context.Background(), threadKey("oncall-slack", "rec-1"))
			if err != nil {
				t.Fatal(err)
			}
			var th threadState
			if err := json.Unmarshal(raw, &th); err != nil {
				t.Fatal(err)
			}
			if tc.adopted {
				if th.TS != orphan || th.Channel != slacktest.Channel {
					t.Errorf("thread recorded at %q in %q, want the stopped relay's parent %q in %q", th.TS, th.Channel, orphan, slacktest.Channel)
				}
				// One reply, for the event after the parent's: the parent's
				// own event, redelivered, only updates the parent.
				if len(replies) != 1 || replies[0] != orphan {
					t.Errorf("replies in threads %v, want one in %s", replies, orphan)
				}
				if !strings.Contains(log.String(), "adopted") {
					t.Errorf("no word of the adoption in the log:\n%s", log)
				}
			}
			if tc.warning != "" && !strings.Contains(log.String(), tc.warning) {
				t.Errorf("log lacks %q:\n%s", tc.warning, log)
			}
			if strings.Contains(log.String(), "xoxb-test-token") {
				t.Errorf("the log shows the token:\n%s", log)
			}
		})
	}
}

// TestThreadParentLookupRetried: when Slack cannot answer the look for a
// stopped relay's parent (an outage, not a missing scope), the delivery is
// retried rather than posting a second parent.
func TestThreadParentLookupRetried(t *testing.T) {
	f := slacktest.New(t)
	mem := newMemState()
	t0 := time.Now().Add(-time.Hour).UTC()
	opts := map[string]any{"channel": slacktest.Channel}
	ctx, kill := context.WithCancel(context.Background())
	a := threadSink(t, f, &dyingState{memState: mem, keep: 0, kill: kill}, opts)
	a.now = func() time.Time { return t0 }
	life := recordingLife()
	if err := a.Send(ctx, life[0]); err != nil {
		t.Fatal(err)
	}

	answerHistory(f, "internal_error")
	b := threadSink(t, f, mem, opts)
	b.now = func() time.Time { return t0.Add(parentLockTTL + time.Second) }
	err := b.Send(context.Background(), life[1])
	if err == nil || sinks.IsPermanent(err) {
		t.Fatalf("Send with Slack's history failing: %v, want a retryable error", err)
	}
	f.FailWith(nil)
	if err := b.Send(context.Background(), life[1]); err != nil {
		t.Fatal(err)
	}
	posts := 0
	for _, c := range f.Calls() {
		if c.IsPost() {
			posts++
		}
	}
	if posts != 1 || len(f.Lookups()) != 1 {
		t.Errorf("%d parents after %d looks, want 1 after 1 (the failed look is not recorded): %v", posts, len(f.Lookups()), f.Calls())
	}
}

// testClock is a clock a test sets, safe for the sinks' goroutines.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *testClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// TestGroupMessageOfAStoppedFlusher: a flusher killed after Slack took a
// group's first message, before recording it, leaves its claim behind;
// the flusher that takes the claim over adopts the message and updates it
// rather than posting the group a second time.
func TestGroupMessageOfAStoppedFlusher(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history string
		outage  bool // history fails for a while (a transient error), then works
		posts   int
		updates int
	}{
		{name: "adopted", posts: 1, updates: 1},
		{name: "no history scope", history: "missing_scope", posts: 2, updates: 0},
		{name: "Slack unavailable, then back", history: "internal_error", outage: true, posts: 1, updates: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := slacktest.New(t)
			mem := newMemState()
			// Hours back: the local API compares oldest with the time a
			// message reached it.
			clk := &testClock{}
			clk.Set(time.Now().Add(-3 * time.Hour))
			const wait, interval = time.Hour, 2 * time.Hour
			a := groupSinkWith(t, f, mem, wait, interval, sinks.Env{Now: clk.Now})
			a.learnChannel(slacktest.Channel)
			for i := range 3 {
				if err := a.Send(context.Background(), transcriptFailure(i)); err != nil {
					t.Fatal(err)
				}
			}
			_ = a.Close(context.Background()) // its own flusher: this test flushes for it
			keys, err := mem.Keys(context.Background(), groupPrefix("oncall-slack"))
			if err != nil || len(keys) != 1 {
				t.Fatalf("groups %v (%v), want one", keys, err)
			}
			key := keys[0]

			// Due: a claims it, posts, and stops before the record.
			clk.Add(wait)
			ctx, kill := context.WithCancel(context.Background())
			dying := &dyingState{memState: mem, keep: 1, kill: kill}
			if err := a.flushGroup(ctx, dying, key); err == nil {
				t.Fatal("the stopped flusher's record did not fail")
			}
			if calls := f.Calls(); len(calls) != 1 || !calls[0].IsPost() {
				t.Fatalf("calls %v, want the one post", calls)
			}
			orphan := f.Calls()[0].TS
			if err := a.Send(context.Background(), transcriptFailure(3)); err != nil {
				t.Fatal(err)
			}

			// Another flusher, once the claim expired.
			refused := answerHistory(f, tc.history)
			clk.Add(flushLockTTL + time.Second)
			log := &relaytest.LockedBuffer{}
			b := groupSinkWith(t, f, mem, wait, interval, sinks.Env{Now: clk.Now, Logger: logger(log)})
			if tc.outage {
				// The flusher tries again rather than post a second message.
				waitFor(t, "two looks refused", func() bool { return refused.Load() >= 2 })
				if calls := f.Calls(); len(calls) != 1 {
					t.Fatalf("calls while Slack's history failed: %v, want only the stopped flusher's post", calls)
				}
				f.FailWith(nil)
				b.wakeFlusher()
			}
			var g groupState
			waitFor(t, "the group recorded", func() bool {
				raw, _, err := mem.Get(context.Background(), key)
				return err == nil && json.Unmarshal(raw, &g) == nil && g.TS != "" && g.FlushingAt.IsZero()
			})
			posts, updates := 0, 0
			for _, c := range f.Calls() {
				switch {
				case c.IsPost():
					posts++
				case c.Method == "chat.update":
					updates++
					if c.TS != orphan {
						t.Errorf("updated %s, want the stopped flusher's %s", c.TS, orphan)
					}
				}
			}
			if posts != tc.posts || updates != tc.updates {
				t.Errorf("%d posts and %d updates, want %d and %d: %v", posts, updates, tc.posts, tc.updates, f.Calls())
			}
			if _, text := lastShown(f); !strings.HasPrefix(text, "4 transcripts failed") {
				t.Errorf("the group shows %q, want its 4 members", text)
			}
			if g.Shown != 4 {
				t.Errorf("group recorded with %d shown, want 4", g.Shown)
			}
			if tc.history != "" && !tc.outage && !strings.Contains(log.String(), tc.history) {
				t.Errorf("log lacks %q:\n%s", tc.history, log)
			}
		})
	}
}

var _ sinks.State = (*dyingState)(nil)
