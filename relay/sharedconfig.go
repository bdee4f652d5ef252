package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// In cluster mode (storage.url), the relays of one NATS cluster share one
// config: its file, as written (with its ${VAR}s unexpanded), is kept in
// the KV bucket RELAY_CONFIG under the key "relay.yaml".
//
//   - At start, a relay whose cluster has a shared config follows it; its
//     own file's sources, sinks, retry and rules are used only if the
//     cluster has none yet (then they become the shared config). A relay
//     whose file differs says so in its log and follows the cluster.
//   - A reload (SIGHUP, POST /-/reload, --watch) validates the relay's own
//     file and, if valid, stores it as the shared config; every relay
//     (this one included) applies it when it sees the change.
//   - Each relay keeps its own server and storage blocks (listeners, TLS,
//     paths, the cluster's URL) and expands ${VAR}s from its own
//     environment, so secrets never leave the machines that hold them.
//
// So relays route identically, and a relay never dead-letters the queue of
// a sink it does not know because its own file is older.
const (
	configBucket = "RELAY_CONFIG"
	configKey    = "relay.yaml"
)

// sharedConfig is the cluster's shared config as this relay applied it.
type sharedConfig struct {
	kv jetstream.KeyValue
	// applied is the revision in force here; 0 before the first.
	applied uint64
	// appliedErr is why the applied revision could not be put in force
	// here (the running config was kept), or nil.
	appliedErr error
	// appliedCh is signalled when applied changes.
	appliedCh chan struct{}
}

// openSharedConfig opens (or creates) the config bucket.
func (s *jsStore) openSharedConfig(ctx context.Context) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := s.retrySetup(ctx, "config bucket", func(ctx context.Context) (err error) {
		kv, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      configBucket,
			Description: "the config the relays of this cluster share (see docs/operations.md)",
			History:     10,
			Replicas:    s.cfg.Replicas,
			Storage:     jetstream.FileStorage,
		})
		return err
	})
	return kv, err
}

// adoptSharedConfig runs at start in cluster mode: it returns the config
// the relay must run, the cluster's if it has one (with local's server and
// storage), else local, which it stores as the cluster's.
func (s *Server) adoptSharedConfig(ctx context.Context, local *Config) (*Config, error) {
	data, err := os.ReadFile(s.opts.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", s.opts.ConfigPath, err)
	}
	kv, err := s.store.openSharedConfig(ctx)
	if err != nil {
		return nil, err
	}
	s.shared = &sharedConfig{kv: kv, appliedCh: make(chan struct{}, 1)}
	var entry jetstream.KeyValueEntry
	var created uint64 // the revision of this relay's file, stored as the cluster's
	err = s.store.retrySetup(ctx, "read the shared config", func(ctx context.Context) (err error) {
		entry, err = kv.Get(ctx, configKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// None yet: this relay's file becomes the cluster's, unless
			// another relay starting now stored its own first (read it;
			// a replica that has not caught up yet answers "not found",
			// and the request is retried).
			if created, err = kv.Create(ctx, configKey, data); errors.Is(err, jetstream.ErrKeyExists) {
				entry, err = kv.Get(ctx, configKey)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("shared config: %w", err)
	}
	if entry == nil {
		s.log.Info("no shared config in the cluster yet: this relay's file is now the cluster's")
		s.shared.applied = created
		return local, nil
	}
	cfg, err := s.sharedToLocal(entry, local)
	if err != nil {
		return nil, fmt.Errorf("the cluster's shared config (revision %d) does not load here: %w", entry.Revision(), err)
	}
	if !bytes.Equal(entry.Value(), data) {
		s.log.Warn("this relay's config file differs from the cluster's shared config; following the cluster's (reload a relay to share a new one)",
			"file", s.opts.ConfigPath, "file_sha256", digest(data), "shared_sha256", digest(entry.Value()), "revision", entry.Revision())
	}
	s.shared.applied = entry.Revision()
	return cfg, nil
}

// sharedToLocal loads a shared config with this relay's environment and
// keeps its own server and storage blocks.
func (s *Server) sharedToLocal(entry jetstream.KeyValueEntry, local *Config) (*Config, error) {
	cfg, err := loadConfigBytes(fmt.Sprintf("%s (revision %d)", configKey, entry.Revision()), entry.Value(),
		LoadOptions{Environ: s.opts.Environ, Registry: s.opts.Registry})
	if err != nil {
		return nil, err
	}
	cfg.Server, cfg.Storage = local.Server, local.Storage
	return cfg, nil
}

// watchShared starts watching the shared config; the watch sees every
// revision stored from now on, and the latest one at once (a revision
// stored between adoptSharedConfig and the watch is not missed).
func (s *Server) watchShared(ctx context.Context) (jetstream.KeyWatcher, error) {
	return s.shared.kv.Watch(ctx, configKey)
}

// watchSharedConfig applies each new revision of the shared config that w
// delivers until ctx is done.
func (s *Server) watchSharedConfig(ctx context.Context, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case entry, ok := <-w.Updates():
			if !ok {
				return
			}
			if entry == nil || entry.Operation() != jetstream.KeyValuePut {
				continue
			}
			s.applyShared(ctx, entry)
		}
	}
}

// applyShared applies one revision of the shared config.
func (s *Server) applyShared(ctx context.Context, entry jetstream.KeyValueEntry) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if entry.Revision() <= s.shared.applied {
		return
	}
	cfg, err := s.sharedToLocal(entry, s.cfg.Load())
	if err == nil {
		err = s.apply(ctx, cfg)
	}
	if err != nil {
		s.metrics.ConfigReloadOK.Set(0)
		for _, e := range Problems(err) {
			s.log.Error("shared config not applied; keeping the running config", "revision", entry.Revision(), "err", e)
		}
	} else {
		s.metrics.ConfigReloadOK.Set(1)
		s.metrics.ConfigReloadTime.SetToCurrentTime()
		s.log.Info("shared config applied", "revision", entry.Revision(), "sources", len(cfg.Sources), "sinks", len(cfg.Sinks), "rules", len(cfg.Rules))
	}
	s.shared.applied, s.shared.appliedErr = entry.Revision(), err
	select {
	case s.shared.appliedCh <- struct{}{}:
	default:
	}
}

// reloadShared is Reload in cluster mode: the relay's file, if valid, is
// stored as the cluster's shared config, which every relay then applies.
func (s *Server) reloadShared(ctx context.Context) error {
	data, err := os.ReadFile(s.opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("read config %s: %w", s.opts.ConfigPath, err)
	}
	cfg, err := loadConfigBytes(s.opts.ConfigPath, data, LoadOptions{Environ: s.opts.Environ, Registry: s.opts.Registry})
	if err == nil {
		err = Refusals(cfg)
	}
	if err != nil {
		return err
	}
	return s.pushSharedConfig(ctx, data)
}

// pushSharedConfig stores data, a validated config file, as the cluster's
// shared config, and waits (until ctx is done) for this relay to apply it.
func (s *Server) pushSharedConfig(ctx context.Context, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rev, err := s.shared.kv.Put(ctx, configKey, data)
	if err != nil {
		return fmt.Errorf("store the shared config: %w", err)
	}
	for {
		s.reloadMu.Lock()
		applied, appliedErr := s.shared.applied, s.shared.appliedErr
		s.reloadMu.Unlock()
		if applied >= rev {
			return appliedErr
		}
		select {
		case <-s.shared.appliedCh:
		case <-ctx.Done():
			return fmt.Errorf("shared config stored (revision %d) but not applied here yet: %w", rev, ctx.Err())
		}
	}
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
