package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay-dev/relay/relay"
)

// historyConfig is a relay with a file sink for everything, an http sink
// that dead-letters what it is sent (400) for failures, and a file sink no
// rule routes to (for backfills).
func historyConfig(dir, receiver, rules string) string {
	if rules == "" {
		rules = `
  - name: archive
    when: "true"
    sinks: [archive]
  - name: failures
    when: status == "failed"
    sinks: [api]
`
	}
	return fmt.Sprintf(`
server:
  admin_token: t0ken
storage:
  dir: %[1]s/data
  sync: 1s
  ack_wait: 2s
sources:
  recall:
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
sinks:
  archive:
    type: file
    path: %[1]s/archive.jsonl
  late:
    type: file
    path: %[1]s/late.jsonl
  api:
    type: http
    url: %[2]s
rules:%[3]s`, dir, receiver, rules)
}

// TestEventsCommands drives events list, show and replay, backtest and the
// dead-letter where filters through the command line against the real
// binary.
func TestEventsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer receiver.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(config, []byte(historyConfig(dir, receiver.URL, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startRelay(t, dir, config)
	admin := []string{"--admin", "http://" + p.admin, "--token", "t0ken"}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append(args, admin...)...)
	}
	events, _ := filepath.Abs("../../configs/examples/events")
	files := []string{"transcript.failed.zoom_captions_failure.json", "recording.done.json", "bot.fatal.meeting_not_found.json", "transcript.done.json"}
	for _, f := range files {
		if code, out, errOut := runCLI(t, "send", "--url", "http://"+p.ingest+"/webhooks/recall",
			"--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", filepath.Join(events, f)); code != 0 {
			t.Fatalf("send %s: %d %s %s", f, code, out, errOut)
		}
	}

	var list []relay.StoredEvent
	eventually(t, 20*time.Second, "four events, every delivery settled", func() bool {
		code, out, _ := cli("events", "list", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 4 {
			return false
		}
		for _, e := range list {
			for _, st := range e.Sinks {
				if st.Status == relay.StatusPending {
					return false
				}
			}
		}
		return true
	})
	if list[0].Event != "transcript.done" || list[3].Event != "transcript.failed" {
		t.Errorf("not newest first: %s ... %s", list[0].Event, list[3].Event)
	}
	code, out, _ := cli("events", "list", "--where", `event == "transcript.failed" && "api" in sinks`)
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "api:dead_lettered,archive:delivered") {
		t.Errorf("list --where: exit %d\n%s", code, out)
	}
	code, _, errOut := cli("events", "list", "--where", `sub_cod startsWith "zoom_"`)
	if code != 2 || !strings.Contains(errOut, "where: unknown name sub_cod (1:1)") {
		t.Errorf("bad where: exit %d, stderr %q", code, errOut)
	}
	failed := list[3]
	code, out, _ = cli("events", "show", fmt.Sprint(failed.ID))
	if code != 0 || !strings.Contains(out, "zoom_captions_failure") || !strings.Contains(out, "dead_lettered") || !strings.Contains(out, "archive, failures") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	if code, _, _ := cli("events", "show", "999999"); code != 1 {
		t.Errorf("show a missing event: exit %d, want 1", code)
	}

	// Backfill the sink no rule routes to.
	code, out, _ = cli("events", "replay", "--where", `object == "transcript"`, "--sink", "late", "--dry-run")
	if code != 0 || !strings.Contains(out, "2 stored events would be delivered to late") {
		t.Errorf("replay --dry-run: exit %d\n%s", code, out)
	}
	if code, _, errOut := cli("events", "replay", "--where", `true`); code != 2 || !strings.Contains(errOut, "--sink") {
		t.Errorf("replay without --sink: exit %d %s", code, errOut)
	}
	code, out, _ = cli("events", "replay", "--where", `object == "transcript"`, "--sink", "late")
	if code != 0 || !strings.Contains(out, "2 stored events queued for delivery to late") {
		t.Errorf("replay: exit %d\n%s", code, out)
	}
	eventually(t, 20*time.Second, "two lines in the backfilled file", func() bool {
		return fileIDs(filepath.Join(dir, "late.jsonl")).len() == 2
	})

	// Backtest: the running rules change nothing; a candidate that sends
	// every failure (bot.fatal too) to api and drops the archive does.
	if code, out, _ := cli("backtest", "-c", config, "--fail-on-change"); code != 0 || !strings.Contains(out, "over 4 stored events: 0 routed differently") {
		t.Errorf("backtest of the running config: exit %d\n%s", code, out)
	}
	candidate := filepath.Join(dir, "candidate.yaml")
	os.WriteFile(candidate, []byte(historyConfig(dir, receiver.URL, `
  - name: failures
    when: status == "failed" || event == "bot.fatal"
    sinks: [api]
`)), 0o600)
	code, out, _ = cli("backtest", "-c", candidate)
	if code != 0 || !strings.Contains(out, "over 4 stored events: 4 routed differently") {
		t.Errorf("backtest: exit %d\n%s", code, out)
	}
	for _, row := range []string{"archive   4       0      -       ", "failures  1       2      "} {
		if !strings.Contains(out, row) {
			t.Errorf("backtest: no row %q in\n%s", row, out)
		}
	}
	if code, _, _ := cli("backtest", "-c", candidate, "--fail-on-change"); code != 1 {
		t.Errorf("backtest --fail-on-change: exit %d, want 1", code)
	}
	var rep relay.BacktestReport
	code, out, _ = cli("backtest", "-c", candidate, "--json", "--where", `event == "bot.fatal"`)
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Events != 1 || rep.Sinks["api"].After != 1 || len(rep.Sinks["api"].Gained) != 1 {
		t.Errorf("backtest --json --where: exit %d\n%s", code, out)
	}
	if code, _, errOut := cli("backtest", "-c", candidate, "--where", `nope`); code != 2 || !strings.Contains(errOut, "unknown name nope") {
		t.Errorf("backtest with a bad where: exit %d %s", code, errOut)
	}

	// Dead letters by where.
	code, out, _ = cli("dlq", "list", "--where", `sink == "api" && last_error contains "400" && sub_code startsWith "zoom_"`)
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("dlq list --where: exit %d\n%s", code, out)
	}
	if code, _, errOut := cli("dlq", "list", "--where", `attempts == "one"`); code != 2 || !strings.Contains(errOut, "where: invalid operation") {
		t.Errorf("dlq list with a bad where: exit %d %s", code, errOut)
	}
	if code, out, _ := cli("dlq", "purge", "--where", `event == "transcript.failed"`); code != 0 || !strings.Contains(out, `"purged":1`) {
		t.Errorf("dlq purge --where: exit %d %s", code, out)
	}
	if code, out, _ := cli("dlq", "list", "--json"); code != 0 || strings.Count(out, `"msg_id"`) != 0 {
		t.Errorf("after purge: %s", out)
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit after SIGTERM: %d", code)
	}
}
