package main

import (
	"bufio"
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

	"github.com/relay-dev/relay/relay/relaytest"
	svix "github.com/svix/svix-webhooks/go"
)

const expectSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// writeExpectConfig writes a config whose one expectation runs for within
// and whose missed events go to a file sink; it returns the config's and
// the file's paths.
func writeExpectConfig(t *testing.T, dir string, within time.Duration) (config, missed string) {
	t.Helper()
	config, missed = filepath.Join(dir, "relay.yaml"), filepath.Join(dir, "missed.jsonl")
	yaml := fmt.Sprintf(`
storage:
  dir: %s/data
sources:
  recall:
    secrets: [%s]
sinks:
  missed:
    type: file
    path: %s
rules:
  - name: missed
    when: event == "relay.expectation_missed"
    sinks: [missed]
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript"
    key: recording.id
    within: %s
`, dir, expectSecret, missed, within)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, missed
}

// postSigned posts body, signed now with expectSecret, as message id.
func (p *relayProcess) postSigned(id, body string) {
	p.t.Helper()
	if err := postSigned(http.DefaultClient, "http://"+p.ingest+"/webhooks/recall", expectSecret, id, body); err != nil {
		p.t.Fatal(err)
	}
}

// postSigned posts body to url, signed now with secret as message id, and
// wants a 200 that accepts it (or knows it already).
func postSigned(client *http.Client, url, secret, id, body string) error {
	req, err := signedRequest(url, secret, id, body)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !(strings.Contains(string(b), "accepted") || strings.Contains(string(b), "duplicate")) {
		return fmt.Errorf("post %s: %d %s", id, resp.StatusCode, b)
	}
	return nil
}

// signedRequest is a webhook request of body to url with the svix id id,
// signed now with secret.
func signedRequest(url, secret, id, body string) (*http.Request, error) {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	return relaytest.SignedRequest(url, wh, id, time.Now(), []byte(body))
}

// metric returns the value of one series scraped from the relay.
func (p *relayProcess) metric(series string) string {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// missedLine is what the file sink wrote for a missed event.
type missedLine struct {
	ReceivedAt time.Time `json:"received_at"`
	MsgID      string    `json:"msg_id"`
	Event      string    `json:"event"`
	Payload    struct {
		Key      string    `json:"key"`
		Deadline time.Time `json:"deadline"`
	} `json:"payload"`
}

func readMissed(t *testing.T, path string) []missedLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []missedLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l missedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

const openSeries = `relay_expectations_open{expectation="transcript-arrives"}`

// missedOnce waits for the one missed event of rec, then for the relay to
// hold no open timer, and checks that the file has that one event.
func missedOnce(t *testing.T, p *relayProcess, path, rec string) missedLine {
	t.Helper()
	eventually(t, 60*time.Second, "the missed event in the file", func() bool { return len(readMissed(t, path)) > 0 })
	eventually(t, 20*time.Second, "no open timer", func() bool { return p.metric(openSeries) == "0" })
	lines := readMissed(t, path)
	if len(lines) != 1 || lines[0].Event != "relay.expectation_missed" || lines[0].Payload.Key != rec {
		t.Fatalf("missed events: %+v\n%s", lines, p.logs)
	}
	if lines[0].ReceivedAt.Before(lines[0].Payload.Deadline) {
		t.Errorf("injected at %s, before the deadline %s", lines[0].ReceivedAt, lines[0].Payload.Deadline)
	}
	return lines[0]
}

func recordingDoneBody(rec string) string {
	return `{"event":"recording.done","data":{"data":{"code":"done"},"recording":{"id":"` + rec + `"},"bot":{"id":"bot_1"}}}`
}

// TestExpectationAcrossRestarts runs the real binary: a timer started
// before a clean stop or a kill -9 fires once after the restart, and one
// whose deadline passed while no relay ran fires when the relay starts.
func TestExpectationAcrossRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	stops := []struct {
		name string
		stop func(p *relayProcess)
	}{
		{"SIGTERM", func(p *relayProcess) {
			if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
				t.Fatalf("exit code %d\n%s", code, p.logs)
			}
		}},
		{"SIGKILL", func(p *relayProcess) { p.kill() }},
	}
	for _, s := range stops {
		t.Run(s.name+" before the deadline", func(t *testing.T) {
			dir := t.TempDir()
			config, missed := writeExpectConfig(t, dir, 5*time.Second)
			p := startRelay(t, dir, config)
			p.postSigned("msg_after", recordingDoneBody("rec_1"))
			p.postSigned("msg_other", recordingDoneBody("rec_2"))
			p.postSigned("msg_settle", `{"event":"transcript.done","data":{"recording":{"id":"rec_2"}}}`)
			s.stop(p)
			p = startRelay(t, dir, config)
			missedOnce(t, p, missed, "rec_1")
			// The counter goes up once the store confirmed the missed event,
			// which may be after its delivery to the file.
			series := `relay_expectations_missed_total{expectation="transcript-arrives"}`
			if !poll(10*time.Second, func() bool { return p.metric(series) == "1" }) {
				t.Errorf("missed total %s, want 1", p.metric(series))
			}
		})
	}

	t.Run("down past the deadline", func(t *testing.T) {
		dir := t.TempDir()
		config, missed := writeExpectConfig(t, dir, 2*time.Second)
		p := startRelay(t, dir, config)
		p.postSigned("msg_after", recordingDoneBody("rec_1"))
		deadline := time.Now().Add(2 * time.Second)
		if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d\n%s", code, p.logs)
		}
		// The scenario, not a synchronisation: no relay runs at the deadline.
		time.Sleep(time.Until(deadline.Add(500 * time.Millisecond)))
		if lines := readMissed(t, missed); len(lines) != 0 {
			t.Fatalf("missed while stopped: %+v", lines)
		}
		started := time.Now()
		p = startRelay(t, dir, config)
		l := missedOnce(t, p, missed, "rec_1")
		if l.ReceivedAt.Before(started) {
			t.Errorf("injected at %s, before the relay started at %s", l.ReceivedAt, started)
		}
	})
}
