package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

// recordingEvent is an event of recording rec-1 about object at minute m.
func recordingEvent(object, id, status string, m int) string {
	media := ""
	if object != "recording" {
		media = fmt.Sprintf(`, %q: {"id": %q, "metadata": {}}`, object, id)
	}
	return fmt.Sprintf(`{"event": "%s.%s", "data": {"data": {"code": %q, "sub_code": null, "updated_at": "2025-03-19T17:%02d:00Z"}, "recording": {"id": "rec-1", "metadata": {}}, "bot": {"id": "bot-1", "metadata": {}}%s}}`,
		object, status, status, m, media)
}

// TestSlackThreadSurvivesRestart runs a thread_by Slack sink in a real
// relay on the embedded JetStream, whose KV holds the thread: a restart in
// the middle of a recording's life keeps replying in the same thread.
func TestSlackThreadSurvivesRestart(t *testing.T) {
	api := slacktest.New(t)
	dir := t.TempDir()
	yaml := slackRelayConfig(dir, api.APIURL(), `
    rate: ""
    thread_by: recording.id
`)
	events := []string{
		recordingEvent("recording", "rec-1", "processing", 1),
		recordingEvent("recording", "rec-1", "done", 2),
		recordingEvent("transcript", "tr-1", "processing", 3),
		recordingEvent("transcript", "tr-1", "failed", 4),
	}
	h := startRealHarness(t, yaml)
	for i, e := range events[:2] {
		h.mustAccept(fmt.Sprintf("msg_t%d", i), e)
		// One at a time: the order of a thread's replies is the order of
		// the events only when they are delivered in order.
		eventually(t, 10*time.Second, "the event's messages", func() bool { return len(shapes(api)) == 1+2*i })
	}
	if err := h.srv.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	h = startRealHarness(t, yaml)
	for i, e := range events[2:] {
		h.mustAccept(fmt.Sprintf("msg_t%d", i+2), e)
		eventually(t, 10*time.Second, "the event's messages", func() bool { return len(shapes(api)) == 3+2*(i+1) })
	}
	calls := shapes(api)
	want := []string{"post", "reply 1700000000.000001", "update 1700000000.000001", "reply 1700000000.000001", "update 1700000000.000001", "reply 1700000000.000001", "update 1700000000.000001"}
	for i, c := range calls {
		if i >= len(want) || !strings.HasPrefix(c, want[i]) {
			t.Fatalf("Slack calls:\n%s\nwant the shape %v", strings.Join(calls, "\n"), want)
		}
	}
	if last := calls[len(calls)-1]; !strings.Contains(last, "✗ transcript failed — recording rec-1") {
		t.Errorf("final parent %q", last)
	}
	if m := h.scrape(); !strings.Contains(m, `relay_slack_messages_total{kind="reply",sink="oncall-slack"} 2`) {
		t.Errorf("metrics after the restart lack 2 replies:\n%s", grepLines(m, "relay_slack"))
	}
}

// TestSlackThreadCheck: `relay check` refuses thread_by and group_by where
// they cannot work, and bad expressions, at the option's path.
func TestSlackThreadCheck(t *testing.T) {
	for _, tc := range []struct{ sink, want string }{
		{"webhook_url: https://hooks.slack.com/services/T0/B0/X\n    thread_by: recording.id",
			"sinks.oncall-slack.thread_by: only with token (an incoming webhook cannot reply in a thread or update a message)"},
		{"webhook_url: https://hooks.slack.com/services/T0/B0/X\n    group_by: [sub_code]",
			"sinks.oncall-slack.group_by: only with token (an incoming webhook cannot update a message)"},
		{"token: xoxb-1\n    channel: C1\n    thread_by: recording.id\n    group_by: [sub_code]",
			"sinks.oncall-slack.group_by: not with thread_by (a sink either threads or groups)"},
		{"token: xoxb-1\n    channel: C1\n    thread_by: recordin.id",
			"sinks.oncall-slack.thread_by: unknown name recordin (1:1)"},
		{"token: xoxb-1\n    channel: C1\n    thread_by: updated_at",
			"sinks.oncall-slack.thread_by: expected string"},
	} {
		yaml := fmt.Sprintf(`
sources:
  recall:
    secrets: [%s]
sinks:
  oncall-slack:
    type: slack
    %s
rules:
  - name: all
    when: "true"
    sinks: [oncall-slack]
`, testSecret, tc.sink)
		_, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}, Registry: realRegistry()})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config with\n    %s\ngave %v\nwant %q", tc.sink, err, tc.want)
		}
	}
}

// TestSlackGroupSurvivesRestart: 200 failures with one sub code, in a real
// relay whose embedded JetStream KV holds the open group; the relay stops
// in the middle of group_wait (an in-process stop and restart on the same
// store directory, standing in for kill -9: the sink's flusher is stopped
// without flushing) and the restarted relay posts one message counting
// all 200.
func TestSlackGroupSurvivesRestart(t *testing.T) {
	api := slacktest.New(t)
	dir := t.TempDir()
	yaml := slackRelayConfig(dir, api.APIURL(), `
    group_by: [event, sub_code]
    group_wait: 8s
    group_interval: 1h
    concurrency: 4
`)
	failure := func(i int) string {
		return fmt.Sprintf(`{"event": "transcript.failed", "data": {"data": {"code": "failed", "sub_code": "zoom_captions_failure", "updated_at": "2025-03-19T17:44:06Z"}, "recording": {"id": "rec-%03d", "metadata": {}}, "bot": {"id": "bot-%03d", "metadata": {}}, "transcript": {"id": "tr-%03d", "metadata": {}}}}`, i, i, i)
	}
	h := startRealHarness(t, yaml)
	start := time.Now()
	for i := range 200 {
		h.mustAccept(fmt.Sprintf("msg_g%03d", i), failure(i))
	}
	eventually(t, 20*time.Second, "200 events held in the group", func() bool {
		return strings.Contains(h.scrape(), `relay_deliveries_total{outcome="delivered",sink="oncall-slack"} 200`)
	})
	if err := h.srv.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 7*time.Second {
		t.Skip("too slow to stop inside group_wait on this machine")
	}
	if calls := shapes(api); len(calls) != 0 {
		t.Fatalf("Slack called before group_wait: %v", calls)
	}

	startRealHarness(t, yaml)
	eventually(t, 20*time.Second, "the group's message", func() bool { return len(shapes(api)) > 0 })
	time.Sleep(500 * time.Millisecond)
	calls := shapes(api)
	if len(calls) != 1 || !strings.HasPrefix(calls[0], "post: 200 transcripts failed: zoom_captions_failure — bots ") {
		t.Fatalf("Slack calls %v, want one post counting 200", calls)
	}
}

// shapes is what api recorded, each call in its short form.
func shapes(api *slacktest.Server) []string {
	var out []string
	for _, c := range api.Calls() {
		out = append(out, c.String())
	}
	return out
}

// slackRelayConfig is a real relay's config whose one rule sends every
// event to a Web API Slack sink "oncall-slack" at apiURL, with the sink's
// extra options (YAML lines indented four spaces).
func slackRelayConfig(dir, apiURL, options string) string {
	return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: %s/data
sources:
  recall:
    secrets: [%s]
sinks:
  oncall-slack:
    type: slack
    token: xoxb-test
    channel: "#oncall"
    api_url: %s
%srules:
  - name: all
    when: "true"
    sinks: [oncall-slack]
`, dir, testSecret, apiURL, options)
}
