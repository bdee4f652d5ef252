package sinks_test

import (
	"context"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

type nopSink struct{}

func (nopSink) Send(context.Context, sinks.Delivery) error { return nil }
func (nopSink) Close(context.Context) error                { return nil }

func TestBuildGivesTheRegistryEnv(t *testing.T) {
	var got sinks.Env
	typ := sinks.Type{New: func(_ string, _ map[string]any, env sinks.Env) (sinks.Sink, error) {
		got = env
		return nopSink{}, nil
	}}
	at := time.Date(2025, 3, 19, 17, 44, 6, 0, time.UTC)
	reg := sinks.NewRegistry(sinks.Env{UserAgent: "relay/1.2.3", Now: func() time.Time { return at }})
	reg.Register("nop", typ)
	lt, _ := reg.Lookup("nop")
	if _, err := lt.Build("a", nil); err != nil {
		t.Fatal(err)
	}
	if got.UserAgent != "relay/1.2.3" || got.Now == nil || !got.Now().Equal(at) {
		t.Errorf("Build through NewRegistry gave %+v", got)
	}

	var zero sinks.Registry
	zero.Register("nop", typ)
	lt, _ = zero.Lookup("nop")
	if _, err := lt.Build("a", nil); err != nil {
		t.Fatal(err)
	}
	if got.UserAgent != "" || got.Now != nil {
		t.Errorf("Build through the zero Registry gave %+v, want the zero Env", got)
	}
}

func TestEnvWithDefaults(t *testing.T) {
	e := sinks.Env{}.WithDefaults()
	if e.UserAgent != "relay" || e.Now == nil || time.Since(e.Now()) > time.Minute {
		t.Errorf("zero Env with defaults = %+v", e)
	}
	at := time.Unix(1, 0)
	e = sinks.Env{UserAgent: "x/1", Now: func() time.Time { return at }}.WithDefaults()
	if e.UserAgent != "x/1" || !e.Now().Equal(at) {
		t.Errorf("set fields changed: %+v", e)
	}
}

func TestRegistryWithEnv(t *testing.T) {
	var got sinks.Env
	reg := sinks.NewRegistry(sinks.Env{UserAgent: "relay/1"})
	reg.Register("nop", sinks.Type{New: func(_ string, _ map[string]any, env sinks.Env) (sinks.Sink, error) {
		got = env
		return nopSink{}, nil
	}})
	counted := 0
	with := reg.WithEnv(func(e sinks.Env) sinks.Env {
		e.Count = func(string, ...string) { counted++ }
		return e
	})
	lt, _ := with.Lookup("nop")
	if _, err := lt.Build("a", nil); err != nil {
		t.Fatal(err)
	}
	if got.UserAgent != "relay/1" || got.Count == nil {
		t.Fatalf("WithEnv gave %+v", got)
	}
	got.Count("x")
	if counted != 1 {
		t.Error("the edited Env's Count was not the one given")
	}
	lt, _ = reg.Lookup("nop")
	if _, err := lt.Build("a", nil); err != nil {
		t.Fatal(err)
	}
	if got.Count != nil {
		t.Error("WithEnv changed the original registry's Env")
	}
	if e := (sinks.Env{}).WithDefaults(); e.Count == nil {
		t.Error("WithDefaults leaves Count nil")
	}
}
