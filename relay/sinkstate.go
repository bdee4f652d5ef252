package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// sinkStateBucket is the JetStream KV bucket behind sinks.State.
const sinkStateBucket = "RELAY_SINK_STATE"

// withCompile gives reg's sinks the rules package's string expressions
// (sinks.Env.CompileString) unless its Env has them already.
func withCompile(reg *sinks.Registry) *sinks.Registry {
	return reg.WithEnv(func(e sinks.Env) sinks.Env {
		if e.CompileString == nil {
			e.CompileString = rules.CompileString
		}
		return e
	})
}

// sinkRegistry is the registry the running server builds its sinks with:
// the configured one plus expressions, the store's sink state and the
// sink counters.
func (s *Server) sinkRegistry() *sinks.Registry {
	st := &kvState{store: s.store}
	m := s.metrics
	return withCompile(s.opts.Registry).WithEnv(func(e sinks.Env) sinks.Env {
		e.State = st.open
		e.Count = m.countSink
		return e
	})
}

// countSink implements sinks.Env.Count.
func (m *Metrics) countSink(metric string, labels ...string) {
	if metric == "slack_messages" && len(labels) == 2 {
		m.SlackMessages.WithLabelValues(labels...).Inc()
	}
}

// newSlackMessages is relay_slack_messages_total.
func newSlackMessages() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_slack_messages_total",
		Help: "Slack messages posted and updated, by sink and kind (post, reply, update).",
	}, []string{"sink", "kind"})
}

// kvState is sinks.State on a JetStream KV bucket, created on first use.
type kvState struct {
	store *jsStore

	mu sync.Mutex
	kv jetstream.KeyValue
}

// open returns the bucket, creating it when needed.
func (k *kvState) open(ctx context.Context) (sinks.State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kv != nil {
		return k, nil
	}
	replicas := 1
	if k.store.cfg.URL != "" {
		replicas = k.store.cfg.Replicas
	}
	err := k.store.retrySetup(ctx, "create key-value bucket "+sinkStateBucket, func(ctx context.Context) (err error) {
		k.kv, err = k.store.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      sinkStateBucket,
			Description: "sink state: Slack threads and groups",
			TTL:         objectHistory(k.store.cfg), // an event older than that is not threaded with its predecessors
			Replicas:    replicas,
			Storage:     jetstream.FileStorage,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sink state: %w", err)
	}
	return k, nil
}

func (k *kvState) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, sinks.ErrStateNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("sink state get: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

func (k *kvState) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, sinks.ErrStateExists
	}
	if err != nil {
		return 0, fmt.Errorf("sink state create: %w", err)
	}
	return rev, nil
}

func (k *kvState) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := k.kv.Update(ctx, key, value, revision)
	if isWrongSequence(err) {
		return 0, sinks.ErrStateConflict
	}
	if err != nil {
		return 0, fmt.Errorf("sink state update: %w", err)
	}
	return rev, nil
}

func (k *kvState) Delete(ctx context.Context, key string, revision uint64) error {
	var opts []jetstream.KVDeleteOpt
	if revision != 0 {
		opts = append(opts, jetstream.LastRevision(revision))
	}
	err := k.kv.Purge(ctx, key, opts...)
	switch {
	case isWrongSequence(err):
		return sinks.ErrStateConflict
	case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("sink state delete: %w", err)
	}
	return nil
}

func (k *kvState) Keys(ctx context.Context, prefix string) ([]string, error) {
	lister, err := k.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sink state keys: %w", err)
	}
	var keys []string
	for key := range lister.Keys() {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// isWrongSequence reports a KV update that lost a race: the key moved on
// (or was deleted) since the revision was read.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
