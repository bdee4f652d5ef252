package filesink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritePayload(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{name: "one-line object verbatim", body: `{"a": [1, 2.50, 1e3], "s": "x\ny \u00e9"}`, want: `{"a": [1, 2.50, 1e3], "s": "x\ny \u00e9"}`},
		{name: "surrounding whitespace trimmed", body: " \t{\"a\":1}\r\n", want: `{"a":1}`},
		{name: "lf compacted", body: "{\n  \"a\": [ 1, 2 ],\n  \"b\": \"c d\"\n}", want: `{"a":[1,2],"b":"c d"}`},
		{name: "crlf compacted", body: "{\r\n\"a\": 1\r\n}", want: `{"a":1}`},
		{name: "cr alone compacted", body: "{\"a\":\r1}", want: `{"a":1}`},
		{name: "multi-line array compacted", body: "[1,\n2]", want: `[1,2]`},
		{name: "scalar", body: `42`, want: `42`},
		{name: "invalid multi-line as string", body: "{\"a\":\n", want: `"{\"a\":\n"`},
		{name: "truncated object as string", body: `{"event": tru`, want: `"{\"event\": tru"`},
		{name: "empty as string", body: ``, want: `""`},
		// Ingest has checked every body the relay delivers, so an
		// object-shaped line is trusted, not validated.
		{name: "one-line object-shaped is trusted", body: `{"a": tru}`, want: `{"a": tru}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			b.WriteString("prefix")
			writePayload(&b, []byte(tt.body))
			if got := b.String(); got != "prefix"+tt.want {
				t.Errorf("writePayload(%q) = %q, want %q", tt.body, strings.TrimPrefix(got, "prefix"), tt.want)
			}
		})
	}
}

// TestMultiLineBodiesAsJSONCompact holds every example event, as indented
// on disk, to json.Compact's output.
func TestMultiLineBodiesAsJSONCompact(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example events: %v", err)
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte("\n")) {
			t.Fatalf("%s is on one line; the test wants indented bodies", f)
		}
		checkPayload(t, body)
	}
}

// checkPayload fails unless writePayload writes body on one line, as
// json.Compact does when body is valid JSON and as a JSON string otherwise
// (except a one-line object-shaped body, written as it is).
func checkPayload(t *testing.T, body []byte) {
	t.Helper()
	var got bytes.Buffer
	writePayload(&got, body)
	if bytes.ContainsAny(got.Bytes(), "\r\n") {
		t.Fatalf("writePayload(%q) = %q, not one line", body, got.Bytes())
	}
	raw := bytes.TrimSpace(body)
	if isOneLineObject(raw) {
		if !bytes.Equal(got.Bytes(), raw) {
			t.Fatalf("writePayload(%q) = %q, want the line as it is", body, got.Bytes())
		}
		return
	}
	var want bytes.Buffer
	if json.Compact(&want, raw) != nil {
		want.Reset()
		writeString(&want, string(body))
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("writePayload(%q) = %q, want %q", body, got.Bytes(), want.Bytes())
	}
	if !json.Valid(got.Bytes()) {
		t.Fatalf("writePayload(%q) = %q, not valid JSON", body, got.Bytes())
	}
}

func FuzzWritePayload(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, "{\r\n}", `"\ud83d\ude00"`, `-1.5E+10`, `[]`, ` 0 `, `{"a":"\u00"}`, "a\nb\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(checkPayload)
}

// BenchmarkWritePayload embeds bodies the way Send does: single-line bodies
// (what Svix delivers) of a Recall transcript.failed event and of 100 KiB,
// and an indented one that must be compacted.
func BenchmarkWritePayload(b *testing.B) {
	indented, err := os.ReadFile(filepath.Join(eventsDir, "transcript.failed.provider_connection_failed.json"))
	if err != nil {
		b.Fatal(err)
	}
	var oneLine bytes.Buffer
	if err := json.Compact(&oneLine, indented); err != nil {
		b.Fatal(err)
	}
	bodies := []struct {
		name string
		body []byte
	}{
		{"transcript.failed", oneLine.Bytes()},
		{"100KiB", largeBody(100 << 10)},
		{"indented", indented},
	}
	for _, bb := range bodies {
		b.Run(bb.name, func(b *testing.B) {
			var buf bytes.Buffer
			b.SetBytes(int64(len(bb.body)))
			for b.Loop() {
				buf.Reset()
				writePayload(&buf, bb.body)
			}
		})
	}
}

// largeBody is a single-line JSON object of about size bytes: a transcript
// of words with timestamps, dense in structure as a real one is.
func largeBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"event":"transcript.data","data":{"words":[`)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"text":"word%d","start_timestamp":{"relative":%d.%03d},"end_timestamp":null,"final":true}`, i, i/3, i%1000)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}
