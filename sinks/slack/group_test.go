package slack

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

// groupSink builds a group_by sink on f and st.
func groupSink(t *testing.T, f *slacktest.Server, st sinks.State, wait, interval time.Duration) *Sink {
	t.Helper()
	return groupSinkWith(t, f, st, wait, interval, sinks.Env{})
}

// groupSinkWith is groupSink with env's clock and logger.
func groupSinkWith(t *testing.T, f *slacktest.Server, st sinks.State, wait, interval time.Duration, env sinks.Env) *Sink {
	t.Helper()
	env.CompileString = testCompile
	env.State = func(context.Context) (sinks.State, error) { return st, nil }
	sk, err := New("oncall-slack", map[string]any{
		"token": "xoxb-group", "channel": "#oncall", "api_url": f.APIURL(), "rate": "",
		"group_by": []any{"event", "sub_code"}, "group_wait": wait, "group_interval": interval,
	}, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close(context.Background()) })
	return sk.(*Sink)
}

func transcriptFailure(i int) sinks.Delivery {
	d := recEvent(fmt.Sprintf("rec-%03d", i), "transcript", fmt.Sprintf("tr-%03d", i), "failed", "zoom_captions_failure", 1)
	d.MsgID = fmt.Sprintf("msg_%03d", i)
	return d
}

// lastShown is the text of the latest post or update of the group message.
func lastShown(f *slacktest.Server) (posts int, text string) {
	for _, c := range f.Calls() {
		if c.Method == "chat.postMessage" {
			posts++
		}
		text = c.Text
	}
	return posts, text
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGroupStorm(t *testing.T) {
	f := slacktest.New(t)
	const wait = 2 * time.Second
	sk := groupSink(t, f, newMemState(), wait, time.Hour)
	start := time.Now()
	for i := range 200 {
		if err := sk.Send(context.Background(), transcriptFailure(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivered event is not counted twice.
	if err := sk.Send(context.Background(), transcriptFailure(7)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Calls()); n != 0 && time.Since(start) < wait {
		t.Fatalf("%d messages before group_wait", n)
	}
	waitFor(t, "the group's message", func() bool { return len(f.Calls()) > 0 })
	time.Sleep(200 * time.Millisecond)
	posts, text := lastShown(f)
	if posts != 1 || len(f.Calls()) != 1 {
		t.Fatalf("%d calls, want 1 post: %+v", len(f.Calls()), f.Calls())
	}
	if !strings.HasPrefix(text, "200 transcripts failed: zoom_captions_failure — bots bot-1, …") {
		t.Errorf("group message %q", text)
	}
}

func TestGroupUpdatesInPlace(t *testing.T) {
	f := slacktest.New(t)
	sk := groupSink(t, f, newMemState(), 100*time.Millisecond, 300*time.Millisecond)
	for i := range 3 {
		_ = sk.Send(context.Background(), transcriptFailure(i))
	}
	waitFor(t, "the post", func() bool { return len(f.Calls()) == 1 })
	for i := 3; i < 10; i++ {
		_ = sk.Send(context.Background(), transcriptFailure(i))
	}
	waitFor(t, "the update", func() bool { return len(f.Calls()) == 2 })
	calls := f.Calls()
	if calls[1].Method != "chat.update" || calls[1].TS != "1700000000.000001" || !strings.HasPrefix(calls[1].Text, "10 transcripts failed") {
		t.Fatalf("second call %+v, want an update of the post to 10", calls[1])
	}
	if gap := calls[1].At.Sub(calls[0].At); gap < 250*time.Millisecond {
		t.Errorf("update %v after the post, want ≥ group_interval", gap)
	}
	// Quiet for an interval, the group closes: the next burst is a new
	// message.
	time.Sleep(700 * time.Millisecond)
	_ = sk.Send(context.Background(), transcriptFailure(99))
	waitFor(t, "a new group's post", func() bool { return len(f.Calls()) == 3 })
	if c := f.Calls()[2]; c.Method != "chat.postMessage" || !strings.HasPrefix(c.Text, "1 transcript failed") {
		t.Errorf("after a quiet interval: %+v, want a new post of 1", c)
	}
}

// TestGroupSurvivesRestart: a sink closed mid-group (as a relay stopping or
// dying during group_wait) leaves its members in the state; the next sink
// posts the group once, with every member.
func TestGroupSurvivesRestart(t *testing.T) {
	f := slacktest.New(t)
	st := newMemState()
	const wait = 3 * time.Second
	start := time.Now()
	a := groupSink(t, f, st, wait, time.Hour)
	for i := range 100 {
		if err := a.Send(context.Background(), transcriptFailure(i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.Close(context.Background())
	b := groupSink(t, f, st, wait, time.Hour)
	for i := 100; i < 200; i++ {
		if err := b.Send(context.Background(), transcriptFailure(i)); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) > wait {
		t.Skip("too slow to send 200 events inside group_wait")
	}
	waitFor(t, "the post", func() bool { return len(f.Calls()) > 0 })
	time.Sleep(100 * time.Millisecond)
	if posts, text := lastShown(f); posts != 1 || !strings.HasPrefix(text, "200 transcripts failed") {
		t.Errorf("%d posts, last %q; want 1 post of 200", posts, text)
	}

	// Closed after group_wait, before the post: the next sink posts it.
	f2 := slacktest.New(t)
	st2 := newMemState()
	start = time.Now()
	c := groupSink(t, f2, st2, time.Second, time.Hour)
	for i := range 50 {
		_ = c.Send(context.Background(), transcriptFailure(i))
	}
	_ = c.Close(context.Background())
	if time.Since(start) > time.Second {
		t.Skip("too slow to send 50 events inside group_wait")
	}
	time.Sleep(1200 * time.Millisecond)
	if n := len(f2.Calls()); n != 0 {
		t.Fatalf("%d calls from a closed sink", n)
	}
	groupSink(t, f2, st2, time.Second, time.Hour)
	waitFor(t, "the resumed post", func() bool { return len(f2.Calls()) > 0 })
	time.Sleep(100 * time.Millisecond)
	if posts, text := lastShown(f2); posts != 1 || !strings.HasPrefix(text, "50 transcripts failed") {
		t.Errorf("resumed: %d posts, last %q; want 1 post of 50", posts, text)
	}
}
