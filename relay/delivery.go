package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
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

// retryBudget is how many of a sink's deliveries may wait in the store for
// their next attempt, besides those its worker holds, before the store
// hands the sink no new events: the consumer's MaxAckPending is the
// worker's prefetch plus this (see docs/design.md, Delivery under faults).
const retryBudget = 1000

// prefetch is how many messages the worker of a sink with the given
// concurrency holds at most: being attempted, or fetched and waiting for a
// slot (or for the breaker). It fetches again once it holds half: the
// larger the prefetch, the fewer pull requests per delivery (each one
// subscribes and unsubscribes an inbox), which is what lets a backlog drain
// fast (see docs/benchmarks.md, "Cost per event against a peer").
// heldBytes bounds the memory those messages take.
func prefetch(concurrency int) int { return max(2*concurrency, 1024) }

// minHeldBytes is the least a worker's held messages may take: what the
// prefetch took when it was 32 messages of a 1 MiB body each.
const minHeldBytes = 32 << 20

// heldBytes is how many bytes of messages a worker holds at most, given the
// store's largest message: at least minHeldBytes, and room for two of the
// largest messages in the half of it a fetch is made with.
func heldBytes(maxPayload int64) int { return max(minHeldBytes, 4*int(maxPayload)+4*heldOverhead) }

// maxAckPending is the consumer's MaxAckPending for a sink of the given
// concurrency.
func maxAckPending(concurrency int) int { return prefetch(concurrency) + retryBudget }

// fetchWait bounds one pull request: a worker with nothing to do asks the
// store again this often.
const fetchWait = 5 * time.Second

// fetchRetry is the pause after a pull request that failed.
const fetchRetry = 250 * time.Millisecond

// worker delivers the events routed to one sink. It pulls the events
// stream through the sink's durable consumer into what it holds (at most
// prefetch messages, each kept in progress by a heartbeat), and hands them
// out in order to at most concurrency attempts at a time, while the sink's
// breaker lets them. A delivery that fails and is to be retried goes back
// to the store with a delay and frees its slot at once; the consumer's
// MaxAckPending leaves room for retryBudget of them.
type worker struct {
	name    string
	store   *jsStore
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	ackWait time.Duration
	load    *ingestLoad

	rt    atomic.Pointer[sinkRuntime]
	cons  jetstream.Consumer
	brk   *breaker
	held  *heldQueue
	slots *slots
	// loops run fetch and dispatch until stopLoops.
	loops     sync.WaitGroup
	stopLoops context.CancelFunc
	inflight  sync.WaitGroup
	// idle hands an attempt to an attempter waiting for one (see attempt).
	idle chan heldAttempt
	// sendCtx is cancelled when the shutdown grace has run out.
	sendCtx    context.Context
	cancelSend context.CancelFunc

	quotedName string // `"<name>"`, as the route header spells a sink

	// The metric series every delivery updates, looked up once.
	delivered   prometheus.Counter
	retried     prometheus.Counter
	duration    prometheus.Observer
	yielding    prometheus.Gauge
	yielded     prometheus.Counter
	breakerOpen prometheus.Gauge

	mu      sync.Mutex
	tracks  map[uint64]*deliveryTrack // stream seq -> what this process knows of the delivery
	lastErr string                    // for logging a repeated failure once
}

// deliveryTrack is what a worker remembers of a delivery that failed, until
// it is settled.
type deliveryTrack struct {
	// firstFailed is when it first failed (after a restart: when the
	// event was stored), and openBefore the sink's breaker's openTime then:
	// the time since, less the time the breaker was open, is its age.
	firstFailed time.Time
	openBefore  time.Duration
	// probes counts the attempts it made as the probe of an open breaker
	// that failed: attempts, but not counted against max_attempts.
	probes int
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
		MaxAckPending:  maxAckPending(concurrency),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
}

// start creates or updates the sink's consumer and begins delivering.
func (w *worker) start(ctx context.Context, concurrency int, bc BreakerConfig) error {
	w.tracks = make(map[uint64]*deliveryTrack)
	w.quotedName = `"` + w.name + `"`
	w.delivered = w.metrics.Deliveries.WithLabelValues(w.name, "delivered")
	w.retried = w.metrics.Deliveries.WithLabelValues(w.name, "retried")
	w.duration = w.metrics.DeliveryDuration.WithLabelValues(w.name)
	w.yielding = w.metrics.Yielding.WithLabelValues(w.name)
	w.yielded = w.metrics.YieldTotal.WithLabelValues(w.name)
	w.breakerOpen = w.metrics.BreakerOpen.WithLabelValues(w.name)
	w.brk = newBreaker(bc, w.now, w.breakerChanged)
	w.held = newHeldQueue(prefetch(concurrency), heldBytes(w.store.nc.MaxPayload()))
	w.slots = newSlots(concurrency)
	w.sendCtx, w.cancelSend = context.WithCancel(context.Background())
	w.idle = make(chan heldAttempt)
	cons, err := w.store.ensureConsumer(ctx, consumerConfig(w.name, concurrency, w.ackWait))
	if err != nil {
		return fmt.Errorf("consumer for sink %s: %w", w.name, err)
	}
	w.cons = cons
	loopCtx, stop := context.WithCancel(context.Background())
	w.stopLoops = stop
	w.loops.Add(2)
	go func() { defer w.loops.Done(); w.fetchLoop(loopCtx) }()
	go func() { defer w.loops.Done(); w.dispatch(loopCtx) }()
	return nil
}

// configure applies a sink's settings from a reload: its concurrency (the
// slots, the prefetch and the consumer's MaxAckPending) and its breaker's.
func (w *worker) configure(ctx context.Context, concurrency int, bc BreakerConfig) error {
	w.brk.configure(bc)
	w.slots.setLimit(concurrency)
	w.held.setLimit(prefetch(concurrency))
	info, err := w.cons.Info(ctx) // fresh: the cached info predates earlier updates
	if err != nil {
		return err
	}
	if info.Config.MaxAckPending == maxAckPending(concurrency) {
		return nil
	}
	cfg := info.Config
	cfg.MaxAckPending = maxAckPending(concurrency)
	_, err = w.store.events.UpdateConsumer(ctx, cfg)
	return err
}

// fetchLoop pulls messages for the sink while it holds fewer than its
// prefetch, until ctx is done.
func (w *worker) fetchLoop(ctx context.Context) {
	for {
		n, bytes := w.held.waitRoom(ctx)
		if n == 0 {
			return
		}
		if err := w.fetch(ctx, n, bytes); err != nil {
			w.log.Debug("fetch", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(fetchRetry):
			}
		}
	}
}

// fetch makes one pull request for up to n messages and about maxBytes
// bytes, waiting at most fetchWait for them, and takes in each one as it
// arrives.
func (w *worker) fetch(ctx context.Context, n, maxBytes int) error {
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	batch, err := w.cons.Fetch(n, jetstream.FetchContext(fctx), jetstream.FetchMaxBytes(maxBytes))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		w.handle(msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// handle takes in a fetched message. Events not routed to this sink are
// acknowledged at once; the others are held, in progress, until an attempt
// settles them.
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
	w.held.add(&held{msg: msg, rules: rulesFor, stopBeat: w.heartbeat(msg), size: heldSize(msg)})
}

// dispatch starts an attempt for each held message in turn, in the order
// they were fetched, as slots free up and the breaker lets them, until ctx
// is done.
func (w *worker) dispatch(ctx context.Context) {
	for w.held.waitNext(ctx) {
		if !w.slots.acquire(ctx) {
			return
		}
		probe, ok := w.brk.wait(ctx)
		if !ok {
			w.slots.release()
			return
		}
		w.inflight.Add(1)
		w.attempt(heldAttempt{h: w.held.next(), probe: probe})
	}
}

// heldAttempt is an attempt dispatch has started: the message, and whether
// it is the probe of an open breaker.
type heldAttempt struct {
	h     *held
	probe bool
}

// attempt hands a to an attempter that is waiting for one, else starts
// one. An attempter makes its attempt, frees the slot, and waits for the
// next until the worker stops (sendCtx). Reusing them spares a goroutine's
// start, and the growth of its stack to what a send needs, per delivery.
// There are at most about twice the sink's concurrency of them: one is
// started only when none waits, and each one that does not wait holds a
// slot or has just freed it.
func (w *worker) attempt(a heldAttempt) {
	select {
	case w.idle <- a:
	default:
		go w.attempter(a, w.idle, w.sendCtx.Done())
	}
}

func (w *worker) attempter(a heldAttempt, next <-chan heldAttempt, stopped <-chan struct{}) {
	for {
		w.deliver(a.h, a.probe)
		w.slots.release()
		w.inflight.Done()
		select {
		case a = <-next:
		case <-stopped:
			return
		}
	}
}

// deliver makes one attempt at delivering h and settles it. The steps:
// prepare the delivery from the stored message, send it with the sink's
// current runtime, then settle the message by the outcome.
func (w *worker) deliver(h *held, probe bool) {
	md, d, err := w.prepare(h.msg, h.rules)
	if err != nil {
		w.log.Error("message without metadata", "err", err)
		_ = h.msg.Term()
		w.release(h)
		return
	}
	policy, err := w.send(&d)
	w.settle(h, md, d, policy, probe, err)
}

// release ends the worker's hold on a settled message.
func (w *worker) release(h *held) {
	h.stopBeat()
	w.held.settled(h)
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
		Attempt: int(md.NumDelivered) + w.probes(md.Sequence.Stream),
	}
	d.ReceivedAt, _ = time.Parse(time.RFC3339Nano, h.Get(hdrReceivedAt))
	d.Event = h.Get(hdrEvent)
	return md, d, nil
}

// errSinkRemoved is send's outcome when the sink has been removed: nothing
// was sent, and the delivery is to be dead-lettered.
var errSinkRemoved = errors.New(reasonSinkRemoved)

// panicError is a panic recovered from an attempt: in a sink's Send, in
// the template it renders there, or in the relay's own preparation of the
// delivery. The delivery is dead-lettered with its text, "panic: <value>".
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// send makes the attempt: it waits while ingest is busy (giveWay), acquires
// the sink's runtime, which can wait for a reload to close the runtime it
// replaced, adds the template data to d and sends it. It returns the
// runtime's retry policy with the sink's error, errSinkRemoved without
// sending when the sink has been removed, or a *panicError when the
// attempt panicked.
func (w *worker) send(d *sinks.Delivery) (policy RetryPolicy, err error) {
	w.giveWay()
	rt := w.acquireRuntime()
	defer rt.release()
	policy = rt.policy
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	addTemplateData(rt.sink, d)
	if rt.sink == nil {
		return policy, errSinkRemoved
	}
	start := time.Now()
	err = rt.sink.Send(w.sendCtx, *d)
	w.duration.Observe(time.Since(start).Seconds())
	return policy, err
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

// settle settles h by the outcome err of its attempt under policy, and
// tells the sink's breaker what the attempt showed of the destination:
//   - success: ack;
//   - the sink was removed: dead letter;
//   - the end of the shutdown grace cut the send off: hand the message back
//     at once, so that the next start delivers it without waiting for
//     ack_wait;
//   - a panic, or a permanent error: dead letter (a permanent error means
//     the destination answered, which counts as a success for the breaker);
//   - the probe of an open breaker failed: keep the message held, its
//     attempt not counted (probeFailed);
//   - the policy's attempts or age spent (giveUp): dead letter;
//   - otherwise: nak with the retry delay (retry).
func (w *worker) settle(h *held, md *jetstream.MsgMetadata, d sinks.Delivery, policy RetryPolicy, probe bool, err error) {
	var pe *panicError
	switch {
	case err == nil:
		w.brk.success(probe)
		w.complete(h, md, d)
	case errors.Is(err, errSinkRemoved):
		w.brk.cancel(probe)
		w.deadLetter(h, md, d, reasonSinkRemoved)
	case w.sendCtx.Err() != nil:
		w.brk.cancel(probe)
		_ = h.msg.Nak()
		w.release(h)
	case errors.As(err, &pe):
		w.brk.cancel(probe)
		w.deliveryLog(d).Error("delivery panicked", "panic", pe.Error(), "stack", string(pe.stack))
		w.deadLetter(h, md, d, err.Error())
	case sinks.IsPermanent(err):
		w.brk.success(probe)
		w.deadLetter(h, md, d, err.Error())
	case probe:
		w.probeFailed(h, md, d, policy, err)
	default:
		w.brk.failure(false, w.retryAfter(policy, err), err)
		if reason, ok := w.giveUp(md, policy, err); ok {
			w.deadLetter(h, md, d, reason)
			return
		}
		w.retry(h, md, d, policy, err)
	}
}

// retryAfter is the wait the destination asked for with err, if any, capped
// at the policy's max_interval.
func (w *worker) retryAfter(policy RetryPolicy, err error) time.Duration {
	ra, _ := sinks.RetryAfterOf(err)
	return min(ra, policy.MaxInterval)
}

// complete acknowledges a delivered message and logs the sink's recovery
// when its last attempt had failed.
func (w *worker) complete(h *held, md *jetstream.MsgMetadata, d sinks.Delivery) {
	if err := h.msg.Ack(); err != nil {
		w.deliveryLog(d).Warn("ack failed; the delivery may be repeated", "err", err)
	}
	w.release(h)
	w.delivered.Inc()
	w.store.recordTrail(w.name, h.msg, md, d.Attempt, StatusDelivered, "")
	w.forget(md.Sequence.Stream)
	if w.noteError("") {
		w.deliveryLog(d).Info("sink recovered")
	}
}

// giveUp decides whether a failed attempt is the last: it returns the
// dead-letter reason and true when the attempts counted (those made while
// the breaker was closed) reached policy.MaxAttempts, or when the delivery
// has been failing for policy.MaxAge, not counting the time the breaker
// was open; false when it is to be retried.
func (w *worker) giveUp(md *jetstream.MsgMetadata, policy RetryPolicy, err error) (reason string, ok bool) {
	attempts := int(md.NumDelivered)
	_, age := w.firstFailure(md)
	switch {
	case attempts >= policy.MaxAttempts:
		return fmt.Sprintf("gave up after %d attempts: %v", attempts, err), true
	case age >= policy.MaxAge:
		return fmt.Sprintf("gave up after %s (max_age): %v", policy.MaxAge, err), true
	}
	return "", false
}

// retry hands the message back for redelivery after the policy's backoff
// (or the sink's Retry-After), logging err when its text differs from the
// last one. Its slot is free at once: the store keeps the message until
// the delay has passed.
func (w *worker) retry(h *held, md *jetstream.MsgMetadata, d sinks.Delivery, policy RetryPolicy, err error) {
	delay := retryDelay(policy, int(md.NumDelivered), w.retryAfter(policy, err))
	if w.noteError(err.Error()) {
		w.deliveryLog(d).Warn("delivery failed, will retry", "err", err, "retry_in", delay)
	}
	w.retried.Inc()
	w.store.recordTrail(w.name, h.msg, md, d.Attempt, StatusRetrying, err.Error())
	if err := h.msg.NakWithDelay(delay); err != nil {
		w.deliveryLog(d).Warn("nak failed; redelivery waits for the ack timeout", "err", err)
	}
	w.release(h)
}

// probeFailed handles the failure of the probe of an open breaker: the
// breaker stays open for another cooldown (or the Retry-After), and the
// message waits again among those held, behind the others, neither its
// attempts nor its age counted: the failure is the sink's.
func (w *worker) probeFailed(h *held, md *jetstream.MsgMetadata, d sinks.Delivery, policy RetryPolicy, err error) {
	w.brk.failure(true, w.retryAfter(policy, err), err)
	w.noteProbe(md)
	w.noteError(err.Error())
	w.retried.Inc()
	w.deliveryLog(d).Debug("probe failed; the breaker stays open", "err", err)
	if !w.held.requeue(h) { // stopping
		_ = h.msg.Nak()
		h.stopBeat()
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

// firstFailure returns when this delivery first failed (remembered by this
// process, else, after a restart, when the event was stored) and its age
// for max_age: the time since, less the time the sink's breaker was open
// meanwhile.
func (w *worker) firstFailure(md *jetstream.MsgMetadata) (first time.Time, age time.Duration) {
	open := w.brk.openTime()
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.trackLocked(md, open)
	return t.firstFailed, w.now().Sub(t.firstFailed) - (open - t.openBefore)
}

// noteProbe records a failed probe of the delivery.
func (w *worker) noteProbe(md *jetstream.MsgMetadata) {
	open := w.brk.openTime()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trackLocked(md, open).probes++
}

// probes is the number of failed probes the delivery made.
func (w *worker) probes(seq uint64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.tracks[seq]; ok {
		return t.probes
	}
	return 0
}

// trackLocked returns the delivery's track, made on its first failure;
// open is the breaker's openTime now. w.mu is held.
func (w *worker) trackLocked(md *jetstream.MsgMetadata, open time.Duration) *deliveryTrack {
	seq := md.Sequence.Stream
	if t, ok := w.tracks[seq]; ok {
		return t
	}
	t := &deliveryTrack{firstFailed: w.now(), openBefore: open}
	if md.NumDelivered > 1 {
		t.firstFailed = md.Timestamp
	}
	w.tracks[seq] = t
	return t
}

func (w *worker) forget(seq uint64) {
	w.mu.Lock()
	delete(w.tracks, seq)
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
func (w *worker) deadLetter(h *held, md *jetstream.MsgMetadata, d sinks.Delivery, reason string) {
	defer w.release(h)
	log := w.deliveryLog(d)
	first, _ := w.firstFailure(md)
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
	m.Header.Set(hdrEventID, strconv.FormatUint(eventIDOf(h.msg, md), 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("dead:%s:%d", w.name, md.Sequence.Stream)
	if _, err := w.store.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(deadStream)); err != nil {
		log.Error("cannot store dead letter; will retry", "err", err)
		_ = h.msg.NakWithDelay(w.ackWait)
		return
	}
	if err := h.msg.Ack(); err != nil {
		log.Warn("ack after dead letter failed", "err", err)
	}
	w.forget(md.Sequence.Stream)
	w.store.recordTrail(w.name, h.msg, md, d.Attempt, StatusDeadLettered, reason)
	w.metrics.Deliveries.WithLabelValues(w.name, "dead_lettered").Inc()
	log.Error("delivery dead-lettered", "reason", oneLine(reason, 512))
}

// breakerChanged reports the sink's breaker opening or closing, in the log
// and the relay_sink_breaker_open gauge.
func (w *worker) breakerChanged(c breakerChange) {
	if c.Open {
		w.breakerOpen.Set(1)
		w.log.Warn("sink breaker opened: deliveries wait for a probe", "err", c.Cause, "probe_in", c.Until.Sub(w.now()).Round(time.Millisecond))
		return
	}
	w.breakerOpen.Set(0)
	w.log.Info("sink breaker closed", "open_for", c.OpenFor.Round(time.Millisecond))
}

// stop stops fetching, hands back the messages held that no attempt has
// taken (the store delivers them again at the next start), and waits for
// the attempts in flight until ctx is done; then it cancels them (they are
// handed back too).
func (w *worker) stop(ctx context.Context) {
	if w.stopLoops != nil {
		w.stopLoops()
		w.loops.Wait()
		for _, h := range w.held.drain() {
			_ = h.msg.Nak()
			h.stopBeat()
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
