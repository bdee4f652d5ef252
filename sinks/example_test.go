package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/relay-dev/relay/sinks"
)

// consoleSink prints one line per event. It is the smallest useful sink:
// options decoded and validated in its constructor, one attempt per Send,
// and every failure classified for the relay, which owns the retries.
type consoleSink struct {
	w        io.Writer
	prefix   string
	maxBytes int
	quota    int

	mu   sync.Mutex
	sent int
}

// Compile-time check that consoleSink is a sinks.Sink.
var _ sinks.Sink = (*consoleSink)(nil)

// newConsoleSink is a sinks.Factory.
func newConsoleSink(name string, options map[string]any, _ sinks.Env) (sinks.Sink, error) {
	o := struct {
		Prefix   string `yaml:"prefix"`
		MaxBytes int    `yaml:"max_bytes"`
		Quota    int    `yaml:"quota"`
	}{Prefix: name, MaxBytes: 1 << 10, Quota: 2}
	var errs []error
	if err := sinks.DecodeOptions(options, &o); err != nil {
		errs = append(errs, err)
	}
	if o.MaxBytes <= 0 {
		errs = append(errs, errors.New("max_bytes: must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &consoleSink{w: os.Stdout, prefix: o.Prefix, maxBytes: o.MaxBytes, quota: o.Quota}, nil
}

func (s *consoleSink) Send(ctx context.Context, d sinks.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err // retryable: the relay may be shutting down
	}
	if len(d.Body) > s.maxBytes {
		// The same body would be too large on every attempt.
		return sinks.Permanent(fmt.Errorf("body of %d bytes exceeds max_bytes", len(d.Body)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent >= s.quota {
		// The destination said when to come back: the relay waits at
		// least that long. Send itself never sleeps.
		return sinks.RetryAfter(fmt.Errorf("quota of %d messages used", s.quota), time.Minute)
	}
	s.sent++
	_, err := fmt.Fprintf(s.w, "%s %s %s (rules: %s)\n", s.prefix, d.MsgID, d.Event, strings.Join(d.Rules, ", "))
	return err // a failed write is retryable
}

func (s *consoleSink) Close(context.Context) error { return nil }

// Example writes a minimal sink, registers it and shows how the relay reads
// its errors.
func Example() {
	var reg sinks.Registry
	reg.Register("console", sinks.Type{New: newConsoleSink, Concurrency: 1})

	typ, _ := reg.Lookup("console")
	if _, err := typ.Build("ops", map[string]any{"max_bytes": 0, "colour": "red"}); err != nil {
		fmt.Printf("config error:\n%v\n", err)
	}

	sink, err := typ.Build("ops", map[string]any{"prefix": "[ops]", "max_bytes": "64"})
	if err != nil {
		panic(err)
	}
	defer sink.Close(context.Background())

	deliveries := []sinks.Delivery{
		{MsgID: "msg_1", Event: "bot.fatal", Rules: []string{"fatal"}, Body: []byte(`{"event":"bot.fatal"}`)},
		{MsgID: "msg_2", Event: "recording.done", Rules: []string{"all"}, Body: []byte(`{"event":"recording.done","data":{"note":"` + strings.Repeat("x", 64) + `"}}`)},
		{MsgID: "msg_3", Event: "transcript.failed", Rules: []string{"captions", "all"}, Body: []byte(`{"event":"transcript.failed"}`)},
		{MsgID: "msg_4", Event: "bot.done", Rules: []string{"all"}, Body: []byte(`{"event":"bot.done"}`)},
	}
	for _, d := range deliveries {
		err := sink.Send(context.Background(), d)
		wait, hasWait := sinks.RetryAfterOf(err)
		switch {
		case err == nil:
		case sinks.IsPermanent(err):
			fmt.Printf("%s: dead letter: %v\n", d.MsgID, err)
		case hasWait:
			fmt.Printf("%s: retry in at least %v\n", d.MsgID, wait)
		default:
			fmt.Printf("%s: retry with backoff: %v\n", d.MsgID, err)
		}
	}
	fmt.Println("types:", reg.Names())

	// Output:
	// config error:
	// colour: unknown key
	// max_bytes: must be positive
	// [ops] msg_1 bot.fatal (rules: fatal)
	// msg_2: dead letter: body of 109 bytes exceeds max_bytes
	// [ops] msg_3 transcript.failed (rules: captions, all)
	// msg_4: retry in at least 1m0s
	// types: [console]
}
