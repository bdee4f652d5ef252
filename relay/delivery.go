package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// reasonSinkRemoved is the dead-letter reason for deliveries queued for a
// sink that a reload (or a restart with a new config) removed.
const reasonSinkRemoved = "sink removed"

// sinkRuntime is what a worker delivers with; a reload swaps it whole.
type sinkRuntime struct {
	sink   sinks.Sink // nil: the sink was removed, dead-letter what is left
	policy RetryPolicy

	mu     sync.RWMutex // held for reading by every Send, for writing by close
	closed bool
}

// acquire returns with rt read-locked, or false if rt was closed.
func (rt *sinkRuntime) acquire() bool {
	rt.mu.RLock()
	if rt.closed {
		rt.mu.RUnlock()
		return false
	}
	return true
}

func (rt *sinkRuntime) release() { rt.mu.RUnlock() }

// close waits for the sends in progress, then closes the sink.
func (rt *sinkRuntime) close(ctx context.Context) error {
	rt.mu.Lock()
	rt.closed = true
	rt.mu.Unlock()
	if rt.sink == nil {
		return nil
	}
	return rt.sink.Close(ctx)
}

// worker delivers the events routed to one sink. It reads the events stream
// through the sink's durable consumer; the consumer's MaxAckPending is the
// sink's concurrency, so the server never hands out more deliveries than may
// be in flight, and a backlog stays in the store, not in memory.
type worker struct {
	name    string
	store   *jsStore
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	ackWait time.Duration
	load    *ingestLoad

	rt       atomic.Pointer[sinkRuntime]
	cons     jetstream.Consumer
	cc       jetstream.ConsumeContext
	inflight sync.WaitGroup
	// sendCtx is cancelled when the shutdown grace has run out.
	sendCtx    context.Context
	cancelSend context.CancelFunc

	quotedName string // `"<name>"`, as the route header spells a sink

	// The metric series every delivery updates, looked up once.
	delivered prometheus.Counter
	retried   prometheus.Counter
	duration  prometheus.Observer
	yielding  prometheus.Gauge
	yielded   prometheus.Counter

	mu          sync.Mutex
	firstFailed map[uint64]time.Time // stream seq -> first failed attempt (this process)
	lastErr     string               // for logging a repeated failure once
}

// consumerConfig is the durable consumer of one sink.
func consumerConfig(sink string, concurrency int, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        sinkConsumerName(sink),
		Description:    "deliveries to sink " + sink,
		FilterSubjects: routeFilters(sink),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1, // the relay decides when to give up
		MaxAckPending:  concurrency,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
}

// start creates or updates the sink's consumer and begins consuming.
func (w *worker) start(ctx context.Context, concurrency int) error {
	w.firstFailed = make(map[uint64]time.Time)
	w.quotedName = `"` + w.name + `"`
	w.delivered = w.metrics.Deliveries.WithLabelValues(w.name, "delivered")
	w.retried = w.metrics.Deliveries.WithLabelValues(w.name, "retried")
	w.duration = w.metrics.DeliveryDuration.WithLabelValues(w.name)
	w.yielding = w.metrics.Yielding.WithLabelValues(w.name)
	w.yielded = w.metrics.YieldTotal.WithLabelValues(w.name)
	w.sendCtx, w.cancelSend = context.WithCancel(context.Background())
	cfg := consumerConfig(w.name, concurrency, w.ackWait)
	cons, err := w.store.events.Consumer(ctx, cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cons, err = w.store.events.CreateConsumer(ctx, cfg)
	case err == nil:
		// Keep where the consumer is; update what may change.
		cur := cons.CachedInfo().Config
		cur.MaxAckPending, cur.AckWait = cfg.MaxAckPending, cfg.AckWait
		cur.FilterSubject, cur.FilterSubjects = cfg.FilterSubject, cfg.FilterSubjects
		cons, err = w.store.events.UpdateConsumer(ctx, cur)
		if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
			// nats-server applies the filters to a consumer it recovered
			// without any but leaves them out of its answer: read back.
			cons, err = w.store.events.Consumer(ctx, cfg.Durable)
			if err == nil && !slices.Equal(cons.CachedInfo().Config.FilterSubjects, cfg.FilterSubjects) {
				err = fmt.Errorf("filters not applied: %w", jetstream.ErrConsumerMultipleFilterSubjectsNotSupported)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("consumer for sink %s: %w", w.name, err)
	}
	w.cons = cons
	w.cc, err = cons.Consume(w.handle,
		jetstream.PullMaxMessages(max(2*concurrency, 64)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Debug("consume", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume for sink %s: %w", w.name, err)
	}
	return nil
}

// setConcurrency updates the consumer's MaxAckPending.
func (w *worker) setConcurrency(ctx context.Context, n int) error {
	info, err := w.cons.Info(ctx) // fresh: the cached info predates earlier updates
	if err != nil {
		return err
	}
	if info.Config.MaxAckPending == n {
		return nil
	}
	cfg := info.Config
	cfg.MaxAckPending = n
	_, err = w.store.events.UpdateConsumer(ctx, cfg)
	return err
}

// handle is called for each message the consumer hands out, one at a time.
// Events not routed to this sink are acknowledged at once; the others are
// delivered on their own goroutine (the consumer bounds how many).
func (w *worker) handle(msg jetstream.Msg) {
	h := msg.Headers()
	// The subject filters hand a sink only its events, except events
	// routed to more sinks than a subject names (and events stored by
	// earlier versions): skip decoding the route when it cannot name this
	// sink.
	if !strings.Contains(h.Get(hdrRoute), w.quotedName) {
		_ = msg.Ack()
		return
	}
	route := parseRoute(h)
	rulesFor, routed := route[w.name]
	if !routed {
		_ = msg.Ack()
		return
	}
	w.inflight.Add(1)
	go func() {
		defer w.inflight.Done()
		w.deliver(msg, rulesFor)
	}()
}

// deliver makes one attempt and settles the message: ack, nak with a delay,
// or dead letter.
func (w *worker) deliver(msg jetstream.Msg, ruleNames []string) {
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	h := msg.Headers()
	source, msgID := eventIdentity(h)
	d := sinks.Delivery{
		MsgID:   msgID,
		Source:  source,
		Rules:   ruleNames,
		Body:    msg.Data(),
		Attempt: int(md.NumDelivered),
	}
	d.ReceivedAt, _ = time.Parse(time.RFC3339Nano, h.Get(hdrReceivedAt))
	d.Event = h.Get(hdrEvent)

	stopBeat := w.heartbeat(msg)
	w.giveWay()
	var rt *sinkRuntime
	for {
		rt = w.rt.Load()
		if rt.acquire() {
			break
		}
	}
	if raw, ok := rt.sink.(sinks.RawSender); !ok || !raw.RawOnly() {
		// Template data: decode the body (ingest checked it is an object).
		if env, err := rules.NewEnv(d.Body, rules.Meta{Source: d.Source, MsgID: d.MsgID, ReceivedAt: d.ReceivedAt}); err == nil {
			d.Event = env.Event
			d.Data = env.Data()
		}
	}
	if rt.sink == nil {
		stopBeat()
		rt.release()
		w.deadLetter(msg, md, d, reasonSinkRemoved)
		return
	}
	policy := rt.policy
	start := time.Now()
	err = rt.sink.Send(w.sendCtx, d)
	elapsed := time.Since(start)
	stopBeat()
	rt.release()
	w.duration.Observe(elapsed.Seconds())

	if err == nil {
		if ackErr := msg.Ack(); ackErr != nil {
			w.deliveryLog(d).Warn("ack failed; the delivery may be repeated", "err", ackErr)
		}
		w.delivered.Inc()
		w.forget(md.Sequence.Stream)
		if w.noteError("") {
			w.deliveryLog(d).Info("sink recovered")
		}
		return
	}
	if w.sendCtx.Err() != nil {
		// Cut off by the end of the shutdown grace: hand it back at once so
		// that the next start delivers it without waiting for ack_wait.
		_ = msg.Nak()
		return
	}
	first := w.firstFailure(md)
	switch {
	case sinks.IsPermanent(err):
		w.deadLetter(msg, md, d, err.Error())
		return
	case d.Attempt >= policy.MaxAttempts:
		w.deadLetter(msg, md, d, fmt.Sprintf("gave up after %d attempts: %v", d.Attempt, err))
		return
	case w.now().Sub(first) >= policy.MaxAge:
		w.deadLetter(msg, md, d, fmt.Sprintf("gave up after %s (max_age): %v", policy.MaxAge, err))
		return
	}
	retryAfter, _ := sinks.RetryAfterOf(err)
	delay := retryDelay(policy, d.Attempt, retryAfter)
	if w.noteError(err.Error()) {
		w.deliveryLog(d).Warn("delivery failed, will retry", "err", err, "retry_in", delay)
	}
	w.retried.Inc()
	if err := msg.NakWithDelay(delay); err != nil {
		w.deliveryLog(d).Warn("nak failed; redelivery waits for the ack timeout", "err", err)
	}
}

// giveWay waits while ingest is busy, at most server.ingest_priority.max_hold
// (see ingestLoad).
func (w *worker) giveWay() {
	eased := w.load.busy()
	if eased == nil {
		return
	}
	w.yielding.Inc()
	start := time.Now()
	w.load.wait(w.sendCtx, eased)
	w.yielding.Dec()
	w.yielded.Add(time.Since(start).Seconds())
}

// heartbeat tells the server the delivery is still in progress while a send
// runs longer than a fraction of the ack wait. It returns a stop function.
func (w *worker) heartbeat(msg jetstream.Msg) func() {
	every := w.ackWait / 3
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(every)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// firstFailure returns when this delivery first failed: remembered by this
// process, else (after a restart) when the event was stored.
func (w *worker) firstFailure(md *jetstream.MsgMetadata) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	seq := md.Sequence.Stream
	if t, ok := w.firstFailed[seq]; ok {
		return t
	}
	t := w.now()
	if md.NumDelivered > 1 {
		t = md.Timestamp
	}
	w.firstFailed[seq] = t
	return t
}

func (w *worker) forget(seq uint64) {
	w.mu.Lock()
	delete(w.firstFailed, seq)
	w.mu.Unlock()
}

// noteError records the latest error text ("" for success) and reports
// whether it changed, so a repeated failure is logged once.
func (w *worker) noteError(text string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := w.lastErr != text
	w.lastErr = text
	return changed
}

// deliveryLog is the worker's logger (which names the sink) with d's
// identity; built only when a delivery has something to log.
func (w *worker) deliveryLog(d sinks.Delivery) *slog.Logger {
	return w.log.With("msg_id", d.MsgID, "event", d.Event, "attempt", d.Attempt)
}

// deadLetter stores the delivery in the dead-letter stream with reason, then
// acknowledges the message, so the sink's queue moves on. If the dead letter
// cannot be stored the message is handed back (nak after ack_wait) and the
// delivery is tried again later.
func (w *worker) deadLetter(msg jetstream.Msg, md *jetstream.MsgMetadata, d sinks.Delivery, reason string) {
	log := w.deliveryLog(d)
	first := w.firstFailure(md)
	rulesJSON, _ := json.Marshal(d.Rules)
	m := nats.NewMsg(deadSubject + w.name)
	m.Data = d.Body
	m.Header.Set(hdrMsgID, d.MsgID)
	m.Header.Set(hdrSource, d.Source)
	m.Header.Set(hdrReceivedAt, d.ReceivedAt.UTC().Format(time.RFC3339Nano))
	m.Header.Set(hdrEvent, d.Event)
	m.Header.Set(hdrRules, string(rulesJSON))
	m.Header.Set(hdrAttempts, strconv.Itoa(d.Attempt))
	m.Header.Set(hdrFirstAttempt, first.UTC().Format(time.RFC3339Nano))
	m.Header.Set(hdrLastAttempt, w.now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(hdrError, oneLine(reason, 2048))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("dead:%s:%d", w.name, md.Sequence.Stream)
	if _, err := w.store.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(deadStream)); err != nil {
		log.Error("cannot store dead letter; will retry", "err", err)
		_ = msg.NakWithDelay(w.ackWait)
		return
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack after dead letter failed", "err", err)
	}
	w.forget(md.Sequence.Stream)
	w.metrics.Deliveries.WithLabelValues(w.name, "dead_lettered").Inc()
	log.Error("delivery dead-lettered", "reason", oneLine(reason, 512))
}

// stop stops taking messages, lets the ones already fetched start, and waits
// for the deliveries in flight until ctx is done; then it cancels them (they
// stay queued in the store for the next start).
func (w *worker) stop(ctx context.Context) {
	if w.cc != nil {
		w.cc.Drain()
		select {
		case <-w.cc.Closed():
		case <-ctx.Done():
			w.cc.Stop()
		}
	}
	done := make(chan struct{})
	go func() { w.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.cancelSend()
		<-done
	}
	w.cancelSend()
}

// pending is the number of events the sink's consumer has not settled yet:
// not yet handed out, plus in flight or waiting to be retried.
func (w *worker) pending(ctx context.Context) (uint64, error) {
	info, err := w.cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// oneLine flattens s to one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
