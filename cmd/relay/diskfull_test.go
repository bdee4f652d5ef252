package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestDiskFull fills the disk under the store — an 8 MiB tmpfs the test
// mounts (as root) — while the only sink is down: ingest answers 503 with
// Retry-After and /readyz fails, and once space is freed and the sink is
// back, the relay recovers (by itself, or, if the embedded store shut down,
// after a restart) and delivers every acknowledged event.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs and runs the real binary")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "disk")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	var up atomic.Bool
	received := &idSet{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		received.add(r.Header.Get("Idempotency-Key"))
	}))
	defer receiver.Close()
	config := filepath.Join(dir, "relay.yaml")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`
storage:
  dir: %s/store
  sync: 1s
  ack_wait: 2s
  max_bytes: 1GiB
sources:
  recall:
    secrets: [%s]
sinks:
  api:
    type: http
    url: %s
retry:
  max_attempts: 100000
  initial_interval: 100ms
  max_interval: 500ms
  max_age: 1h
rules:
  - name: all
    when: "true"
    sinks: [api]
`, mnt, testSecret, receiver.URL)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := startRelay(t, dir, config)
	body := fmt.Sprintf(`{"event":"recording.done","pad":%q}`, strings.Repeat("x", 3000))
	var acked []string
	refused := ""
	for i := 0; i < 5000 && refused == ""; i++ {
		id := fmt.Sprintf("msg_%05d", i)
		code, answer, err := tryPost(p.ingest, id, body)
		switch {
		case err != nil: // the relay exited: its store shut down
			refused = "exited"
		case code == 200:
			acked = append(acked, id)
		case code == 503:
			refused = answer
		default:
			t.Fatalf("%s: %d %s", id, code, answer)
		}
	}
	t.Logf("%d events acknowledged before the disk filled; then %q", len(acked), strings.TrimSpace(refused))
	if refused == "" || len(acked) < 100 {
		t.Fatalf("the disk never filled, or filled at once (%d acknowledged)", len(acked))
	}
	running := refused != "exited"
	if running {
		if code, _ := get("http://" + p.admin + "/readyz"); code != 503 {
			t.Errorf("readyz with a full disk: %d, want 503", code)
		}
	}

	// Free space, bring the sink back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	up.Store(true)
	if !running || !poll(20*time.Second, func() bool { code, _ := get("http://" + p.admin + "/readyz"); return code == 200 }) {
		t.Logf("the relay did not recover by itself; restarting it\n%s", tail(p.logs.String(), 2000))
		if p.cmd.ProcessState == nil {
			p.kill()
		}
		p = startRelay(t, dir, config)
	}
	var missing []string
	if !poll(60*time.Second, func() bool { missing = received.missing(acked); return len(missing) == 0 }) {
		t.Fatalf("%d of %d acknowledged events never delivered (e.g. %v)\n%s", len(missing), len(acked), first(missing), tail(p.logs.String(), 3000))
	}
	if code, answer := postEvent(t, p.ingest, "msg_after", body); code != 200 {
		t.Errorf("after recovery: %d %s\n%s", code, answer, tail(p.logs.String(), 3000))
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit after SIGTERM: %d", code)
	}
}

// tryPost is postSigned that returns a transport error instead of failing.
func tryPost(ingest, id, body string) (int, string, error) {
	req, err := signedRequest("http://"+ingest+"/webhooks/recall", testSecret, id, body)
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 4096)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n]), nil
}

func get(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
