package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

// TestSlackGroupKill9 runs a real relay process with a group_by Slack sink,
// sends it 200 failures with one sub code, kills it with SIGKILL inside
// group_wait, once every event is held in the group (the sink's
// deliveries counted delivered), and restarts it on the same store: the
// restarted relay posts one message that counts all 200.
func TestSlackGroupKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	slackAPI := slacktest.New(t)

	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	if err := os.MkdirAll(events, 0o700); err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile("../../configs/examples/events/transcript.failed.zoom_captions_failure.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(events, "failure.json"), sample, 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "relay.yaml")
	err = os.WriteFile(config, []byte(fmt.Sprintf(`
storage:
  dir: %[1]s/data
sources:
  recall:
    secrets: [%[2]s]
sinks:
  storm-slack:
    type: slack
    token: xoxb-test
    channel: C0ONCALL
    api_url: %[3]s
    group_by: [event, sub_code]
    group_wait: 10s
    group_interval: 1h
    concurrency: 8
rules:
  - name: failures
    when: status == "failed"
    sinks: [storm-slack]
`, dir, secret, slackAPI.APIURL())), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	p := startRelay(t, dir, config)
	start := time.Now()
	load := exec.Command(binary(t, "relay-load"),
		"--url", "http://"+p.ingest+"/webhooks/recall", "--secret", secret,
		"--events", events, "--concurrency", "8", "--requests", "200", "--fail-on-error")
	load.Stdout, load.Stderr = io.Discard, io.Discard
	if err := load.Run(); err != nil {
		t.Fatalf("relay-load: %v", err)
	}
	eventually(t, 30*time.Second, "200 events held in the group", func() bool {
		resp, err := http.Get("http://" + p.admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `relay_deliveries_total{outcome="delivered",sink="storm-slack"} 200`)
	})
	p.kill()
	if time.Since(start) > 9*time.Second {
		t.Skip("too slow to kill the relay inside group_wait on this machine")
	}
	if c := slackAPI.Calls(); len(c) != 0 {
		t.Fatalf("Slack called before group_wait: %v", c)
	}

	p = startRelay(t, dir, config)
	eventually(t, 30*time.Second, "the group's message", func() bool { return len(slackAPI.Calls()) > 0 })
	time.Sleep(time.Second)
	c := slackAPI.Calls()
	if len(c) != 1 || !c[0].IsPost() || !strings.HasPrefix(c[0].Text, "200 transcripts failed: zoom_captions_failure") {
		t.Fatalf("Slack calls %q, want one post counting 200", c)
	}
	p.kill()
}
