// Command relay receives Svix-signed webhooks (Recall.ai events), stores
// them durably, routes them with expr rules and delivers them to sinks.
// See README.md and docs/ for the commands and the configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relay-dev/relay/sinks"
	"github.com/relay-dev/relay/sinks/builtin"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.commit=abc".
var (
	version = ""
	commit  = ""
)

// registry has every built-in sink type, whose sinks send the binary's
// version as their User-Agent and log to log (nil: nowhere).
func registry(log *slog.Logger) *sinks.Registry {
	v, _ := buildVersion()
	return builtin.Registry(sinks.Env{UserAgent: "relay/" + v, Logger: log})
}

// exitError carries a process exit code: 1 the command's work failed, 2 usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// failed reports that the command ran and its work failed (exit 1); the
// command has already printed why.
var errFailed = &exitError{code: 1, err: errors.New("failed")}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		quietSysmon()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := rootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee != errFailed {
			fmt.Fprintln(stderr, "relay:", ee.err)
		}
		if ee.code == 2 {
			fmt.Fprintln(stderr, "Run 'relay --help' for usage.")
		}
		return ee.code
	}
	// Cobra's own errors (unknown command, bad flag, wrong arguments).
	fmt.Fprintln(stderr, "relay:", err)
	fmt.Fprintln(stderr, "Run 'relay --help' for usage.")
	return 2
}

func rootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "relay",
		Short:         "A durable webhook relay for Recall.ai events",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v", err) })
	root.AddCommand(
		serveCommand(),
		checkCommand(),
		testCommand(),
		sendCommand(),
		dlqCommand(),
		eventsCommand(),
		backtestCommand(),
		versionCommand(),
	)
	return root
}

// defaultConfigPath is relay.yaml in the working directory, else configs/relay.yaml.
func defaultConfigPath() string {
	if _, err := os.Stat("relay.yaml"); err == nil {
		return "relay.yaml"
	}
	return "configs/relay.yaml"
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c := buildVersion()
			fmt.Fprintf(cmd.OutOrStdout(), "relay %s (commit %s, %s %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// buildVersion returns the version and commit, from ldflags or the build info.
func buildVersion() (string, string) {
	v, c := version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected arguments: %s", strings.Join(args, " "))
	}
	return nil
}

// newLogger builds the process logger from --log-format and --log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level: want debug, info, warn or error")
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format: want json or text")
}
