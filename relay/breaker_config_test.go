package relay

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLoadConfigSinkBreaker: every sink has a breaker, by default 5
// failures and 30s; a sink sets either key on its own.
func TestLoadConfigSinkBreaker(t *testing.T) {
	yaml := strings.Replace(validConfig, "    type: fake\n", "    type: fake\n    breaker: {cooldown: 2m}\n  b:\n    type: fake\n", 1)
	var tr testRegistry
	cfg, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Sinks["b"].Breaker, (BreakerConfig{Failures: 5, Cooldown: 30 * time.Second}); got != want {
		t.Errorf("sink b breaker: got %+v, want %+v", got, want)
	}
	if got, want := cfg.Sinks["a"].Breaker, (BreakerConfig{Failures: 5, Cooldown: 2 * time.Minute}); got != want {
		t.Errorf("sink a breaker: got %+v, want %+v", got, want)
	}
}

// TestLoadConfigSinkBreakerErrors: each problem names its path.
func TestLoadConfigSinkBreakerErrors(t *testing.T) {
	tests := []struct {
		breaker string
		want    []string
	}{
		{"{failures: 0, cooldown: 0s}", []string{"sinks.a.breaker.failures: must be at least 1", "sinks.a.breaker.cooldown: must be positive"}},
		{"{cooldown: -1s}", []string{"sinks.a.breaker.cooldown: must be positive"}},
		{"{failures: many}", []string{"sinks.a.breaker.failures: invalid integer"}},
		{"{after: 3}", []string{"sinks.a.breaker.after: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.breaker, func(t *testing.T) {
			yaml := strings.Replace(validConfig, "    type: fake\n", "    type: fake\n    breaker: "+tt.breaker+"\n", 1)
			var tr testRegistry
			_, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}, Registry: tr.registry()})
			got := errorLines(err)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}
