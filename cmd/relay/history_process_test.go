package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay-dev/relay/relay"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// postEvent sends body with the svix id id, signed with testSecret, to the
// relay's recall source and returns the status code and the answer.
func postEvent(t *testing.T, ingest, id, body string) (int, string) {
	t.Helper()
	req, err := signedRequest("http://"+ingest+"/webhooks/recall", testSecret, id, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// writeArchiveConfig writes dir/relay.yaml: the recall source signed with
// testSecret and one rule, when, routing to a file sink (dir/archive.jsonl);
// it returns the config's path.
func writeArchiveConfig(t *testing.T, dir, when string) string {
	t.Helper()
	config := filepath.Join(dir, "relay.yaml")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`
storage:
  dir: %[1]s/data
  sync: 1s
  ack_wait: 2s
sources:
  recall:
    secrets: [%[2]s]
sinks:
  archive:
    type: file
    path: %[1]s/archive.jsonl
rules:
  - name: archive
    when: %[3]q
    sinks: [archive]
`, dir, testSecret, when)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return config
}

// TestDedupeAcrossRestarts: an id accepted, delivered and stopped with
// SIGTERM or killed with SIGKILL is a duplicate after the restart, and its
// event is not delivered again; so is an id routed nowhere.
func TestDedupeAcrossRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	for _, how := range []string{"sigterm", "kill"} {
		t.Run(how, func(t *testing.T) { dedupeAcrossRestart(t, how) })
	}
}

func dedupeAcrossRestart(t *testing.T, how string) {
	dir := t.TempDir()
	config := writeArchiveConfig(t, dir, `event == "recording.done"`)
	delivered, nowhere := `{"event":"recording.done","data":{}}`, `{"event":"bot.joining_call","data":{}}`
	archive := filepath.Join(dir, "archive.jsonl")

	p := startRelay(t, dir, config)
	for id, body := range map[string]string{"msg_delivered": delivered, "msg_nowhere": nowhere} {
		if code, answer := postEvent(t, p.ingest, id, body); code != 200 || !strings.Contains(answer, `"accepted"`) {
			t.Fatalf("%s: %d %s", id, code, answer)
		}
	}
	eventually(t, 20*time.Second, "the delivery, in the archive and in the trail", func() bool {
		if fileIDs(archive).len() != 1 {
			return false
		}
		code, out, _ := runCLI(t, "events", "list", "--json", "--admin", "http://"+p.admin)
		var events []relay.StoredEvent
		if code != 0 || json.Unmarshal([]byte(out), &events) != nil || len(events) != 2 {
			return false
		}
		for _, e := range events {
			if e.MsgID == "msg_delivered" {
				return e.Sinks["archive"].Status == relay.StatusDelivered
			}
		}
		return false
	})
	switch how {
	case "sigterm":
		if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("exit after SIGTERM: %d", code)
		}
	case "kill":
		// What the relay wrote has reached the kernel by now (the store
		// writes what it buffers within milliseconds); kill -9 keeps it.
		time.Sleep(2 * time.Second)
		p.kill()
	}

	p = startRelay(t, dir, config)
	for id, body := range map[string]string{"msg_delivered": delivered, "msg_nowhere": nowhere} {
		if code, answer := postEvent(t, p.ingest, id, body); code != 200 || !strings.Contains(answer, `"duplicate"`) {
			t.Errorf("%s after %s and a restart: %d %s, want 200 duplicate", id, how, code, answer)
		}
	}
	if code, answer := postEvent(t, p.ingest, "msg_new", delivered); code != 200 || !strings.Contains(answer, `"accepted"`) {
		t.Fatalf("a new id: %d %s", code, answer)
	}
	eventually(t, 20*time.Second, "the new event in the archive", func() bool { return fileIDs(archive).len() == 2 })
	time.Sleep(3 * time.Second) // ack_wait and more: nothing comes twice
	b, _ := os.ReadFile(archive)
	if n := strings.Count(string(b), "msg_delivered"); n != 1 {
		t.Errorf("msg_delivered is %d times in the archive, want once:\n%s", n, b)
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit after SIGTERM: %d", code)
	}
}
