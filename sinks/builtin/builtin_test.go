package builtin

import (
	"slices"
	"testing"

	"github.com/relay-dev/relay/sinks"
)

func TestRegistry(t *testing.T) {
	reg := Registry(sinks.Env{})
	if got, want := reg.Names(), []string{"file", "http", "slack"}; !slices.Equal(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
	// Each call gives a registry of its own: registering into one must
	// not touch another.
	Registry(sinks.Env{}).Register("extra", sinks.Type{New: func(string, map[string]any, sinks.Env) (sinks.Sink, error) { return nil, nil }})
	if _, ok := reg.Lookup("extra"); ok {
		t.Error("registries share their types")
	}
}
