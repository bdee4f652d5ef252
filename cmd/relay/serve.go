package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/knadh/koanf/providers/file"
	"github.com/spf13/cobra"

	"github.com/relay-dev/relay/relay"
)

func serveCommand() *cobra.Command {
	var (
		configPath string
		watch      bool
		logFormat  string
		logLevel   string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the relay",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Log lines go out through one writer goroutine, many per write
			// under load (see groupWriter).
			logOut := newGroupWriter(cmd.ErrOrStderr())
			defer logOut.Close()
			log, err := newLogger(logOut, logFormat, logLevel)
			if err != nil {
				return err
			}
			if configPath == "" {
				configPath = defaultConfigPath()
			}
			reg := registry(log)
			cfg, err := relay.LoadConfig(configPath, relay.LoadOptions{Registry: reg})
			if err != nil {
				printProblems(cmd.ErrOrStderr(), err)
				return errFailed
			}
			gcPercent := setDefaultGC(os.Getenv)
			log.Debug("garbage collector", "gogc", gcPercent)
			srv := relay.New(cfg, relay.Options{Logger: log, Registry: reg, ConfigPath: configPath})

			// Only main handles signals: SIGTERM/SIGINT stop, SIGHUP reloads.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)

			startCtx, cancel := context.WithTimeout(ctx, time.Minute)
			err = srv.Start(startCtx)
			cancel()
			if err != nil {
				log.Error("cannot start", "err", err)
				return errFailed
			}
			// After the start: the embedded server sizes some of its
			// goroutine pools by GOMAXPROCS as it starts.
			procsCtx, stopProcs := context.WithCancel(context.Background())
			defer stopProcs()
			go adaptProcs(procsCtx, os.Getenv)
			if watch {
				stopWatch, err := watchConfig(configPath, func() {
					log.Info("config file changed; reloading", "path", configPath)
					_ = srv.Reload(context.Background())
				}, func(err error) {
					log.Error("config watch stopped; SIGHUP and POST /-/reload still reload", "path", configPath, "err", err)
				})
				if err != nil {
					log.Error("cannot watch the config file", "path", configPath, "err", err)
				} else {
					log.Info("watching the config file", "path", configPath)
					defer stopWatch()
				}
			}
			for {
				select {
				case <-hup:
					log.Info("SIGHUP: reloading config", "path", configPath)
					_ = srv.Reload(context.Background())
					continue
				case err := <-srv.Err():
					log.Error("serving failed; shutting down", "err", err)
					_ = srv.Stop(context.Background())
					return errFailed
				case <-ctx.Done():
				}
				break
			}
			stop()
			log.Info("shutting down", "grace", cfg.Server.ShutdownGrace)
			stopCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace+10*time.Second)
			defer cancel()
			if err := srv.Stop(stopCtx); err != nil {
				log.Error("shutdown", "err", err)
				return errFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "config file (default: relay.yaml, else configs/relay.yaml)")
	cmd.Flags().BoolVar(&watch, "watch", false, "reload when the config file changes")
	cmd.Flags().StringVar(&logFormat, "log-format", "json", "log format: json or text")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// watchDebounce is how long the config file must stay unchanged after a
// change before it is reloaded: editors and os.WriteFile truncate, then
// write, and koanf's watcher drops a repeat event within 5ms, so reloading on
// the first event can read a half-written file.
const watchDebounce = 250 * time.Millisecond

// watchConfig calls reload once the file at path has changed and then stayed
// unchanged for watchDebounce, and failed when the watch ends with an error
// (the file was removed, say). The returned function stops watching.
func watchConfig(path string, reload func(), failed func(error)) (stop func(), err error) {
	var mu sync.Mutex
	var timer *time.Timer
	f := file.Provider(path)
	err = f.Watch(func(_ any, err error) {
		if err != nil {
			failed(err) // the running config stays
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if timer == nil {
			timer = time.AfterFunc(watchDebounce, reload)
		} else {
			timer.Reset(watchDebounce)
		}
	})
	if err != nil {
		return nil, err
	}
	return func() {
		_ = f.Unwatch()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
	}, nil
}

func checkCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the config: every rule compiled, every sink built",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				configPath = defaultConfigPath()
			}
			cfg, err := relay.LoadConfig(configPath, relay.LoadOptions{Registry: registry(nil)})
			if err != nil {
				printProblems(cmd.OutOrStdout(), err)
				return errFailed
			}
			counts := fmt.Sprintf("%d sources, %d sinks, %d rules", len(cfg.Sources), len(cfg.Sinks), len(cfg.Rules))
			if n := len(cfg.Expectations); n > 0 {
				counts += fmt.Sprintf(", %d expectations", n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", configPath, counts)
			for _, w := range relay.ExpectationWarnings(cfg) {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			// Valid, but relay serve would refuse to expose it like this:
			// say so now, not at deploy time.
			for _, e := range relay.Problems(relay.Refusals(cfg)) {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: relay serve refuses this config:", e)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "config file (default: relay.yaml, else configs/relay.yaml)")
	return cmd
}
