package rules

import (
	"strings"
	"testing"
	"time"
)

func TestCompileString(t *testing.T) {
	env, err := NewEnv([]byte(`{"event":"transcript.failed","data":{"data":{"code":"failed","sub_code":"zoom_captions_failure"},"recording":{"id":"rec-1"},"transcript":{"id":"tr-1"}}}`), Meta{Source: "recall", ReceivedAt: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		`recording.id`:            "rec-1",
		`sub_code + "/" + source`: "zoom_captions_failure/recall",
		`media.id`:                "tr-1",
	} {
		f, err := CompileString(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got, err := f(env.Data()); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
	for src, want := range map[string]string{
		``:            "required",
		`recordin.id`: "unknown name recordin (1:1)",
		`1 + 2`:       "expected string",
		`updated_at`:  "expected string",
	} {
		if _, err := CompileString(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CompileString(%q) error %v, want it to contain %q", src, err, want)
		}
	}
	f, _ := CompileString(`payload.event`) // dynamic: checked when run
	if _, err := f(map[string]any{"payload": map[string]any{"event": 1.0}}); err == nil {
		t.Error("a non-string result at run time is not an error")
	}
}
