package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckExpectations: check counts the expectations, reports a type
// error under its path, and warns of an expect no known event satisfies.
func TestCheckExpectations(t *testing.T) {
	dir := t.TempDir()
	write := func(expect string) string {
		p := filepath.Join(dir, "relay.yaml")
		err := os.WriteFile(p, []byte(`
sources:
  recall:
    secrets: [whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD]
sinks:
  a: {type: file, path: `+dir+`/a.jsonl}
rules:
  - {name: r, when: "true", sinks: [a]}
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: `+expect+`
    key: recording.id
    within: 30m
`), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write(`object == "transcript" && status in ["done", "failed"]`)
	code, stdout, stderr := runCLI(t, "check", "-c", p)
	if code != 0 || stdout != p+": ok (1 sources, 1 sinks, 1 rules, 1 expectations)\n" || stderr != "" {
		t.Errorf("good: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "check", "-c", write(`event == "transcript.finished"`))
	if code != 0 || !strings.HasPrefix(stderr, "warning: expectations[0] (transcript-arrives).expect: matches none of the ") {
		t.Errorf("typo: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "check", "-c", write(`status`))
	if code != 1 || stdout != "expectations[0].expect: expected bool, but got string (1:1)\n" {
		t.Errorf("type error: exit %d\nstdout %q", code, stdout)
	}
}
