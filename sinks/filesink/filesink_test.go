package filesink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

const eventsDir = "../../configs/examples/events"

func newSink(t *testing.T, options map[string]any) *Sink {
	t.Helper()
	s, err := New("test", options, sinks.Env{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*Sink)
}

func delivery(id string, body []byte) sinks.Delivery {
	return sinks.Delivery{
		MsgID:      id,
		Source:     "recall",
		Event:      "transcript.failed",
		Rules:      []string{"captions", "all-failures"},
		Body:       body,
		ReceivedAt: time.Date(2025, 3, 19, 17, 44, 7, 123456789, time.UTC),
		Attempt:    1,
	}
}

// record is a decoded line.
type record struct {
	ReceivedAt string          `json:"received_at"`
	Source     string          `json:"source"`
	MsgID      string          `json:"msg_id"`
	Event      string          `json:"event"`
	Rules      []string        `json:"rules"`
	Payload    json.RawMessage `json:"payload"`
}

// readLines returns the lines of path, each without its newline, failing
// the test when the file does not end with a newline.
func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	return bytes.Split(data[:len(data)-1], []byte("\n"))
}

func decode(t *testing.T, line []byte) record {
	t.Helper()
	var r record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("invalid line %.200q: %v", line, err)
	}
	if dec.More() {
		t.Fatalf("line %.200q holds more than one value", line)
	}
	return r
}

func TestNewValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		options map[string]any
		want    string
	}{
		{name: "missing path", options: map[string]any{}, want: "path: required"},
		{name: "negative size", options: map[string]any{"path": filepath.Join(dir, "a"), "max_size_mb": -1}, want: "max_size_mb: must be 0 or more"},
		{name: "negative backups", options: map[string]any{"path": filepath.Join(dir, "a"), "max_backups": "-2"}, want: "max_backups: must be 0 or more"},
		{name: "bad integer", options: map[string]any{"path": filepath.Join(dir, "a"), "max_size_mb": "big"}, want: "max_size_mb: invalid integer"},
		{name: "bad bool", options: map[string]any{"path": filepath.Join(dir, "a"), "fsync": "sometimes"}, want: "fsync: invalid boolean"},
		{name: "unknown key", options: map[string]any{"path": filepath.Join(dir, "a"), "rotate": true}, want: "rotate: unknown key"},
		{name: "several", options: map[string]any{"max_size_mb": -1, "max_backups": -1}, want: "path: required\nmax_size_mb: must be 0 or more\nmax_backups: must be 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("test", tt.options, sinks.Env{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != strings.Count(tt.want, "\n") {
				t.Errorf("New = %q, want %q", err, tt.want)
			}
		})
	}
	if Type.New == nil || Type.Concurrency != 0 {
		t.Errorf("Type = %+v", Type)
	}
}

func TestLine(t *testing.T) {
	indented, err := os.ReadFile(filepath.Join(eventsDir, "transcript.failed.zoom_captions_failure.json"))
	if err != nil {
		t.Fatal(err)
	}
	var compacted bytes.Buffer
	if err := json.Compact(&compacted, indented); err != nil {
		t.Fatal(err)
	}
	const head = `{"received_at":"2025-03-19T17:44:07.123456789Z","source":"recall","msg_id":"msg_1","event":"transcript.failed","rules":["captions","all-failures"],"payload":`
	tests := []struct {
		name    string
		body    []byte
		payload string
	}{
		{name: "compact json verbatim", body: []byte(`{"event":"transcript.failed","data":{"n":1.50,"e":1e3,"s":"\u00e9<&>"}}`), payload: `{"event":"transcript.failed","data":{"n":1.50,"e":1e3,"s":"\u00e9<&>"}}`},
		{name: "unicode verbatim", body: []byte(`{"title":"Réunion — 会议 🎙️","html":"<b>&amp;</b>"}`), payload: `{"title":"Réunion — 会议 🎙️","html":"<b>&amp;</b>"}`},
		{name: "indented json compacted", body: indented, payload: compacted.String()},
		{name: "surrounding whitespace trimmed", body: []byte(" {\"a\": [1, 2]}\n"), payload: `{"a": [1, 2]}`},
		{name: "invalid json as string", body: []byte(`{"event": tru`), payload: `"{\"event\": tru"`},
		{name: "binary as string", body: []byte("a\nb\x00"), payload: `"a\nb\u0000"`},
		{name: "empty body", body: nil, payload: `""`},
		{name: "json scalar", body: []byte(`42`), payload: `42`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeLine(delivery("msg_1", tt.body))
			want := head + tt.payload + "}\n"
			if string(got) != want {
				t.Errorf("line:\n got %s\nwant %s", got, want)
			}
			if bytes.Count(got, []byte("\n")) != 1 {
				t.Errorf("line holds %d newlines, want 1", bytes.Count(got, []byte("\n")))
			}
			decode(t, bytes.TrimSuffix(got, []byte("\n")))
		})
	}
	t.Run("nil rules", func(t *testing.T) {
		d := delivery("m", []byte(`{}`))
		d.Rules = nil
		if r := decode(t, bytes.TrimSpace(encodeLine(d))); r.Rules == nil {
			t.Error("rules decoded as null, want []")
		}
	})
}

func TestSendWritesEveryExample(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dirs", "events.jsonl")
	s := newSink(t, map[string]any{"path": path})
	files, err := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example events: %v", err)
	}
	var want [][]byte
	for i, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			t.Fatal(err)
		}
		want = append(want, compact.Bytes())
		if err := s.Send(context.Background(), delivery(fmt.Sprint("msg_", i), body)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	lines := readLines(t, path)
	if len(lines) != len(files) {
		t.Fatalf("%d lines, want %d", len(lines), len(files))
	}
	for i, line := range lines {
		r := decode(t, line)
		if !bytes.Equal(r.Payload, want[i]) {
			t.Errorf("line %d payload = %s, want %s", i, r.Payload, want[i])
		}
		if r.MsgID != fmt.Sprint("msg_", i) || r.Source != "recall" || r.ReceivedAt != "2025-03-19T17:44:07.123456789Z" {
			t.Errorf("line %d = %+v", i, r)
		}
	}
}

func TestConcurrentSends(t *testing.T) {
	const goroutines, perG = 8, 1000
	tests := []struct {
		name    string
		options map[string]any
	}{
		{name: "plain file", options: map[string]any{"max_size_mb": 0}},
		{name: "lumberjack", options: map[string]any{}},
		{name: "lumberjack fsync", options: map[string]any{"fsync": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			tt.options["path"] = path
			s := newSink(t, tt.options)
			n := perG
			if s.fsync {
				n = 50 // an fsync per line is slow on real disks
			}
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range n {
						// Bodies of varied sizes make torn writes likely if
						// lines were not written whole.
						body := fmt.Sprintf(`{"event":"bot.done","g":%d,"i":%d,"pad":%q}`, g, i, strings.Repeat("é", (g*31+i)%200))
						if err := s.Send(context.Background(), delivery(fmt.Sprintf("msg_%d_%d", g, i), []byte(body))); err != nil {
							t.Errorf("Send: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			lines := readLines(t, path)
			if len(lines) != goroutines*n {
				t.Fatalf("%d lines, want %d", len(lines), goroutines*n)
			}
			seen := make(map[string]bool, len(lines))
			for _, line := range lines {
				r := decode(t, line)
				var p struct{ G, I int }
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					t.Fatalf("payload: %v", err)
				}
				if r.MsgID != fmt.Sprintf("msg_%d_%d", p.G, p.I) || seen[r.MsgID] {
					t.Fatalf("line %q: wrong or duplicate msg_id", r.MsgID)
				}
				seen[r.MsgID] = true
			}
		})
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	s := newSink(t, map[string]any{"path": path, "max_size_mb": 1, "max_backups": 10})
	pad := strings.Repeat("x", 16<<10)
	const n = 200 // ~3.2 MiB: at least two rotations
	for i := range n {
		body := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad)
		if err := s.Send(context.Background(), delivery(fmt.Sprint("msg_", i), []byte(body))); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	backups, err := filepath.Glob(filepath.Join(dir, "events-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) == 0 {
		t.Fatal("no rotated backups after writing 3 MiB with max_size_mb: 1")
	}
	total := 0
	for _, f := range append(backups, path) {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over max_size_mb", filepath.Base(f), info.Size())
		}
		lines := readLines(t, f)
		for _, line := range lines {
			decode(t, line)
		}
		total += len(lines)
	}
	// lumberjack names backups by millisecond; two rotations within one
	// millisecond would reuse a name, so count only what must be there.
	if total < n/2 {
		t.Errorf("%d lines across %d files, want most of %d", total, len(backups)+1, n)
	}
	t.Logf("%d backups, %d of %d lines", len(backups), total, n)
}

func TestLineTooLargeIsPermanent(t *testing.T) {
	s := newSink(t, map[string]any{"path": filepath.Join(t.TempDir(), "e.jsonl"), "max_size_mb": 1})
	body := []byte(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 1<<20)))
	if err := s.Send(context.Background(), delivery("m", body)); !sinks.IsPermanent(err) {
		t.Errorf("Send = %v, want permanent", err)
	}
}

func TestWriteErrorsAreRetryable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	s := newSink(t, map[string]any{"path": filepath.Join(dir, "e.jsonl")})
	// A file where the directory should be: lumberjack can neither create
	// nor open the log file, whatever the process's privileges.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.Send(context.Background(), delivery("m", []byte(`{}`)))
	if err == nil || sinks.IsPermanent(err) {
		t.Fatalf("Send = %v, want a retryable error", err)
	}
	if !strings.HasPrefix(err.Error(), "write ") {
		t.Errorf("Send = %q, want it to name the write", err)
	}
}

func TestCloseAndPreview(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.jsonl")
	s := newSink(t, map[string]any{"path": path, "max_size_mb": "0", "fsync": "true"})
	d := delivery("msg_p", []byte(`{"event":"bot.done"}`))
	p, err := s.Preview(d)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != "file" || p.Request != "append "+path || p.Body != string(encodeLine(d)) {
		t.Errorf("Preview = %+v", p)
	}
	if err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := s.Send(context.Background(), d); err == nil {
		t.Error("Send after Close succeeded")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var got []string
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	if len(got) != 1 || got[0]+"\n" != p.Body {
		t.Errorf("file = %q, want the previewed line once", got)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != fileMode {
		t.Errorf("mode = %v, %v; want %v", info.Mode().Perm(), err, os.FileMode(fileMode))
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.jsonl")
	for i, opts := range []map[string]any{{"max_size_mb": 0}, {}, {"max_size_mb": 0}} {
		opts["path"] = path
		s := newSink(t, opts)
		if err := s.Send(context.Background(), delivery(fmt.Sprint(i), []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if lines := readLines(t, path); len(lines) != 3 {
		t.Errorf("%d lines, want 3 (append, never truncate)", len(lines))
	}
}

func TestWriteStringMatchesEncoder(t *testing.T) {
	for _, s := range []string{"", "plain-id_1", `quo"te`, `back\slash`, "<html>&", "tab\tnew\nline", "\x00\x1f\x7f", "ünïcödé 会议", "\u2028\u2029", "bad utf-8 \xff"} {
		var fast, enc bytes.Buffer
		writeString(&fast, s)
		writeJSON(&enc, s)
		if fast.String() != enc.String() {
			t.Errorf("writeString(%q) = %s, writeJSON %s", s, fast.String(), enc.String())
		}
	}
}
