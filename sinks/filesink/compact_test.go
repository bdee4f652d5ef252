package filesink

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppendCompact(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for invalid
	}{
		{`{}`, `{}`},
		{" {\n  \"a\" : [ 1 , 2.5e-3, -0, true, false, null ],\r\n\t\"b\": {\"c\": \"x y\\n\\u00e9\\\"\"} } ", `{"a":[1,2.5e-3,-0,true,false,null],"b":{"c":"x y\n\u00e9\""}}`},
		{`"str"`, `"str"`},
		{"\"bytes \xff \u2028\"", "\"bytes \xff \u2028\""},
		{`42`, `42`},
		{``, ``},
		{`{"a":}`, ``},
		{`{"a":1,}`, ``},
		{`[1,]`, ``},
		{`01`, ``},
		{`1.`, ``},
		{`1e`, ``},
		{`-`, ``},
		{`tru`, ``},
		{`"unterminated`, ``},
		{"\"tab\tinside\"", ``},
		{`"\x"`, ``},
		{`"\u12"`, ``},
		{`{"a":1} {}`, ``},
		{`{'a':1}`, ``},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), ``},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			got, ok := appendCompact([]byte("prefix"), []byte(tt.in))
			if tt.want == "" {
				if ok || string(got) != "prefix" {
					t.Fatalf("appendCompact(%q) = %q, %v; want invalid and dst unchanged", tt.in, got, ok)
				}
			} else if !ok || string(got) != "prefix"+tt.want {
				t.Fatalf("appendCompact(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
			}
			checkAgainstEncodingJSON(t, []byte(tt.in))
		})
	}
}

// checkAgainstEncodingJSON fails unless appendCompact agrees with
// json.Compact on src: the same validity and the same output.
func checkAgainstEncodingJSON(t *testing.T, src []byte) {
	t.Helper()
	var want bytes.Buffer
	werr := json.Compact(&want, src)
	got, ok := appendCompact(nil, src)
	if ok != (werr == nil) {
		t.Fatalf("appendCompact(%q) valid = %v; json.Compact error %v", src, ok, werr)
	}
	if ok && !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("appendCompact(%q) = %q; json.Compact %q", src, got, want.Bytes())
	}
}

func FuzzCompact(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `"\ud83d\ude00"`, `-1.5E+10`, `[]`, ` 0 `, `{"a":"\u00"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		checkAgainstEncodingJSON(t, src)
	})
}

func BenchmarkCompact(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(eventsDir, "transcript.failed.zoom_captions_failure.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("appendCompact", func(b *testing.B) {
		buf := make([]byte, 0, len(body))
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			buf, _ = appendCompact(buf[:0], body)
		}
	})
	b.Run("json.Compact", func(b *testing.B) {
		var buf bytes.Buffer
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			buf.Reset()
			_ = json.Compact(&buf, body)
		}
	})
}
