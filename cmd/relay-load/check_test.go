package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckMode(t *testing.T) {
	line := func(id string) string { return `{"received_at":"x","msg_id":"` + id + `","payload":{}}` }
	tests := []struct {
		name     string
		archive  []string
		ids      [][]string
		want     checkReport
		wantCode int
	}{
		{
			name:    "every id once, across two ids files",
			archive: []string{line("a"), line("b"), line("c")},
			ids:     [][]string{{"a"}, {"b", "c"}},
			want:    checkReport{Lines: 3, Acked: 3, Once: 3},
		},
		{
			name:    "missing, repeated, unacknowledged and without msg_id",
			archive: []string{line("a"), line("a"), line("x"), `{"payload":{}}`},
			ids:     [][]string{{"a", "b", ""}},
			want:    checkReport{Lines: 4, Acked: 2, Repeated: 1, Missing: 1, NoMsgID: 1},
		},
		{
			name:    "no ids files: lines only",
			archive: []string{line("a"), line("b")},
			want:    checkReport{Lines: 2},
		},
		{
			name:     "a line that is not JSON",
			archive:  []string{line("a"), "{torn"},
			wantCode: exitFatal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			archive := filepath.Join(dir, "events.jsonl")
			if err := os.WriteFile(archive, []byte(strings.Join(tt.archive, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"--check", archive}
			for i, ids := range tt.ids {
				p := filepath.Join(dir, "ids"+string(rune('0'+i)))
				if err := os.WriteFile(p, []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--ids", p)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), context.Background(), args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr.String())
			}
			if tt.wantCode != exitOK {
				return
			}
			var got checkReport
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatalf("decode %q: %v", stdout.String(), err)
			}
			if got != tt.want {
				t.Errorf("report %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"ids without check", []string{"--ids", "x"}},
		{"check with url", []string{"--check", "f", "--url", "http://127.0.0.1:1"}},
		{"check with receive", []string{"--check", "f", "--receive", "127.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), context.Background(), tt.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d (usage); stderr %q", code, exitUsage, stderr.String())
			}
		})
	}
}
