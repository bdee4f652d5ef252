package relay

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sequenceConfig = `
sources:
  recall:
    secrets: [` + testSecret + `]
sinks:
  alerts: {type: fake}
  archive: {type: fake}
rules:
  - name: missed
    when: event == "relay.expectation_missed"
    sinks: [alerts]
  - name: fresh
    when: '!stale && object != "relay"'
    sinks: [archive]
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript" && status in ["done", "failed"]
    key: recording.id
    within: 30m
`

// runSequenceCases writes cases next to the example events and runs them.
func runSequenceCases(t *testing.T, cases string) CaseReport {
	t.Helper()
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, sequenceConfig), LoadOptions{Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	built, err := BuildSinks(cfg, tr.registry())
	if err != nil {
		t.Fatal(err)
	}
	defer CloseSinks(built)
	events, _ := filepath.Abs(eventsDir)
	path := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cases, "EVENTS", events)), 0o600); err != nil {
		t.Fatal(err)
	}
	report, err := RunCases(cfg, built, path)
	if err != nil {
		t.Fatal(err)
	}
	return report
}

func TestSequences(t *testing.T) {
	report := runSequenceCases(t, `
cases:
  - name: transcript never arrives
    sequence:
      - at: 0s
        event: EVENTS/recording.done.json
        expect_sinks: [archive]
      - at: 29m
        event: EVENTS/transcript.processing.json
        expect_missed: []
      - at: 31m
        expect_missed:
          - expectation: transcript-arrives
            key: 81a3fd7f-bade-436f-8970-e129e948f81b
            expect_rules: [missed]
            expect_sinks: [alerts]
  - name: transcript arrives in time
    sequence:
      - at: 0s
        event: EVENTS/recording.done.json
      - at: 10m
        event: EVENTS/transcript.done.json
      - at: 2h
        expect_missed: []
  - name: an expect before its after settles nothing
    sequence:
      - at: 0s
        event: EVENTS/transcript.done.json
      - at: 1s
        event: EVENTS/recording.done.json
      - at: 1h
        expect_missed: [{expectation: transcript-arrives}]
  - name: processing after done is stale, for the same object only
    sequence:
      - at: 0s
        event: EVENTS/transcript.done.json
        expect_stale: false
        expect_previous_status: ""
      - at: 1s
        event: EVENTS/transcript.processing.json
        expect_stale: true
        expect_previous_status: done
        expect_sinks: []
      - at: 2s
        event: EVENTS/transcript.processing.json
        set:
          data.transcript.id: another
        expect_stale: false
        expect_previous_status: ""
  - name: a failing sequence
    sequence:
      - at: 0s
        event: EVENTS/recording.done.json
        expect_stale: true
      - at: 31m
        expect_missed: []
`)
	var problems []string
	for _, c := range report.Cases[:4] {
		problems = append(problems, c.Problems...)
	}
	if len(problems) > 0 || report.Passed != 4 {
		t.Errorf("passed %d; problems:\n%s", report.Passed, strings.Join(problems, "\n"))
	}
	failing := report.Cases[4]
	want := []string{
		"step 1 (at 0s): stale: got false, want true",
		"step 2 (at 31m0s): missed: got 1 [transcript-arrives (81a3fd7f-bade-436f-8970-e129e948f81b)], want 0",
	}
	if failing.Passed || !reflect.DeepEqual(failing.Problems, want) {
		t.Errorf("failing case: %q", failing.Problems)
	}
	missed := report.Cases[0].Steps[2].Missed
	if len(missed) != 1 || missed[0].Deadline != "2025-01-01T00:30:00Z" || !reflect.DeepEqual(missed[0].Sinks, []string{"alerts"}) {
		t.Errorf("missed: %+v", missed)
	}
}

func TestSequenceFileErrors(t *testing.T) {
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, sequenceConfig), LoadOptions{Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cases.yaml")
	_ = os.WriteFile(path, []byte(`
cases:
  - name: x
    event: a.json
    sequence:
      - at: 1m
        event: a.json
      - at: 30s
        expect_stale: true
        expect_missed: [{key: k}]
`), 0o600)
	_, err = RunCases(cfg, nil, path)
	for _, want := range []string{
		"cases[0]: event, set, source, expect_rules and expect_sinks go in the steps of a sequence",
		"cases[0].sequence[1].at: before the previous step",
		"cases[0].sequence[1]: a step without event only moves the clock (and may have expect_missed)",
		"cases[0].sequence[1].expect_missed[0].expectation: required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	_ = os.WriteFile(path, []byte("cases:\n  - name: x\n    sequence:\n      - at: soon\n"), 0o600)
	if _, err = RunCases(cfg, nil, path); err == nil || !strings.Contains(err.Error(), `invalid offset "soon"`) {
		t.Errorf("bad offset: %v", err)
	}
}
