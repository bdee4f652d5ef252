// Package relay is the webhook relay: ingest (verify, limit, dedupe, route),
// the durable queue on NATS JetStream, per-sink delivery with retries and
// dead letters, the admin API and metrics. It does not handle signals: the
// caller (cmd/relay) decides when to Reload and Stop.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relay-dev/relay/sinks"
	"golang.org/x/net/netutil"
)

// Options are the parts of a Server that do not come from the config file.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registry builds sinks by type. Required.
	Registry *sinks.Registry
	// ConfigPath is re-read by Reload; Environ is the environment used to
	// expand it (nil: os.Environ).
	ConfigPath string
	Environ    []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is a running relay.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics

	cfg    atomic.Pointer[Config]
	store  *jsStore
	engine *engine
	bg     context.CancelFunc
	bgWG   sync.WaitGroup // background store tasks, ended by bg
	ingest *ingestHandler
	timers *timers     // expectation timers
	load   *ingestLoad // shared by ingest and the delivery workers
	// stopLoad ends load.run; loadDone is closed when it has.
	stopLoad context.CancelFunc
	loadDone chan struct{}

	ingestSrv, adminSrv   *http.Server
	ingestCert, adminCert certSource // re-read on reload
	ingestLn, adminLn     net.Listener
	serveErr              chan error

	// shared is the cluster's shared config (cluster mode only); its
	// watcher runs until stopWatch, then closes watchDone.
	shared    *sharedConfig
	stopWatch context.CancelFunc
	watchDone chan struct{}

	reloadMu sync.Mutex
	stopOnce sync.Once
	stopErr  error

	// reloadFailed is why the latest reload failed (nil after a success),
	// for the console.
	reloadFailed atomic.Pointer[reloadFailure]
}

// New prepares a server for cfg. Nothing is opened until Start.
func New(cfg *Config, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: NewMetrics(), serveErr: make(chan error, 2)}
	s.cfg.Store(cfg)
	s.load = newIngestLoad(cfg.Server.IngestPriority)
	s.metrics.watchIngest(s.load)
	return s
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Start opens the store, starts the delivery workers and both listeners. It
// returns once the relay accepts requests, or with the first error (after
// undoing what it did).
func (s *Server) Start(ctx context.Context) (err error) {
	cfg := s.cfg.Load()
	defer func() {
		if err != nil {
			_ = s.Stop(context.Background())
		}
	}()
	if err := Refusals(cfg); err != nil {
		return err
	}
	useCerts, err := s.readCerts(cfg.Server)
	if err != nil {
		return err
	}
	useCerts()
	s.store, err = openJetStream(ctx, cfg.Storage, cfg.Server.MaxBodyBytes, s.log)
	if err != nil {
		return err
	}
	if cfg.Storage.URL != "" {
		if cfg, err = s.adoptSharedConfig(ctx, cfg); err != nil {
			return err
		}
		if err := Refusals(cfg); err != nil {
			return err
		}
		s.cfg.Store(cfg)
	}
	built, err := buildSinks(cfg, s.sinkRegistry())
	if err != nil {
		return err
	}
	bgCtx, bg := context.WithCancel(context.Background())
	s.bg = bg
	s.store.expireSeen(bgCtx, &s.bgWG)
	s.store.startGuard(bgCtx, &s.bgWG, s.log, s.metrics, s.opts.Now, func(err error) {
		select {
		case s.serveErr <- err:
		default:
		}
	})
	s.engine = newEngine(s.store, s.log, s.metrics, s.opts.Now, cfg.Storage.AckWait, s.load)
	if err := s.engine.apply(ctx, cfg, built); err != nil {
		return err
	}
	if limit := s.store.maxBody(); limit < cfg.Server.MaxBodyBytes {
		s.log.Warn("the NATS server's max_payload is smaller than server.max_body_bytes allows: larger bodies get 413",
			"max_body_bytes", cfg.Server.MaxBodyBytes, "limit", limit)
	}
	routes, err := newIngestRoutes(cfg, s.store.maxBody())
	if err != nil {
		return err
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	s.stopLoad, s.loadDone = stopLoad, make(chan struct{})
	go func() {
		defer close(s.loadDone)
		s.load.run(loadCtx)
	}()
	s.ingest = &ingestHandler{store: s.store, metrics: s.metrics, log: s.log, now: s.opts.Now, load: s.load}
	s.ingest.routes.Store(routes)
	if err := s.startTimers(ctx, cfg); err != nil {
		return err
	}
	if err := s.startObjects(ctx, cfg); err != nil {
		return err
	}

	if s.adminLn, err = s.listen(cfg.Server.AdminListen, cfg.Server.AdminTLS, &s.adminCert); err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	if s.ingestLn, err = s.listen(cfg.Server.Listen, cfg.Server.TLS, &s.ingestCert); err != nil {
		return fmt.Errorf("ingest listener: %w", err)
	}
	s.ingestLn = netutil.LimitListener(s.ingestLn, cfg.Server.MaxConnections)
	s.ingestSrv = s.httpServer(s.ingest, cfg.Server, ingestTimeouts)
	s.adminSrv = s.httpServer(guardAdmin(isLoopbackListen(cfg.Server.AdminListen), s.adminHandler()), cfg.Server, adminTimeouts)
	s.metrics.initLabels(cfg)
	go s.serve(s.ingestSrv, s.ingestLn)
	go s.serve(s.adminSrv, s.adminLn)
	s.metrics.ConfigReloadOK.Set(1)
	s.metrics.ConfigReloadTime.SetToCurrentTime()
	if s.shared != nil {
		watchCtx, stopWatch := context.WithCancel(context.Background())
		w, err := s.watchShared(watchCtx)
		if err != nil {
			stopWatch()
			return fmt.Errorf("shared config: %w", err)
		}
		s.stopWatch, s.watchDone = stopWatch, make(chan struct{})
		go func() {
			defer close(s.watchDone)
			s.watchSharedConfig(watchCtx, w)
		}()
	}
	s.log.Info("relay started", "ingest", s.ingestLn.Addr().String(), "admin", s.adminLn.Addr().String(),
		"storage", storageDescription(cfg.Storage), "sources", len(cfg.Sources), "sinks", len(cfg.Sinks), "rules", len(cfg.Rules))
	return nil
}

// listenerTimeouts bound how long a client may hold a connection of a
// listener: to send its header, its whole request, to read the answer, and
// between requests.
type listenerTimeouts struct {
	header, read, write, idle time.Duration
}

var (
	// Svix gives up on a delivery after 15 s.
	ingestTimeouts = listenerTimeouts{header: 10 * time.Second, read: 30 * time.Second, write: 30 * time.Second, idle: 2 * time.Minute}
	// The write timeout also bounds a CPU profile or trace (pprof refuses
	// a longer one).
	adminTimeouts = listenerTimeouts{header: 10 * time.Second, read: 30 * time.Second, write: 2 * time.Minute, idle: 2 * time.Minute}
)

func (s *Server) httpServer(h http.Handler, sc ServerConfig, t listenerTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.header,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// listen opens a listener on addr, serving TLS with cs's certificate when
// tc is set.
func (s *Server) listen(addr string, tc TLSConfig, cs *certSource) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || !tc.Enabled() {
		return ln, err
	}
	return tls.NewListener(ln, cs.tlsConfig()), nil
}

// readCerts reads the certificates of the listeners that serve TLS. It
// returns a function that puts them in use: handshakes from then on use the
// new ones, connections already open keep theirs. A listener started
// without TLS stays without it until the next start.
func (s *Server) readCerts(sc ServerConfig) (use func(), err error) {
	var ingest, admin *tls.Certificate
	var errs []error
	if sc.TLS.Enabled() {
		ingest, err = readCert("server.tls", sc.TLS)
		errs = append(errs, err)
	}
	if sc.AdminTLS.Enabled() {
		admin, err = readCert("server.admin_tls", sc.AdminTLS)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func() {
		if ingest != nil {
			s.ingestCert.cert.Store(ingest)
		}
		if admin != nil {
			s.adminCert.cert.Store(admin)
		}
	}, nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.serveErr <- err
	}
}

// Err reports a listener that failed while serving, or an embedded store
// that stopped (the disk filled up): the relay cannot go on either way.
func (s *Server) Err() <-chan error { return s.serveErr }

// IngestAddr is the ingest listener's address (useful with port 0).
func (s *Server) IngestAddr() string { return s.ingestLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Config returns the configuration in force.
func (s *Server) Config() *Config { return s.cfg.Load() }

// Reload re-reads the config file. A config that fails validation changes
// nothing and is reported (and counted in relay_config_last_reload_successful);
// a valid one replaces sources, rules and sinks at once, without dropping
// queued or in-flight deliveries. In cluster mode a valid file becomes the
// cluster's shared config, which every relay applies; Reload returns once
// this relay has (see sharedconfig.go).
func (s *Server) Reload(ctx context.Context) (err error) {
	defer func() { s.noteReload(err) }()
	if s.shared != nil {
		err := s.reloadShared(ctx)
		if err != nil {
			s.metrics.ConfigReloadOK.Set(0)
			for _, e := range Problems(err) {
				s.log.Error("config reload failed; keeping the running config", "err", e)
			}
		}
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := LoadConfig(s.opts.ConfigPath, LoadOptions{Environ: s.opts.Environ, Registry: s.opts.Registry})
	if err == nil {
		err = s.apply(ctx, cfg)
	}
	if err != nil {
		s.metrics.ConfigReloadOK.Set(0)
		for _, e := range Problems(err) {
			s.log.Error("config reload failed; keeping the running config", "err", e)
		}
		return err
	}
	s.metrics.ConfigReloadOK.Set(1)
	s.metrics.ConfigReloadTime.SetToCurrentTime()
	s.log.Info("config reloaded", "sources", len(cfg.Sources), "sinks", len(cfg.Sinks), "rules", len(cfg.Rules))
	return nil
}

// apply swaps in a validated config.
func (s *Server) apply(ctx context.Context, cfg *Config) error {
	old := s.cfg.Load()
	if err := Refusals(cfg); err != nil {
		return err
	}
	useCerts, err := s.readCerts(cfg.Server)
	if err != nil {
		return err
	}
	if cfg.Storage != old.Storage {
		s.log.Warn("storage settings changed; they take effect at the next start")
	}
	if cfg.Server != old.Server {
		s.log.Warn("server settings changed; listeners and limits take effect at the next start")
		cfg.Server = old.Server
	}
	routes, err := newIngestRoutes(cfg, s.store.maxBody())
	if err != nil {
		return err
	}
	built, err := buildSinks(cfg, s.sinkRegistry())
	if err != nil {
		return err
	}
	if err := s.engine.apply(ctx, cfg, built); err != nil {
		return err
	}
	s.ingest.routes.Store(routes)
	s.cfg.Store(cfg)
	useCerts()
	s.metrics.initLabels(cfg)
	return nil
}

// Stop shuts the relay down: ingest answers 503 at once, requests in flight
// finish, deliveries in flight get shutdown_grace (or until ctx is done),
// and what is left stays queued for the next start. Safe to call more than
// once; later calls return the first result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	cfg := s.cfg.Load()
	var errs []error
	if s.ingest != nil {
		s.ingest.draining.Store(true)
	}
	if s.ingestSrv != nil {
		if err := s.ingestSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("ingest shutdown: %w", err))
		}
	} else if s.ingestLn != nil {
		_ = s.ingestLn.Close()
	}
	if s.stopWatch != nil {
		s.stopWatch()
		<-s.watchDone
	}
	if s.stopLoad != nil {
		// No more webhooks: deliveries need not give way.
		s.stopLoad()
		<-s.loadDone
	}
	s.timers.stop(ctx)
	if s.ingest != nil {
		s.ingest.objects.stop()
	}
	if s.engine != nil {
		gctx, cancel := context.WithTimeout(ctx, cfg.Server.ShutdownGrace)
		errs = append(errs, s.engine.stop(gctx))
		cancel()
	}
	if s.adminSrv != nil {
		if err := s.adminSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin shutdown: %w", err))
		}
	} else if s.adminLn != nil {
		_ = s.adminLn.Close()
	}
	if s.bg != nil {
		s.bg()
		s.bgWG.Wait()
	}
	if s.store != nil {
		s.store.close()
	}
	s.log.Info("relay stopped")
	return errors.Join(errs...)
}

// buildSinks constructs every configured sink; on error it closes those
// already built.
func buildSinks(cfg *Config, reg *sinks.Registry) (map[string]sinks.Sink, error) {
	built := make(map[string]sinks.Sink, len(cfg.Sinks))
	reg = withCompile(reg)
	for _, name := range slices.Sorted(maps.Keys(cfg.Sinks)) {
		sc := cfg.Sinks[name]
		t, ok := reg.Lookup(sc.Type)
		if !ok {
			closeSinks(built)
			return nil, fmt.Errorf("sinks.%s.type: unknown sink type %q", name, sc.Type)
		}
		sk, err := t.Build(name, sc.Options)
		if err != nil {
			closeSinks(built)
			return nil, fmt.Errorf("sinks.%s: %w", name, err)
		}
		built[name] = sk
	}
	return built, nil
}

func closeSinks(built map[string]sinks.Sink) {
	for _, sk := range built {
		_ = sk.Close(context.Background())
	}
}

func storageDescription(c StorageConfig) string {
	if c.URL != "" {
		return "nats cluster"
	}
	return "embedded nats at " + c.Dir
}
