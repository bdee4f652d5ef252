package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relay-dev/relay/relay/relaytest"
)

// Tests in this file run the real binaries, built once per test run.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary returns the path of a freshly built command of this module
// ("relay" or "relay-load").
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "relay-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"./cmd/relay", "./cmd/relay-load"} {
			cmd := exec.Command("go", "build", "-o", binDir+"/", pkg)
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// relayProcess is a running `relay serve`.
type relayProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	ingest string // host:port
	admin  string
	done   chan error
	logs   *lockedBuffer
}

type lockedBuffer = relaytest.LockedBuffer

// startRelay runs `relay serve -c config` in dir with env added to the
// environment, with both listeners on free loopback ports, and waits for its
// "relay started" log line to learn them.
func startRelay(t *testing.T, dir, config string, env ...string) *relayProcess {
	t.Helper()
	cmd := exec.Command(binary(t, "relay"), "serve", "-c", config, "--log-level", "info")
	return startRelayCmd(t, cmd, dir, env...)
}

// startRelayCmd starts cmd (a `relay serve`) as startRelay does.
func startRelayCmd(t *testing.T, cmd *exec.Cmd, dir string, env ...string) *relayProcess {
	t.Helper()
	p, started := launchRelay(t, cmd, dir, env...)
	p.awaitStart(started)
	return p
}

// startRelays starts `relay serve -c config` in each of dirs at the same
// moment and waits until every one has started.
func startRelays(t *testing.T, config string, dirs ...string) []*relayProcess {
	t.Helper()
	ps := make([]*relayProcess, len(dirs))
	chans := make([]<-chan map[string]any, len(dirs))
	for i, dir := range dirs {
		cmd := exec.Command(binary(t, "relay"), "serve", "-c", config, "--log-level", "info")
		ps[i], chans[i] = launchRelay(t, cmd, dir)
	}
	for i, p := range ps {
		p.awaitStart(chans[i])
	}
	return ps
}

// launchRelay starts cmd in dir with both listeners on free loopback ports;
// the channel receives its "relay started" log line.
func launchRelay(t *testing.T, cmd *exec.Cmd, dir string, env ...string) (*relayProcess, <-chan map[string]any) {
	t.Helper()
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"RELAY_SERVER__LISTEN=127.0.0.1:0",
		"RELAY_SERVER__ADMIN_LISTEN=127.0.0.1:0",
	)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &relayProcess{t: t, cmd: cmd, done: make(chan error, 1), logs: &lockedBuffer{}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan map[string]any, 1)
	// Wait closes the pipe once the process has exited: only after every
	// line is read, or the last ones (the clean-stop line) can be lost.
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.logs, line)
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "relay started" {
				started <- rec
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-read
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p, started
}

// problems is the last n warning and error lines of the relay's log.
func (p *relayProcess) problems(n int) string {
	var lines []string
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// deliveryState is what the relay's admin API says about its deliveries,
// for a failure message: its relay_ metrics other than histograms, and the
// goroutines of its sinks' workers (grouped by stack).
func (p *relayProcess) deliveryState() string {
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) string {
		resp, err := client.Get("http://" + p.admin + path)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return err.Error()
		}
		return string(body)
	}
	var b strings.Builder
	for _, l := range strings.Split(get("/metrics"), "\n") {
		if strings.HasPrefix(l, "relay_") && !strings.Contains(l, "_bucket") {
			b.WriteString("  " + l + "\n")
		}
	}
	for _, g := range strings.Split(get("/debug/pprof/goroutine?debug=1"), "\n\n") {
		if strings.Contains(g, "relay.(*worker)") {
			b.WriteString(g + "\n\n")
		}
	}
	return b.String()
}

// awaitStart waits for the relay's "relay started" line, failing the test
// if it exits first or takes over a minute.
func (p *relayProcess) awaitStart(started <-chan map[string]any) {
	p.t.Helper()
	select {
	case rec := <-started:
		p.ingest, _ = rec["ingest"].(string)
		p.admin, _ = rec["admin"].(string)
	case err := <-p.done:
		p.t.Fatalf("relay exited before starting: %v\n%s", err, p.logs)
	case <-time.After(60 * time.Second):
		p.t.Fatalf("relay did not start within 60s\n%s", p.logs)
	}
}

// stop sends sig and returns the exit code, failing after timeout.
func (p *relayProcess) stop(sig syscall.Signal, timeout time.Duration) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("relay did not exit within %s of %v\n%s", timeout, sig, p.logs)
		return -1
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *relayProcess) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// eventually and poll are relaytest's, named as the tests call them.
var (
	eventually = relaytest.Eventually
	poll       = relaytest.Poll
)

// TestServeSendSIGTERM runs the quick-start config as a newcomer would: serve,
// send a sample with `relay send`, see it archived, stop with SIGTERM.
func TestServeSendSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	config, _ := filepath.Abs("../../configs/relay.yaml")
	event, _ := filepath.Abs("../../configs/examples/events/transcript.failed.zoom_captions_failure.json")
	p := startRelay(t, dir, config, "RECALL_WEBHOOK_SECRET=")

	out, err := exec.Command(binary(t, "relay"), "send",
		"--url", "http://"+p.ingest+"/webhooks/recall",
		"--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", event).CombinedOutput()
	if err != nil {
		t.Fatalf("relay send: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ": 200 ") || !strings.Contains(string(out), `"status":"accepted"`) {
		t.Fatalf("relay send: got %q, want a 200 accepted line", out)
	}

	archive := filepath.Join(dir, "data", "events.jsonl")
	failures := filepath.Join(dir, "data", "failures.jsonl")
	eventually(t, 20*time.Second, "the event in both files", func() bool {
		a, _ := os.ReadFile(archive)
		f, _ := os.ReadFile(failures)
		return strings.Contains(string(a), "zoom_captions_failure") && strings.Contains(string(f), "zoom_captions_failure")
	})

	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d, want 0\n%s", code, p.logs)
	}
	if !strings.Contains(p.logs.String(), `"msg":"relay stopped"`) {
		t.Errorf("no clean-stop log line:\n%s", p.logs)
	}

	// A wrong secret gets a non-2xx answer and exit 1 from relay send.
	p = startRelay(t, dir, config)
	cmd := exec.Command(binary(t, "relay"), "send",
		"--url", "http://"+p.ingest+"/webhooks/recall",
		"--secret", "whsec_plJ3nmyCDGBKInavdOK15jsl", event)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), ": 401 ") {
		t.Errorf("send with a wrong secret: exit %d, output %q; want exit 1 and a 401", cmd.ProcessState.ExitCode(), out)
	}
	if code := p.stop(syscall.SIGINT, 30*time.Second); code != 0 {
		t.Fatalf("exit code after SIGINT: got %d, want 0", code)
	}
}

// TestReloadSignals: SIGHUP and, with --watch, a change of the file reload
// the config; a broken file keeps the running one.
func TestReloadSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "relay.yaml")
	write := func(rules string) {
		t.Helper()
		yaml := fmt.Sprintf(`
storage:
  dir: %s/data
sources:
  recall:
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
sinks:
  archive:
    type: file
    path: %s/archive.jsonl
rules:
%s`, dir, dir, rules)
		if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("  - {name: one, when: \"true\", sinks: [archive]}\n")
	cmd := exec.Command(binary(t, "relay"), "serve", "-c", config, "--watch")
	p := startRelayCmd(t, cmd, dir)
	count := func(msg string) int { return strings.Count(p.logs.String(), `"msg":"`+msg+`"`) }
	eventually(t, 20*time.Second, "the watch to start", func() bool { return count("watching the config file") == 1 })

	write("  - {name: two, when: \"true\", sinks: [archive]}\n")
	eventually(t, 20*time.Second, "a reload on file change", func() bool { return count("config reloaded") >= 1 })

	before := count("config reloaded")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a reload on SIGHUP", func() bool { return count("config reloaded") > before })

	write("  - {name: broken, when: \"sub_cod\", sinks: [archive]}\n")
	eventually(t, 20*time.Second, "a failed reload", func() bool {
		return strings.Contains(p.logs.String(), "config reload failed; keeping the running config")
	})
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code: %d\n%s", code, p.logs)
	}
}
