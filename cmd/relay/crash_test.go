package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// idSet is a concurrency-safe set of svix ids.
type idSet struct {
	mu  sync.Mutex
	ids map[string]int
}

func (s *idSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = make(map[string]int)
	}
	s.ids[id]++
}

func (s *idSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func (s *idSet) missing(want []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range want {
		if s.ids[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// list returns the ids in the set.
func (s *idSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.ids))
	for id := range s.ids {
		out = append(out, id)
	}
	return out
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// fileIDs returns the msg_id of every line of a file sink's output.
func fileIDs(path string) *idSet {
	s := &idSet{}
	f, err := os.Open(path)
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			MsgID string `json:"msg_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			s.add(line.MsgID)
		}
	}
	return s
}

// TestCrashLosesNothing runs signed load against the real binary, kills it
// with SIGKILL in the middle, restarts it and checks that every event that
// got a 200 reaches both an HTTP receiver and the file sink.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes under load")
	}
	for _, sync := range []string{"always", "1s"} {
		t.Run("sync="+sync, func(t *testing.T) { crashTest(t, sync) })
	}
}

func crashTest(t *testing.T, syncPolicy string) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	received := &idSet{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.add(r.Header.Get("Idempotency-Key"))
	}))
	defer receiver.Close()

	dir := t.TempDir()
	config := filepath.Join(dir, "relay.yaml")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`
storage:
  dir: %[1]s/data
  sync: %[2]s
  ack_wait: 2s
sources:
  recall:
    secrets: [%[3]s]
sinks:
  api:
    type: http
    url: %[4]s/events
    concurrency: 16
  archive:
    type: file
    path: %[1]s/archive.jsonl
    concurrency: 16
retry:
  initial_interval: 50ms
  max_interval: 1s
rules:
  - name: everything
    when: "true"
    sinks: [api, archive]
`, dir, syncPolicy, secret, receiver.URL)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	events, _ := filepath.Abs("../../configs/examples/events")
	load := func(p *relayProcess, requests int, idsOut string) *exec.Cmd {
		cmd := exec.Command(binary(t, "relay-load"),
			"--url", "http://"+p.ingest+"/webhooks/recall", "--secret", secret,
			"--events", events, "--concurrency", "32", "--requests", fmt.Sprint(requests),
			"--timeout", "10s", "--ids-out", idsOut)
		cmd.Stdout, cmd.Stderr = &lockedBuffer{}, &lockedBuffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// Phase 1: load, and SIGKILL once deliveries are under way.
	p := startRelay(t, dir, config)
	ids1 := filepath.Join(dir, "ids1.txt")
	gen := load(p, 6000, ids1)
	eventually(t, 60*time.Second, "1,000 deliveries before the kill", func() bool { return received.len() >= 1000 })
	p.kill()
	if err := gen.Wait(); err != nil {
		t.Fatalf("load generator: %v\n%s", err, gen.Stderr)
	}
	acked1 := readLines(t, ids1)
	t.Logf("phase 1: %d events acknowledged, %d delivered at the kill", len(acked1), received.len())

	// Phase 2: restart on the same store, more load, then everything
	// acknowledged must arrive.
	p = startRelay(t, dir, config)
	ids2 := filepath.Join(dir, "ids2.txt")
	gen = load(p, max(3000, 5500-len(acked1)), ids2)
	if err := gen.Wait(); err != nil {
		t.Fatalf("load generator: %v\n%s", err, gen.Stderr)
	}
	acked := append(acked1, readLines(t, ids2)...)
	if len(acked) < 5000 {
		t.Fatalf("only %d events acknowledged in all; the test wants at least 5,000", len(acked))
	}
	archive := filepath.Join(dir, "archive.jsonl")
	var missHTTP, missFile []string
	delivered := poll(90*time.Second, func() bool {
		missHTTP, missFile = received.missing(acked), fileIDs(archive).missing(acked)
		return len(missHTTP) == 0 && len(missFile) == 0
	})
	if !delivered {
		t.Fatalf("%d of %d acknowledged events never reached the HTTP sink (e.g. %v), %d never reached the file sink (e.g. %v)\n%s",
			len(missHTTP), len(acked), first(missHTTP), len(missFile), first(missFile), tail(p.logs.String(), 3000))
	}
	t.Logf("all %d acknowledged events delivered to both sinks (%d distinct ids at the receiver)", len(acked), received.len())
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit after SIGTERM: %d", code)
	}
}

func first(ids []string) []string {
	if len(ids) > 3 {
		return ids[:3]
	}
	return ids
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
