package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCheck(t *testing.T) {
	t.Setenv("RECALL_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/XXXX")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	err := os.WriteFile(bad, []byte(`
sources:
  recall:
    secrets: ["${NOT_SET_ANYWHERE}", whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
sinks:
  slack:
    type: slack
    webhook_url: https://hooks.slack.com/services/T0/B0/s3cr3t
    colour: blue
rules:
  - name: zoom-alerts
    when: event == "transcript.failed" && sub_cod startsWith "zoom_"
    sinks: [slak]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // lines that must appear on stdout, in order
	}{
		{name: "quick-start config", args: []string{"check", "-c", "../../configs/relay.yaml"}, wantCode: 0,
			wantOut: []string{"../../configs/relay.yaml: ok (1 sources, 2 sinks, 3 rules)"}},
		{name: "full example", args: []string{"check", "-c", "../../configs/examples/relay.yaml"}, wantCode: 0,
			wantOut: []string{"../../configs/examples/relay.yaml: ok (1 sources, 3 sinks, 4 rules, 2 expectations)"}},
		{name: "every problem with its path", args: []string{"check", "-c", bad}, wantCode: 1,
			wantOut: []string{
				"sources.recall.secrets[0]: empty secret",
				"sinks.slack.colour: unknown key",
				"rules[0] (zoom-alerts).when: unknown name sub_cod (1:33)",
				`rules[0] (zoom-alerts).sinks[0]: unknown sink "slak"`,
			}},
		{name: "missing file", args: []string{"check", "-c", "nope.yaml"}, wantCode: 1},
		{name: "unknown flag", args: []string{"check", "--frobnicate"}, wantCode: 2},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2},
		{name: "stray argument", args: []string{"check", "extra"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			got := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(tt.wantOut) > 0 && len(got) != len(tt.wantOut) {
				t.Errorf("got %d lines, want %d:\n%s", len(got), len(tt.wantOut), stdout)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout, w+"\n") {
					t.Errorf("missing line %q in:\n%s", w, stdout)
				}
			}
			if strings.Contains(stdout+stderr, "s3cr3t") {
				t.Errorf("output shows a secret:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "relay ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: exit %d, output %q", code, stdout)
	}
}

func TestSendUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no files", []string{"send", "--url", "http://127.0.0.1:1/", "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		{"no secret", []string{"send", "--url", "http://127.0.0.1:1/", "x.json"}},
		{"bad secret", []string{"send", "--url", "http://127.0.0.1:1/", "--secret", "hunter2", "x.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, tt.args...); code != 2 {
				t.Errorf("exit code: got %d, want 2 (%s)", code, stderr)
			}
		})
	}
}

// TestCheckWarnsOfRefusals: a valid config that relay serve would refuse
// (the demo secret on every interface) passes check with a warning that
// names the key.
func TestCheckWarnsOfRefusals(t *testing.T) {
	t.Setenv("RECALL_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/XXXX")
	code, _, stderr := runCLI(t, "check", "-c", "../../configs/examples/relay.yaml")
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if want := "warning: relay serve refuses this config: sources.recall.secrets[0]: the quick-start's public demo secret"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q, want it to contain %q", stderr, want)
	}
	t.Setenv("RECALL_WEBHOOK_SECRET", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	if _, _, stderr := runCLI(t, "check", "-c", "../../configs/examples/relay.yaml"); stderr != "" {
		t.Errorf("own secret: got warnings %q, want none", stderr)
	}
}

// TestServeRefusesUnsafeConfig runs `relay serve` on the quick-start config
// with both listeners on every interface, as the Docker image does without
// its secrets: it exits 1 naming both keys.
func TestServeRefusesUnsafeConfig(t *testing.T) {
	config, err := filepath.Abs("../../configs/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t, "relay"), "serve", "-c", config)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "RELAY_SERVER__LISTEN=:0", "RELAY_SERVER__ADMIN_LISTEN=:0",
		"RELAY_STORAGE__DIR="+t.TempDir(), "RECALL_WEBHOOK_SECRET=", "RELAY_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("got %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"server.admin_token: required", "sources.recall.secrets[0]: the quick-start's public demo secret"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not name %q:\n%s", want, out)
		}
	}
}

// TestClusterExampleChecks: the cluster example's shared config is valid
// and serve would run it (its secrets set as compose and Kubernetes do).
func TestClusterExampleChecks(t *testing.T) {
	t.Setenv("NATS_URL", "nats://n1:4222,nats://n2:4222,nats://n3:4222")
	t.Setenv("RECALL_WEBHOOK_SECRET", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	t.Setenv("RELAY_ADMIN_TOKEN", "an-admin-token")
	t.Setenv("INTERNAL_API_URL", "https://internal.example/api/recall-events")
	t.Setenv("INTERNAL_API_TOKEN", "t")
	code, stdout, stderr := runCLI(t, "check", "-c", "../../configs/examples/cluster/relay.yaml")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}
