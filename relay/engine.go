package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/sinks"
)

// engine runs one worker per sink and keeps the set of workers in line with
// the configuration in force.
type engine struct {
	store   *jsStore
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	ackWait time.Duration
	load    *ingestLoad

	mu      sync.Mutex
	workers map[string]*worker
	stopped bool
	// drainEvery is how often a removed sink's consumer is checked for
	// being empty.
	drainEvery time.Duration
	done       chan struct{}
	bg         sync.WaitGroup
}

func newEngine(store *jsStore, log *slog.Logger, m *Metrics, now func() time.Time, ackWait time.Duration, load *ingestLoad) *engine {
	return &engine{
		store: store, log: log, metrics: m, now: now, ackWait: ackWait, load: load,
		workers:    make(map[string]*worker),
		drainEvery: 2 * time.Second,
		done:       make(chan struct{}),
	}
}

// apply makes the workers match cfg, delivering with the sinks in built
// (which it then owns). A sink that is new gets a worker; a changed one gets
// its new settings for every delivery from now on, queued ones included; a
// removed one keeps its consumer until the deliveries queued for it are
// dead-lettered with reason "sink removed". Sinks whose consumer exists in
// the store but that no config names (removed while the relay was stopped)
// are drained the same way.
func (e *engine) apply(ctx context.Context, cfg *Config, built map[string]sinks.Sink) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errors.New("delivery engine stopped")
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.Sinks)) {
		sc := cfg.Sinks[name]
		rt := &sinkRuntime{sink: built[name], policy: sc.Retry}
		if w, ok := e.workers[name]; ok {
			// The new runtime is stored before the old one is closed:
			// deliveries rely on it (see sinkRuntime).
			old := w.rt.Swap(rt)
			if err := w.configure(ctx, sc.Concurrency, sc.Breaker); err != nil {
				errs = append(errs, fmt.Errorf("sink %s: update concurrency: %w", name, err))
			}
			e.closeLater(old)
			continue
		}
		if err := e.startWorker(ctx, name, rt, sc.Concurrency, sc.Breaker); err != nil {
			errs = append(errs, err)
			_ = rt.close(ctx)
		}
	}
	for name, w := range e.workers {
		if _, ok := cfg.Sinks[name]; ok {
			continue
		}
		if old := w.rt.Swap(&sinkRuntime{}); old.sink != nil { // stored before old is closed
			e.log.Warn("sink removed; its queued deliveries will be dead-lettered", "sink", name)
			w.brk.reset() // what waits behind it is dead-lettered now
			e.closeLater(old)
			e.watchDrain(name)
		}
	}
	// Consumers left by sinks that were removed while the relay was down.
	names, err := e.store.consumerNames(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("list consumers: %w", err))
	}
	for _, cname := range names {
		sink, ok := sinkOfConsumer(cname)
		if !ok {
			continue
		}
		if _, known := e.workers[sink]; known {
			continue
		}
		e.log.Warn("found the queue of a sink the config no longer names; its deliveries will be dead-lettered", "sink", sink)
		if err := e.startWorker(ctx, sink, &sinkRuntime{policy: DefaultRetry()}, 1, DefaultBreaker()); err != nil {
			errs = append(errs, err)
			continue
		}
		e.watchDrain(sink)
	}
	return errors.Join(errs...)
}

func (e *engine) startWorker(ctx context.Context, name string, rt *sinkRuntime, concurrency int, bc BreakerConfig) error {
	w := &worker{
		name: name, store: e.store, metrics: e.metrics, now: e.now, ackWait: e.ackWait, load: e.load,
		log: e.log.With("sink", name),
	}
	w.rt.Store(rt)
	if err := w.start(ctx, concurrency, bc); err != nil {
		return err
	}
	e.workers[name] = w
	return nil
}

// closeLater closes a replaced runtime once its sends in progress finish.
func (e *engine) closeLater(rt *sinkRuntime) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.close(ctx); err != nil {
			e.log.Warn("closing replaced sink", "err", err)
		}
	}()
}

// watchDrain deletes a removed sink's consumer once nothing is pending on
// it, unless a reload brought the sink back meanwhile.
func (e *engine) watchDrain(name string) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		t := time.NewTicker(e.drainEvery)
		defer t.Stop()
		for {
			select {
			case <-e.done:
				return
			case <-t.C:
			}
			if e.tryRemove(name) {
				return
			}
		}
	}()
}

func (e *engine) tryRemove(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, ok := e.workers[name]
	if !ok {
		return true
	}
	if w.rt.Load().sink != nil {
		return true // re-added by a reload
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := w.pending(ctx)
	if err != nil || n > 0 {
		return false
	}
	w.stop(ctx)
	if err := e.store.events.DeleteConsumer(ctx, sinkConsumerName(name)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		e.log.Warn("delete consumer of removed sink", "sink", name, "err", err)
		return false
	}
	delete(e.workers, name)
	e.log.Info("removed sink drained", "sink", name)
	return true
}

// worker returns the named sink's worker, if it has one: a configured sink
// always does, a removed one until its queue is drained.
func (e *engine) worker(name string) (*worker, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, ok := e.workers[name]
	return w, ok
}

// updateGauges refreshes the pending-deliveries gauge.
func (e *engine) updateGauges(ctx context.Context) {
	e.mu.Lock()
	ws := make([]*worker, 0, len(e.workers))
	for _, w := range e.workers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	e.metrics.PendingDeliveries.Reset()
	for _, w := range ws {
		if n, err := w.pending(ctx); err == nil {
			e.metrics.PendingDeliveries.WithLabelValues(w.name).Set(float64(n))
		}
	}
}

// stop stops every worker, giving deliveries in flight until ctx is done,
// then closes the sinks.
func (e *engine) stop(ctx context.Context) error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	close(e.done)
	ws := e.workers
	e.mu.Unlock()

	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop(ctx) }()
	}
	wg.Wait()
	var errs []error
	for _, w := range ws {
		if err := w.rt.Load().close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close sink %s: %w", w.name, err))
		}
	}
	e.bg.Wait()
	return errors.Join(errs...)
}
