// Command relay-load is a load generator for the relay webhook receiver.
//
// In load mode it sends Svix-signed webhook requests to --url, either in a
// closed loop (--concurrency workers sending back-to-back) or in an open loop
// (--rate requests per second on a fixed schedule), and reports status code
// counts, throughput and latency percentiles.
//
// In floor mode (--floor ADDR) it runs a minimal verifying webhook receiver
// that serves as a performance floor to compare the real relay against.
//
// In receive mode (--receive ADDR) it stands in for a sink endpoint: it
// answers every POST with 200, records the latency since each body's
// "received_at" and reports it when it stops (see receive.go). For fault
// runs it can play a destination that is down until a file exists
// (--down-until) and count Idempotency-Key values and repeats
// (--count-keys).
//
// In check mode (--check FILE) it reads an archive of JSON lines carrying a
// "msg_id" and the --ids files that --ids-out wrote, and reports the lines
// and how many acknowledged ids are there exactly once, missing or repeated
// (see check.go).
//
// Exit codes: 0 when the run completed (non-2xx statuses are reported, not
// fatal, unless --fail-on-error is given), 1 on a fatal error or when
// --fail-on-error is set and any request was not 2xx, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

const (
	exitOK    = 0
	exitFatal = 1
	exitUsage = 2
)

// config holds the parsed command line.
type config struct {
	url          string
	secret       string
	events       []string
	concurrency  int
	rate         float64
	requests     int64
	duration     time.Duration
	timeout      time.Duration
	jsonOut      bool
	idsOut       string
	failOnError  bool
	floorAddr    string
	floorFsync   string
	floorMaxBody int64
	receiveAddr  string
	downUntil    string
	countKeys    bool
	checkFile    string
	checkIDs     []string
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

// String implements flag.Value.
func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

// Set implements flag.Value.
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// usageError is a command line error; it exits with the usage status.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseFlags parses args into a config. It returns flag.ErrHelp for -h, a
// *usageError for invalid values, or the flag package's parse error.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var events, checkIDs stringsFlag
	fs := flag.NewFlagSet("relay-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.url, "url", "", "target URL (required in load mode)")
	fs.StringVar(&cfg.secret, "secret", "", "svix signing secret, whsec_... (required)")
	fs.Var(&events, "events", "event JSON file or directory of *.json files (repeatable; default: built-in event)")
	fs.IntVar(&cfg.concurrency, "concurrency", 16, "closed loop: number of workers; open loop: max requests in flight; also the connection pool size")
	fs.Float64Var(&cfg.rate, "rate", 0, "open loop: requests per second on a fixed schedule (0 = closed loop)")
	fs.Int64Var(&cfg.requests, "requests", 0, "stop after this many requests (0 = no limit; --requests and/or --duration required)")
	fs.DurationVar(&cfg.duration, "duration", 0, "stop issuing requests after this long (0 = no limit)")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the report as JSON")
	fs.StringVar(&cfg.idsOut, "ids-out", "", "write the svix ids that got a 2xx to this file, one per line")
	fs.BoolVar(&cfg.failOnError, "fail-on-error", false, "exit 1 when any request was not 2xx")
	fs.StringVar(&cfg.floorAddr, "floor", "", "run the floor server on this address (e.g. 127.0.0.1:0) instead of generating load")
	fs.StringVar(&cfg.floorFsync, "floor-fsync", "", "floor server: append each accepted body to this file with one fsync per request")
	fs.Int64Var(&cfg.floorMaxBody, "floor-max-body", 1<<20, "floor server: maximum request body in bytes")
	fs.StringVar(&cfg.receiveAddr, "receive", "", "run a sink endpoint on this address (e.g. 127.0.0.1:0) recording now - received_at of each POSTed body, until --requests POSTs, --duration or a signal")
	fs.StringVar(&cfg.downUntil, "down-until", "", "receive mode: answer every POST 503 until this file exists")
	fs.BoolVar(&cfg.countKeys, "count-keys", false, "receive mode: count distinct Idempotency-Key values and repeats")
	fs.StringVar(&cfg.checkFile, "check", "", "check mode: count the lines of this archive (JSON lines with a msg_id) and how the --ids appear in it")
	fs.Var(&checkIDs, "ids", "check mode: a file of acknowledged ids, one per line, as --ids-out writes (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage:\n  relay-load --url URL --secret whsec_... [--events PATH]... (--requests N | --duration D) [--concurrency N] [--rate R] [--json] [--ids-out FILE] [--fail-on-error]\n  relay-load --floor ADDR --secret whsec_... [--floor-fsync FILE]\n  relay-load --receive ADDR [--requests N] [--duration D] [--down-until FILE] [--count-keys] [--json]\n  relay-load --check FILE [--ids FILE]...\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.events = events
	cfg.checkIDs = checkIDs
	if fs.NArg() > 0 {
		return cfg, usageErrorf("unexpected arguments %q", fs.Args())
	}
	if len(cfg.checkIDs) > 0 && cfg.checkFile == "" {
		return cfg, usageErrorf("--ids requires --check")
	}
	if cfg.checkFile != "" {
		if cfg.receiveAddr != "" || cfg.floorAddr != "" || cfg.url != "" {
			return cfg, usageErrorf("--check excludes --receive, --floor and --url")
		}
		return cfg, nil
	}
	if (cfg.downUntil != "" || cfg.countKeys) && cfg.receiveAddr == "" {
		return cfg, usageErrorf("--down-until and --count-keys require --receive")
	}
	if cfg.receiveAddr != "" {
		if cfg.floorAddr != "" || cfg.url != "" {
			return cfg, usageErrorf("--receive excludes --floor and --url")
		}
		if cfg.requests < 0 || cfg.duration < 0 {
			return cfg, usageErrorf("--requests and --duration must not be negative")
		}
		return cfg, nil
	}
	if cfg.secret == "" {
		return cfg, usageErrorf("--secret is required")
	}
	if _, err := svix.NewWebhook(cfg.secret); err != nil {
		return cfg, usageErrorf("invalid --secret: %v", err)
	}
	if cfg.floorAddr != "" {
		if cfg.floorMaxBody <= 0 {
			return cfg, usageErrorf("--floor-max-body must be positive")
		}
		return cfg, nil
	}
	if cfg.floorFsync != "" {
		return cfg, usageErrorf("--floor-fsync requires --floor")
	}
	if cfg.url == "" {
		return cfg, usageErrorf("--url is required")
	}
	if !strings.HasPrefix(cfg.url, "http://") && !strings.HasPrefix(cfg.url, "https://") {
		return cfg, usageErrorf("--url must start with http:// or https://")
	}
	if cfg.concurrency < 1 {
		return cfg, usageErrorf("--concurrency must be at least 1")
	}
	if cfg.rate < 0 {
		return cfg, usageErrorf("--rate must not be negative")
	}
	if cfg.requests < 0 || cfg.duration < 0 {
		return cfg, usageErrorf("--requests and --duration must not be negative")
	}
	if cfg.requests == 0 && cfg.duration == 0 {
		return cfg, usageErrorf("one of --requests or --duration is required")
	}
	if cfg.timeout <= 0 {
		return cfg, usageErrorf("--timeout must be positive")
	}
	return cfg, nil
}

// run executes the command. ctx cancellation stops issuing new requests (or
// shuts the floor server down) gracefully; abort cancellation additionally
// aborts requests that are in flight. It returns the process exit code.
func run(ctx, abort context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		var uerr *usageError
		if errors.As(err, &uerr) {
			fmt.Fprintf(stderr, "relay-load: %v (see -h)\n", err)
		}
		return exitUsage
	}
	if cfg.checkFile != "" {
		if err := runCheck(cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "relay-load: %v\n", err)
			return exitFatal
		}
		return exitOK
	}
	if cfg.receiveAddr != "" {
		if err := runReceive(ctx, abort, cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "relay-load: %v\n", err)
			return exitFatal
		}
		return exitOK
	}
	if cfg.floorAddr != "" {
		if err := runFloor(ctx, abort, cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "relay-load: %v\n", err)
			return exitFatal
		}
		return exitOK
	}
	res, err := runLoad(ctx, abort, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "relay-load: %v\n", err)
		return exitFatal
	}
	rep := newReport(cfg, res)
	if cfg.jsonOut {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay-load: write report: %v\n", err)
		return exitFatal
	}
	if res.idsErr != nil {
		fmt.Fprintf(stderr, "relay-load: %v\n", res.idsErr)
		return exitFatal
	}
	if cfg.failOnError && rep.OK != rep.Sent {
		fmt.Fprintf(stderr, "relay-load: %d of %d requests were not 2xx\n", rep.Sent-rep.OK, rep.Sent)
		return exitFatal
	}
	return exitOK
}

// signalContexts returns a context cancelled by the first SIGINT/SIGTERM
// (graceful stop) and one cancelled by the second (abort in-flight work).
func signalContexts() (stop, abort context.Context) {
	stop, stopCancel := context.WithCancel(context.Background())
	abort, abortCancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		stopCancel()
		<-ch
		abortCancel()
	}()
	return stop, abort
}

func main() {
	stop, abort := signalContexts()
	os.Exit(run(stop, abort, os.Args[1:], os.Stdout, os.Stderr))
}
