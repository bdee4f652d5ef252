package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// sinkRuntime is what a worker delivers with; a reload swaps it whole
// (worker.rt) and closes the one it replaced while deliveries run. That is
// safe because of what the code guarantees:
//
//   - Every Send runs with its runtime read-locked (worker.acquireRuntime,
//     then release), and close takes the write lock: close waits for the
//     sends in flight on the runtime, and none starts on it afterwards.
//   - A runtime is closed only once it is no longer the worker's: a reload
//     (engine.apply) stores the new runtime, with Swap, before it closes the
//     old one; the engine's stop closes the current one only after the
//     worker has stopped and its deliveries have returned; the runtime of a
//     worker that failed to start is closed having delivered nothing.
//   - So a delivery that loads a runtime which is closed before it acquires
//     it (acquire reports false, at once or after waiting behind close's
//     write lock) finds the replacement already stored, and loading again
//     acquires it. acquireRuntime loops for that; it loops more than twice
//     only if further reloads replace that runtime too.
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
	cons, err := w.store.ensureConsumer(ctx, consumerConfig(w.name, concurrency, w.ackWait))
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

// deliver makes one attempt at delivering msg and settles it. The steps:
// prepare the delivery from the stored message, send it with the sink's
// current runtime, then settle the message by the outcome.
func (w *worker) deliver(msg jetstream.Msg, ruleNames []string) {
	md, d, err := w.prepare(msg, ruleNames)
	if err != nil {
		w.log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	policy, err := w.send(msg, &d)
	w.settle(msg, md, d, policy, err)
}

// prepare builds the delivery of msg from its metadata and headers. The
// template data is left to send: whether to decode it depends on the sink
// that will send, known only once its runtime is acquired.
func (w *worker) prepare(msg jetstream.Msg, ruleNames []string) (*jetstream.MsgMetadata, sinks.Delivery, error) {
	md, err := msg.Metadata()
	if err != nil {
		return nil, sinks.Delivery{}, err
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
	return md, d, nil
}

// errSinkRemoved is send's outcome when the sink has been removed: nothing
// was sent, and the delivery is to be dead-lettered.
var errSinkRemoved = errors.New(reasonSinkRemoved)

// send makes the attempt. From its start the message is kept in progress
// (heartbeat), across the wait while ingest is busy (giveWay) and for
// acquiring the sink's runtime, which can wait for a reload to close the
// runtime it replaced. It then adds the template data to d and sends it.
// It returns the runtime's retry policy with the sink's error, or
// errSinkRemoved without sending when the sink has been removed.
func (w *worker) send(msg jetstream.Msg, d *sinks.Delivery) (RetryPolicy, error) {
	stopBeat := w.heartbeat(msg)
	defer stopBeat()
	w.giveWay()
	rt := w.acquireRuntime()
	defer rt.release()
	addTemplateData(rt.sink, d)
	if rt.sink == nil {
		return rt.policy, errSinkRemoved
	}
	start := time.Now()
	err := rt.sink.Send(w.sendCtx, *d)
	w.duration.Observe(time.Since(start).Seconds())
	return rt.policy, err
}

// acquireRuntime returns the sink's current runtime, read-locked: the
// caller sends with it, then releases it. It retries when the runtime it
// loaded was closed before it could acquire it; the invariant it relies on
// (see sinkRuntime) is that the replacement is then already stored.
func (w *worker) acquireRuntime() *sinkRuntime {
	for {
		if rt := w.rt.Load(); rt.acquire() {
			return rt
		}
	}
}

// addTemplateData decodes d's body into the data templates see (ingest
// checked it is an object; a missed event is decoded as it was routed, see
// rules.NewEnvFor), and sets d.Event from it, unless sink sends only
// the raw body. For a nil sink (removed) the body is decoded all the same:
// the dead letter records the Event decoded from it.
func addTemplateData(sink sinks.Sink, d *sinks.Delivery) {
	if raw, ok := sink.(sinks.RawSender); ok && raw.RawOnly() {
		return
	}
	if env, err := rules.NewEnvFor(d.Event, d.Body, rules.Meta{Source: d.Source, MsgID: d.MsgID, ReceivedAt: d.ReceivedAt}); err == nil {
		d.Event = env.Event
		d.Data = env.Data()
	}
}

// settle settles msg by the outcome err of its attempt under policy:
//   - success: ack;
//   - the sink was removed: dead letter;
//   - the end of the shutdown grace cut the send off: hand the message back
//     at once, so that the next start delivers it without waiting for
//     ack_wait;
//   - a permanent error, or the policy's attempts or age spent (giveUp):
//     dead letter;
//   - otherwise: nak with the retry delay (retry).
func (w *worker) settle(msg jetstream.Msg, md *jetstream.MsgMetadata, d sinks.Delivery, policy RetryPolicy, err error) {
	switch {
	case err == nil:
		w.complete(msg, md, d)
	case errors.Is(err, errSinkRemoved):
		w.deadLetter(msg, md, d, reasonSinkRemoved)
	case w.sendCtx.Err() != nil:
		_ = msg.Nak()
	default:
		if reason, ok := w.giveUp(md, d.Attempt, policy, err); ok {
			w.deadLetter(msg, md, d, reason)
			return
		}
		w.retry(msg, d, policy, err)
	}
}

// complete acknowledges a delivered message and logs the sink's recovery
// when its last attempt had failed.
func (w *worker) complete(msg jetstream.Msg, md *jetstream.MsgMetadata, d sinks.Delivery) {
	if err := msg.Ack(); err != nil {
		w.deliveryLog(d).Warn("ack failed; the delivery may be repeated", "err", err)
	}
	w.delivered.Inc()
	w.forget(md.Sequence.Stream)
	if w.noteError("") {
		w.deliveryLog(d).Info("sink recovered")
	}
}

// giveUp classifies a failed attempt: it returns the dead-letter reason and
// true when err is permanent, when attempt reached policy.MaxAttempts, or
// when policy.MaxAge has passed since the delivery first failed; false when
// the delivery is to be retried.
func (w *worker) giveUp(md *jetstream.MsgMetadata, attempt int, policy RetryPolicy, err error) (reason string, ok bool) {
	first := w.firstFailure(md)
	switch {
	case sinks.IsPermanent(err):
		return err.Error(), true
	case attempt >= policy.MaxAttempts:
		return fmt.Sprintf("gave up after %d attempts: %v", attempt, err), true
	case w.now().Sub(first) >= policy.MaxAge:
		return fmt.Sprintf("gave up after %s (max_age): %v", policy.MaxAge, err), true
	}
	return "", false
}

// retry hands msg back for redelivery after the policy's backoff (or the
// sink's Retry-After), logging err when its text differs from the last one.
func (w *worker) retry(msg jetstream.Msg, d sinks.Delivery, policy RetryPolicy, err error) {
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
