package relay

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const expectationsYAML = `
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript" && status in ["done", "failed"]
    key: recording.id
    within: 30m
`

func TestLoadConfigExpectations(t *testing.T) {
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, validConfig+expectationsYAML), LoadOptions{Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ExpectSet.Len() != 1 || cfg.Expectations[0].Within != 30*time.Minute || cfg.Expectations[0].Key != "recording.id" {
		t.Errorf("expectations: %+v", cfg.Expectations)
	}
	if w, ok := cfg.ExpectSet.Within("transcript-arrives"); !ok || w != 30*time.Minute {
		t.Errorf("Within = %v, %v", w, ok)
	}
}

func TestLoadConfigExpectationErrors(t *testing.T) {
	bad := strings.NewReplacer(
		`after: event == "recording.done"`, `after: evnt == "recording.done"`,
		"within: 30m", "within: soon",
	).Replace(expectationsYAML) + `  - name: transcript-arrives
    after: "true"
    expect: "true"
    key: recording
    within: -1s
    colour: red
`
	var tr testRegistry
	_, err := LoadConfig(writeConfig(t, validConfig+bad), LoadOptions{Registry: tr.registry()})
	want := []string{
		"expectations[0].within: invalid duration (want Go syntax such as 250ms, 10s, 5m)",
		"expectations[0].after: unknown name evnt (1:1)",
		"expectations[0].within: must be positive",
		`expectations[1].name: duplicate expectation name "transcript-arrives" (first at expectations[0])`,
		"expectations[1].key: expected string, but got map[string]interface {} (1:1)",
		"expectations[1].colour: unknown key",
		"expectations[1].within: must be positive",
	}
	got := errorLines(err)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing problem %q\ngot:\n  %s", w, strings.Join(got, "\n  "))
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n  %s", len(got), len(want), strings.Join(got, "\n  "))
	}
}
