package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-dev/relay/relay"
)

func TestDLQCommands(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var status atomic.Int64
	status.Store(http.StatusBadRequest) // permanent: dead-lettered at once
	var delivered atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(status.Load())
		if code == 200 {
			delivered.Add(1)
		}
		w.WriteHeader(code)
		fmt.Fprint(w, "rejected by test")
	}))
	defer receiver.Close()

	dir := t.TempDir()
	config := filepath.Join(dir, "relay.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  admin_token: t0ken
storage:
  dir: %s/data
sources:
  recall:
    secrets: [%s]
sinks:
  api:
    type: http
    url: %s
rules:
  - name: all
    when: "true"
    sinks: [api]
`, dir, secret, receiver.URL)), 0o600)
	cfg, err := relay.LoadConfig(config, relay.LoadOptions{Registry: registry(nil)})
	if err != nil {
		t.Fatal(err)
	}
	srv := relay.New(cfg, relay.Options{Registry: registry(nil), ConfigPath: config})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(t.Context())

	event := "../../configs/examples/events/recording.done.json"
	if code, out, errOut := runCLI(t, "send", "--url", "http://"+srv.IngestAddr()+"/webhooks/recall", "--secret", secret, event); code != 0 {
		t.Fatalf("send: %d %s %s", code, out, errOut)
	}
	admin := []string{"--admin", "http://" + srv.AdminAddr(), "--token", "t0ken"}
	dlq := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"dlq"}, args...), admin...)...)
	}

	var list []relay.DeadLetter
	eventually(t, 10*time.Second, "a dead letter", func() bool {
		code, out, _ := dlq("list", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &list) == nil && len(list) == 1
	})
	dl := list[0]
	if dl.Sink != "api" || dl.Event != "recording.done" || !strings.Contains(dl.LastError, "400") || !strings.Contains(dl.LastError, "rejected by test") {
		t.Errorf("dead letter: got %+v", dl)
	}
	id := fmt.Sprint(dl.ID)

	code, out, _ := dlq("list")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "recording.done") {
		t.Errorf("list table: exit %d\n%s", code, out)
	}
	code, out, _ = dlq("show", id)
	if code != 0 || !strings.Contains(out, `"payload"`) || !strings.Contains(out, `"recording.done"`) {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "dlq", "list", "--admin", "http://"+srv.AdminAddr(), "--token", "wrong"); code != 1 {
		t.Errorf("wrong token: exit %d, want 1", code)
	}
	if code, _, _ := dlq("replay"); code != 2 {
		t.Errorf("replay without ids: exit %d, want 2", code)
	}
	if code, _, _ := dlq("show", "999"); code != 1 {
		t.Errorf("show missing: exit %d, want 1", code)
	}

	status.Store(200)
	if code, out, errOut := dlq("replay", id); code != 0 {
		t.Fatalf("replay: %d %s %s", code, out, errOut)
	}
	eventually(t, 10*time.Second, "the replayed delivery", func() bool { return delivered.Load() == 1 })
	code, out, _ = dlq("list", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("after replay: exit %d, list %s", code, out)
	}

	// Dead-letter two more, purge them all.
	status.Store(http.StatusForbidden)
	for range 2 {
		runCLI(t, "send", "--url", "http://"+srv.IngestAddr()+"/webhooks/recall", "--secret", secret, event)
	}
	eventually(t, 10*time.Second, "two dead letters", func() bool {
		_, out, _ := dlq("list", "--json", "--sink", "api")
		return json.Unmarshal([]byte(out), &list) == nil && len(list) == 2
	})
	if code, out, _ := dlq("purge", "--all", "--sink", "api"); code != 0 || !strings.Contains(out, `"purged":2`) {
		t.Errorf("purge: exit %d, %s", code, out)
	}
}
