package relay

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks"
)

// sinkFunc adapts a function to sinks.Sink.
type sinkFunc func(ctx context.Context, d sinks.Delivery) error

func (f sinkFunc) Send(ctx context.Context, d sinks.Delivery) error { return f(ctx, d) }
func (f sinkFunc) Close(context.Context) error                      { return nil }

// testRegistry knows a "fake" sink type with one option, "fail", and every
// sink built by it sends through the function registered under the sink's
// name in funcs (nil: succeed).
type testRegistry struct {
	mu    sync.Mutex
	funcs map[string]sinkFunc
}

func (tr *testRegistry) set(name string, f sinkFunc) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.funcs == nil {
		tr.funcs = make(map[string]sinkFunc)
	}
	tr.funcs[name] = f
}

func (tr *testRegistry) registry() *sinks.Registry {
	var reg sinks.Registry
	reg.Register("fake", sinks.Type{New: func(name string, options map[string]any, _ sinks.Env) (sinks.Sink, error) {
		var o struct {
			Label string `yaml:"label"`
		}
		if err := sinks.DecodeOptions(options, &o); err != nil {
			return nil, err
		}
		return sinkFunc(func(ctx context.Context, d sinks.Delivery) error {
			tr.mu.Lock()
			f := tr.funcs[name]
			tr.mu.Unlock()
			if f == nil {
				return nil
			}
			return f(ctx, d)
		}), nil
	}})
	return &reg
}

// writeConfig writes a config file into a temp dir and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func errorLines(err error) []string {
	var out []string
	for _, e := range Problems(err) {
		out = append(out, e.Error())
	}
	return out
}

var errBoom = errors.New("boom")

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestLogger logs through t.Log, at debug level with -v.
func newTestLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return discardLogger()
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func strconvU(n uint64) string { return strconv.FormatUint(n, 10) }

// eventually and poll are relaytest's, named as the tests call them.
var (
	eventually = relaytest.Eventually
	poll       = relaytest.Poll
)

// openTestStore opens an embedded store in a fresh directory with the
// settings the store-level tests share (sync every second, a one-hour
// dedupe window, 1 MiB messages); the caller closes it.
func openTestStore(ctx context.Context, t *testing.T) *jsStore {
	t.Helper()
	s, err := openJetStream(ctx, StorageConfig{Dir: t.TempDir(), SyncInterval: time.Second, DedupeWindow: time.Hour}, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
