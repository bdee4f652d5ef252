package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// testSecret is a valid svix secret (base64 of 24 bytes).
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

const eventsDir = "../../configs/examples/events"

// runJSON runs the command with --json appended and decodes the report.
func runJSON(t *testing.T, ctx context.Context, args ...string) (int, report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, context.Background(), append(args, "--json"), &stdout, &stderr)
	var rep report
	if code != exitUsage && stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("decode report %q: %v", stdout.String(), err)
		}
	}
	return code, rep, stderr.String()
}

// recorder is a test webhook server handler recording what it saw.
type recorder struct {
	wh *svix.Webhook
	// respond picks the outcome of the n-th request (0-based): an HTTP
	// status, or 0 to abort the connection.
	respond func(n int) int

	mu       sync.Mutex
	n        int
	verified int
	ids      map[string]int // svix-id -> status answered
	bodies   map[string]int // body -> count
}

func newRecorder(t *testing.T, respond func(n int) int) *recorder {
	t.Helper()
	wh, err := svix.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if respond == nil {
		respond = func(int) int { return http.StatusOK }
	}
	return &recorder{wh: wh, respond: respond, ids: map[string]int{}, bodies: map[string]int{}}
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	verr := rc.wh.Verify(body, r.Header)
	id := r.Header.Get("svix-id")

	rc.mu.Lock()
	n := rc.n
	rc.n++
	status := rc.respond(n)
	if verr == nil {
		rc.verified++
	}
	rc.bodies[string(body)]++
	if status != 0 {
		if _, dup := rc.ids[id]; dup {
			status = http.StatusConflict // make duplicates visible to the test
		}
		rc.ids[id] = status
	}
	rc.mu.Unlock()

	if status == 0 {
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("no hijacker")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"id":%q,"status":"accepted"}`, id)
}

func (rc *recorder) okIDs() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var ids []string
	for id, st := range rc.ids {
		if st >= 200 && st < 300 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestSignaturesVerify(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample events: %v", err)
	}
	tests := []struct {
		name   string
		args   []string
		n      int
		bodies int // distinct bodies expected
	}{
		{"builtin event closed loop", []string{"--concurrency", "4"}, 50, 1},
		{"events dir cycles", []string{"--concurrency", "8", "--events", eventsDir}, 3 * len(files), len(files)},
		{"single file repeated flag", []string{"--events", files[0], "--events", files[1]}, 10, 2},
		{"open loop", []string{"--rate", "5000", "--concurrency", "4"}, 40, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newRecorder(t, nil)
			srv := httptest.NewServer(rc)
			defer srv.Close()
			args := append([]string{"--url", srv.URL, "--secret", testSecret, "--requests", fmt.Sprint(tt.n)}, tt.args...)
			code, rep, stderr := runJSON(t, context.Background(), args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if rep.Sent != int64(tt.n) || rep.OK != int64(tt.n) || rep.Statuses["200"] != int64(tt.n) {
				t.Errorf("report sent=%d ok=%d statuses=%v, want %d", rep.Sent, rep.OK, rep.Statuses, tt.n)
			}
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if rc.verified != tt.n {
				t.Errorf("verified %d of %d", rc.verified, tt.n)
			}
			if len(rc.ids) != tt.n {
				t.Errorf("distinct ids %d, want %d", len(rc.ids), tt.n)
			}
			for id := range rc.ids {
				if !strings.HasPrefix(id, "msg_") || len(id) != 31 {
					t.Errorf("bad id %q", id)
				}
			}
			if len(rc.bodies) != tt.bodies {
				t.Errorf("distinct bodies %d, want %d", len(rc.bodies), tt.bodies)
			}
			for _, n := range rc.bodies {
				if n != tt.n/tt.bodies {
					t.Errorf("body sent %d times, want %d (even cycle)", n, tt.n/tt.bodies)
				}
			}
		})
	}
}

func TestStatusCounts(t *testing.T) {
	tests := []struct {
		name    string
		respond func(n int) int
		args    []string
		n       int
		want    map[string]int64
	}{
		{
			name:    "every third 503 sequential",
			respond: func(n int) int { return map[bool]int{true: 503, false: 200}[n%3 == 2] },
			args:    []string{"--concurrency", "1"},
			n:       30,
			want:    map[string]int64{"200": 20, "503": 10},
		},
		{
			name:    "every third 503 concurrent",
			respond: func(n int) int { return map[bool]int{true: 503, false: 200}[n%3 == 2] },
			args:    []string{"--concurrency", "8"},
			n:       99,
			want:    map[string]int64{"200": 66, "503": 33},
		},
		{
			name: "mixed with transport errors",
			respond: func(n int) int {
				switch n % 5 {
				case 1:
					return 401
				case 3:
					return 0 // connection dropped
				default:
					return 200
				}
			},
			args: []string{"--concurrency", "3"},
			n:    50,
			want: map[string]int64{"200": 30, "401": 10, statusError: 10},
		},
		{
			name:    "open loop every third 503",
			respond: func(n int) int { return map[bool]int{true: 503, false: 200}[n%3 == 0] },
			args:    []string{"--rate", "10000", "--concurrency", "4"},
			n:       60,
			want:    map[string]int64{"200": 40, "503": 20},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newRecorder(t, tt.respond)
			srv := httptest.NewServer(rc)
			defer srv.Close()
			ids := filepath.Join(t.TempDir(), "ids.txt")
			args := append([]string{"--url", srv.URL, "--secret", testSecret, "--requests", fmt.Sprint(tt.n), "--ids-out", ids}, tt.args...)
			code, rep, stderr := runJSON(t, context.Background(), args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if rep.Sent != int64(tt.n) {
				t.Errorf("sent %d, want %d", rep.Sent, tt.n)
			}
			if fmt.Sprint(rep.Statuses) != fmt.Sprint(tt.want) {
				t.Errorf("statuses %v, want %v", rep.Statuses, tt.want)
			}
			rc.mu.Lock()
			got := rc.n
			rc.mu.Unlock()
			if got != tt.n {
				t.Errorf("server saw %d requests, want %d", got, tt.n)
			}
			if errs := tt.want[statusError]; errs > 0 && len(rep.Errors) == 0 {
				t.Errorf("no error messages reported")
			}
			lines := readLines(t, ids)
			slices.Sort(lines)
			if want := rc.okIDs(); !slices.Equal(lines, want) {
				t.Errorf("ids-out has %d ids, want the %d 2xx ids", len(lines), len(want))
			}
			if int64(len(lines)) != rep.OK {
				t.Errorf("ids-out has %d ids, report ok=%d", len(lines), rep.OK)
			}
			// --fail-on-error turns non-2xx into exit 1.
			code, _, _ = runJSON(t, context.Background(), append(args, "--fail-on-error")...)
			if code != exitFatal {
				t.Errorf("--fail-on-error exit %d, want %d", code, exitFatal)
			}
		})
	}
}

func TestFailOnErrorAllOK(t *testing.T) {
	srv := httptest.NewServer(newRecorder(t, nil))
	defer srv.Close()
	code, _, stderr := runJSON(t, context.Background(), "--url", srv.URL, "--secret", testSecret, "--requests", "5", "--fail-on-error")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// TestInterruptWritesIDs cancels the run (as SIGINT does) and checks that
// every id answered 2xx, including those in flight at the signal, is written.
func TestInterruptWritesIDs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := newRecorder(t, nil)
	rc.respond = func(n int) int {
		if n == 20 {
			cancel() // the "signal" arrives while requests are in flight
		}
		return http.StatusOK
	}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	ids := filepath.Join(t.TempDir(), "ids.txt")
	code, rep, stderr := runJSON(t, ctx, "--url", srv.URL, "--secret", testSecret, "--duration", "1m", "--concurrency", "4", "--ids-out", ids)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !rep.Interrupted {
		t.Errorf("report not marked interrupted")
	}
	lines := readLines(t, ids)
	slices.Sort(lines)
	want := rc.okIDs()
	if len(want) < 21 || !slices.Equal(lines, want) {
		t.Errorf("ids-out has %d ids, server answered 200 to %d", len(lines), len(want))
	}
	if rep.Sent != int64(len(want)) {
		t.Errorf("sent %d, server answered %d", rep.Sent, len(want))
	}
}

func TestOpenLoop(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantPlanned int64
	}{
		{"requests bound", []string{"--rate", "2000", "--requests", "200"}, 200},
		{"duration bound", []string{"--rate", "200", "--duration", "250ms"}, 50},
		{"requests before duration", []string{"--rate", "1000", "--duration", "10s", "--requests", "30"}, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newRecorder(t, nil)
			srv := httptest.NewServer(rc)
			defer srv.Close()
			code, rep, stderr := runJSON(t, context.Background(), append([]string{"--url", srv.URL, "--secret", testSecret, "--concurrency", "8"}, tt.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if rep.Mode != "open" {
				t.Errorf("mode %q", rep.Mode)
			}
			// Every scheduled request is either sent or (if the scheduler fell
			// behind at the deadline) reported as missed.
			if rep.Sent+rep.Missed != tt.wantPlanned || rep.Sent == 0 {
				t.Errorf("sent %d + missed %d, want %d planned", rep.Sent, rep.Missed, tt.wantPlanned)
			}
			if rep.OK != rep.Sent {
				t.Errorf("ok %d of %d", rep.OK, rep.Sent)
			}
		})
	}
}

func TestPlannedRequests(t *testing.T) {
	tests := []struct {
		rate     float64
		duration time.Duration
		requests int64
		want     int64
	}{
		{100, time.Second, 0, 100},
		{100, time.Second, 10, 10},
		{3, time.Second, 0, 3},
		{3, 1001 * time.Millisecond, 0, 4},
		{0.5, 10 * time.Second, 0, 5},
		{1000, time.Millisecond, 0, 1},
		{1e6, 3 * time.Millisecond, 0, 3000},
	}
	for _, tt := range tests {
		got := plannedRequests(config{rate: tt.rate, duration: tt.duration, requests: tt.requests})
		if got != tt.want {
			t.Errorf("plannedRequests(rate %g, %v, %d) = %d, want %d", tt.rate, tt.duration, tt.requests, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", ms(7), 50, 7 * time.Millisecond},
		{"single p99", ms(7), 99, 7 * time.Millisecond},
		{"two p50", ms(1, 2), 50, 1 * time.Millisecond},
		{"two p51", ms(1, 2), 51, 2 * time.Millisecond},
		{"five p50", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"five p90", ms(1, 2, 3, 4, 5), 90, 5 * time.Millisecond},
		{"hundred p50", ms(hundred...), 50, 50 * time.Millisecond},
		{"hundred p90", ms(hundred...), 90, 90 * time.Millisecond},
		{"hundred p99", ms(hundred...), 99, 99 * time.Millisecond},
		{"hundred p100", ms(hundred...), 100, 100 * time.Millisecond},
		{"p0 is min", ms(3, 4), 0, 3 * time.Millisecond},
		{"above 100 is max", ms(3, 4), 150, 4 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %g) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	base := []string{"--url", "http://127.0.0.1:1/", "--secret", testSecret}
	tests := []struct {
		name  string
		args  []string
		usage bool
	}{
		{"ok requests", append(base, "--requests", "1"), false},
		{"ok duration", append(base, "--duration", "1s"), false},
		{"ok floor", []string{"--floor", "127.0.0.1:0", "--secret", testSecret}, false},
		{"no stop condition", base, true},
		{"no url", []string{"--secret", testSecret, "--requests", "1"}, true},
		{"bad url", []string{"--url", "127.0.0.1:1", "--secret", testSecret, "--requests", "1"}, true},
		{"no secret", []string{"--url", "http://127.0.0.1:1/", "--requests", "1"}, true},
		{"bad secret", []string{"--url", "http://127.0.0.1:1/", "--secret", "whsec_!!", "--requests", "1"}, true},
		{"zero concurrency", append(base, "--requests", "1", "--concurrency", "0"), true},
		{"negative rate", append(base, "--requests", "1", "--rate", "-1"), true},
		{"fsync without floor", append(base, "--requests", "1", "--floor-fsync", "x"), true},
		{"extra args", append(base, "--requests", "1", "extra"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			var uerr *usageError
			if tt.usage != errors.As(err, &uerr) {
				t.Errorf("err = %v, want usage error %v", err, tt.usage)
			}
			if !tt.usage && err != nil {
				t.Errorf("unexpected error %v", err)
			}
		})
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), context.Background(), []string{"--bogus"}, io.Discard, &stderr); code != exitUsage {
		t.Errorf("unknown flag exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), context.Background(), base, io.Discard, &stderr); code != exitUsage {
		t.Errorf("missing stop condition exit %d, want %d", code, exitUsage)
	}
}

func TestLoadEvents(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"event":"b"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"event":"a"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "skip.txt"), []byte(`nope`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		paths   []string
		want    []string
		wantErr bool
	}{
		{"default", nil, []string{defaultEvent}, false},
		{"dir sorted json only", []string{dir}, []string{`{"event":"a"}`, `{"event":"b"}`}, false},
		{"file then dir", []string{filepath.Join(dir, "b.json"), dir}, []string{`{"event":"b"}`, `{"event":"a"}`, `{"event":"b"}`}, false},
		{"missing", []string{filepath.Join(dir, "nope.json")}, nil, true},
		{"invalid json", []string{bad}, nil, true},
		{"empty dir", []string{t.TempDir()}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadEvents(tt.paths)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			var s []string
			for _, b := range got {
				s = append(s, string(b))
			}
			if !slices.Equal(s, tt.want) {
				t.Errorf("got %q, want %q", s, tt.want)
			}
		})
	}
	if !json.Valid([]byte(defaultEvent)) {
		t.Error("default event is not valid JSON")
	}
}

func TestNewMsgID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newMsgID()
		if len(id) != 31 || !strings.HasPrefix(id, "msg_") {
			t.Fatalf("bad id %q", id)
		}
		for _, c := range id[4:] {
			if !strings.ContainsRune(base62, c) {
				t.Fatalf("non-base62 char in %q", id)
			}
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestTextReport(t *testing.T) {
	rc := newRecorder(t, func(n int) int { return map[bool]int{true: 503, false: 200}[n%2 == 0] })
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), context.Background(), []string{"--url", srv.URL, "--secret", testSecret, "--requests", "10"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"sent:        10 (2xx 5", "status:      200=5 503=5", "throughput:", "latency:     p50="} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout.String())
		}
	}
}

// signedRequest builds a POST to url signed with secret (unsigned if secret
// is empty).
func signedRequest(t *testing.T, url, secret, id string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		wh, err := svix.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		sig, err := wh.Sign(id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("svix-id", id)
		req.Header.Set("svix-timestamp", fmt.Sprint(now.Unix()))
		req.Header.Set("svix-signature", sig)
	}
	return req
}

func TestFloorServer(t *testing.T) {
	pretty, err := os.ReadFile(filepath.Join(eventsDir, "bot.in_call_recording.json"))
	if err != nil {
		t.Fatal(err)
	}
	const otherSecret = "whsec_dGhpcyBpcyBhIGRpZmZlcmVudCBzZWNyZXQ="
	for _, withFsync := range []bool{false, true} {
		t.Run(fmt.Sprintf("fsync=%v", withFsync), func(t *testing.T) {
			cfg := config{floorAddr: "127.0.0.1:0", secret: testSecret, floorMaxBody: 4096}
			if withFsync {
				cfg.floorFsync = filepath.Join(t.TempDir(), "store.jsonl")
			}
			fs, err := startFloor(cfg)
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + fs.Addr() + "/webhook"
			tests := []struct {
				name   string
				method string
				secret string
				body   []byte
				want   int
			}{
				{"signed compact", http.MethodPost, testSecret, []byte(defaultEvent), 200},
				{"signed pretty", http.MethodPost, testSecret, pretty, 200},
				{"unsigned", http.MethodPost, "", []byte(defaultEvent), 401},
				{"wrong secret", http.MethodPost, otherSecret, []byte(defaultEvent), 401},
				{"invalid json", http.MethodPost, testSecret, []byte(`{"event":`), 400},
				{"json array", http.MethodPost, testSecret, []byte(`[1]`), 400},
				{"too large", http.MethodPost, testSecret, bytes.Repeat([]byte(" "), 5000), 413},
				{"get", http.MethodGet, "", nil, 405},
				{"signed again", http.MethodPost, testSecret, []byte(`{"event":"x"}`), 200},
			}
			accepted := 0
			for i, tt := range tests {
				id := fmt.Sprintf("msg_test%d", i)
				req := signedRequest(t, url, tt.secret, id, tt.body)
				req.Method = tt.method
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Errorf("%s: status %d, want %d (%s)", tt.name, resp.StatusCode, tt.want, b)
					continue
				}
				if tt.want == 200 {
					accepted++
					var ack map[string]string
					if err := json.Unmarshal(b, &ack); err != nil || ack["id"] != id || ack["status"] != "accepted" {
						t.Errorf("%s: ack %s", tt.name, b)
					}
				}
			}
			if err := fs.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if withFsync {
				lines := readLines(t, cfg.floorFsync)
				if len(lines) != accepted {
					t.Errorf("store has %d lines, want %d", len(lines), accepted)
				}
				for _, l := range lines {
					if !json.Valid([]byte(l)) {
						t.Errorf("store line is not JSON: %q", l)
					}
				}
			}
		})
	}
}

// lineWriter is an io.Writer that reports the first line written to it.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := bytes.IndexByte(w.buf.Bytes(), '\n') >= 0
	w.buf.Write(p)
	if !had {
		if line, err := bufio.NewReader(bytes.NewReader(w.buf.Bytes())).ReadString('\n'); err == nil {
			w.first <- strings.TrimSuffix(line, "\n")
		}
	}
	return len(p), nil
}

// TestFloorMode runs the floor mode through run(), drives load through it
// with the generator, and stops it as a signal would.
func TestFloorMode(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{first: make(chan string, 1)}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, context.Background(), []string{"--floor", "127.0.0.1:0", "--secret", testSecret, "--floor-fsync", store}, out, &stderr)
	}()
	var addr string
	select {
	case line := <-out.first:
		var ok bool
		addr, ok = strings.CutPrefix(line, "listening on ")
		if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Fatalf("first line %q", line)
		}
	case code := <-done:
		t.Fatalf("floor exited early with %d: %s", code, stderr.String())
	}
	ids := filepath.Join(t.TempDir(), "ids.txt")
	code, rep, errOut := runJSON(t, context.Background(), "--url", "http://"+addr+"/", "--secret", testSecret, "--events", eventsDir, "--requests", "100", "--concurrency", "8", "--ids-out", ids)
	if code != exitOK || rep.OK != 100 {
		t.Fatalf("load exit %d ok %d: %s", code, rep.OK, errOut)
	}
	code, rep, _ = runJSON(t, context.Background(), "--url", "http://"+addr+"/", "--secret", "whsec_dGhpcyBpcyBhIGRpZmZlcmVudCBzZWNyZXQ=", "--requests", "5")
	if code != exitOK || rep.Statuses["401"] != 5 {
		t.Errorf("wrong-secret load exit %d statuses %v", code, rep.Statuses)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("floor exit %d: %s", code, stderr.String())
	}
	if n := len(readLines(t, store)); n != 100 {
		t.Errorf("store has %d lines, want 100", n)
	}
	if n := len(readLines(t, ids)); n != 100 {
		t.Errorf("ids-out has %d lines, want 100", n)
	}
}

// TestOpenLoopStalledServer checks that an open loop whose only worker is
// stuck on a hung request stops at the duration and reports the rest of the
// schedule as missed rather than sending it late.
func TestOpenLoopStalledServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
		select {                           // hang until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	code, rep, stderr := runJSON(t, context.Background(), "--url", srv.URL, "--secret", testSecret,
		"--rate", "1000", "--duration", "100ms", "--concurrency", "1", "--timeout", "300ms")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if rep.Sent != 1 || rep.Missed != 99 || rep.Statuses[statusError] != 1 {
		t.Errorf("sent %d missed %d statuses %v, want 1 sent (error), 99 missed", rep.Sent, rep.Missed, rep.Statuses)
	}
}
