package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretRedacts(t *testing.T) {
	const value = "whsec_s3cr3tv4lue"
	s := Secret(value)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", s)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "secret", s)
	j, _ := json.Marshal(struct{ S Secret }{s})
	outs := map[string]string{
		"%+v":  fmt.Sprintf("%+v", struct{ S Secret }{s}),
		"json": string(j),
		"slog": logs.String(),
	}
	for _, verb := range []string{"%v", "%s", "%q", "%#v"} {
		outs[verb] = fmt.Sprintf(verb, s)
	}
	for name, out := range outs {
		if strings.Contains(out, "s3cr3t") || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: got %q, want it redacted", name, out)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal: got %q, want the value", s.Reveal())
	}
	if Secret("").String() != "" {
		t.Error("an empty secret should print empty, so that 'not set' stays visible")
	}
}
