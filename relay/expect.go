package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/rules"
)

// Expectation timers live in a stream of their own (see docs/design.md,
// "Expectations"). An open timer is one message scheduled by the store
// (JetStream message scheduling) under timerSubject; when it runs out the
// store itself moves it to firedSubject and removes the schedule, in one
// step, and the relay turns each fired timer into one missed event.
const (
	expectStream  = "RELAY_EXPECT"
	timerSubject  = "relay.expect.wait."  // + expectation + "." + keyHash(key): an open timer
	firedSubject  = "relay.expect.fired." // + expectation: a timer that ran out
	firedConsumer = "relay-expect-fired"

	// Headers of JetStream message scheduling (nats-server 2.12+).
	hdrSchedule       = "Nats-Schedule"
	hdrScheduleTarget = "Nats-Schedule-Target"
)

// timerRecord is the body of a timer message: everything the missed event
// will need, so that firing it needs nothing else.
type timerRecord struct {
	Expectation string          `json:"expectation"`
	Key         string          `json:"key"`
	Deadline    time.Time       `json:"deadline"`
	Source      string          `json:"source"`
	MsgID       string          `json:"msg_id"` // the after event's
	After       json.RawMessage `json:"after"`
}

// keyHash turns an expectation key, any string, into a subject token.
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// timerSubjectOf is the subject of the open timer of (name, key).
func timerSubjectOf(name, key string) string {
	return timerSubject + name + "." + keyHash(key)
}

// timers starts, settles and fires expectation timers. Its zero value is not
// usable; newTimers builds one. A nil *timers does nothing (the relay runs
// without expectation timers only in tests of other parts).
type timers struct {
	store   *jsStore
	stream  jetstream.Stream
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	ackWait time.Duration
	// inject routes and stores one missed event (ingestHandler.injectMissed).
	inject func(ctx context.Context, rec timerRecord, body []byte) (duplicate bool, err error)
	// known reports whether an expectation is configured now.
	known func(name string) bool

	cc jetstream.ConsumeContext
	// mu orders handle's Add before stop's Wait: the consumer may still
	// hand over a message it had buffered after Stop.
	mu       sync.Mutex
	stopping bool
	inflight sync.WaitGroup
	slots    chan struct{} // bounds the fired timers handled at once
	stopCtx  context.Context
	stopNow  context.CancelFunc
}

// firedConcurrency is how many fired timers one relay turns into missed
// events at once.
const firedConcurrency = 64

// ensureExpectStream creates or updates the timer stream: work-queue
// retention (a fired timer leaves once the relay has stored its missed
// event; an open timer, read by no consumer, stays until it fires or is
// settled), message scheduling, and the events stream's duplicate window,
// so that the same after event retried by its sender does not restart its
// timer.
func (s *jsStore) ensureExpectStream(ctx context.Context) (jetstream.Stream, error) {
	replicas := 1
	if s.cfg.URL != "" {
		replicas = s.cfg.Replicas
	}
	return s.ensureStream(ctx, jetstream.StreamConfig{
		Name:              expectStream,
		Description:       "expectation timers: open ones scheduled, fired ones until their missed event is stored",
		Subjects:          []string{timerSubject + ">", firedSubject + ">"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Duplicates:        s.cfg.DedupeWindow,
		AllowMsgSchedules: true,
		AllowRollup:       true,
	})
}

// start schedules the timer of hit, started by the accepted event ev. Its
// message id makes the store drop a repeat of the same after event (a
// sender's retry) instead of restarting the timer; a different after event
// with the same key replaces the timer (the schedule is one message per
// subject).
func (t *timers) start(ctx context.Context, hit rules.Hit, ev Event) error {
	rec := timerRecord{
		Expectation: hit.Expectation,
		Key:         hit.Key,
		Deadline:    hit.Deadline.UTC(),
		Source:      ev.Source,
		MsgID:       ev.MsgID,
		After:       json.RawMessage(ev.Body),
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("timer %s: %w", hit.Expectation, err)
	}
	m := &nats.Msg{Subject: timerSubjectOf(hit.Expectation, hit.Key), Data: body, Header: make(nats.Header, 3)}
	m.Header[hdrSchedule] = []string{"@at " + rec.Deadline.Format(time.RFC3339Nano)}
	m.Header[hdrScheduleTarget] = []string{firedSubject + hit.Expectation}
	m.Header[jetstream.MsgIDHeader] = []string{"start:" + ev.Source + ":" + rules.MissedID(hit.Expectation, hit.Key, ev.MsgID)}
	if _, err := t.store.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("start timer %s: %w", hit.Expectation, err)
	}
	return nil
}

// settle removes the open timer of hit, if there is one.
func (t *timers) settle(ctx context.Context, hit rules.Hit) error {
	if err := t.stream.Purge(ctx, jetstream.WithPurgeSubject(timerSubjectOf(hit.Expectation, hit.Key))); err != nil {
		return fmt.Errorf("settle timer %s: %w", hit.Expectation, err)
	}
	return nil
}

// observe starts and settles the timers of the accepted (or duplicate)
// event ev, decoded as env, under the expectations in force. An
// expectation that fails for the event is logged and touches no timer.
// The first store error is returned: the caller answers 503, the sender
// retries, and the retry (a duplicate) observes the event again. With
// storage.sync: always the changes are synced before it returns.
func (t *timers) observe(ctx context.Context, set *rules.Expectations, env *rules.Env, ev Event) error {
	if t == nil || set.Len() == 0 {
		return nil
	}
	hits, errs := set.Observe(env)
	for _, e := range errs {
		t.log.Warn("expectation failed for an event; no timer started or settled", "expectation", e.Rule, "msg_id", ev.MsgID, "event", env.Event, "err", e.Err)
	}
	for _, hit := range hits {
		var err error
		if hit.Start {
			err = t.start(ctx, hit, ev)
		} else {
			err = t.settle(ctx, hit)
		}
		if err != nil {
			return err
		}
	}
	if len(hits) > 0 && t.store.gsync != nil {
		// sync: always: the timers are on stable storage before the 200,
		// like the event (one filesystem sync shared with other requests).
		if err := t.store.gsync.wait(ctx); err != nil {
			return fmt.Errorf("sync timers: %w", err)
		}
	}
	return nil
}

// run starts turning fired timers into missed events, on the durable
// consumer every relay sharing the store shares.
func (t *timers) run(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       firedConsumer,
		Description:   "expectation timers that ran out",
		FilterSubject: firedSubject + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.ackWait,
		MaxAckPending: 2 * firedConcurrency,
	}
	var cons jetstream.Consumer
	err := t.store.retrySetup(ctx, "consumer "+firedConsumer, func(ctx context.Context) (err error) {
		cons, err = t.stream.CreateOrUpdateConsumer(ctx, cfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", firedConsumer, err)
	}
	t.slots = make(chan struct{}, firedConcurrency)
	t.stopCtx, t.stopNow = context.WithCancel(context.Background())
	t.cc, err = cons.Consume(t.handle,
		jetstream.PullMaxMessages(2*firedConcurrency),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				t.log.Debug("consume fired timers", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", firedConsumer, err)
	}
	return nil
}

// handle takes one fired timer on its own goroutine, at most
// firedConcurrency at once.
func (t *timers) handle(msg jetstream.Msg) {
	t.slots <- struct{}{}
	t.mu.Lock()
	if t.stopping {
		t.mu.Unlock()
		<-t.slots
		return // not acknowledged: handed out again after AckWait
	}
	t.inflight.Add(1)
	t.mu.Unlock()
	go func() {
		defer func() { <-t.slots; t.inflight.Done() }()
		t.fire(msg)
	}()
}

// fire turns one fired timer into its missed event and acknowledges it,
// which removes it from the store. The missed event's message id is a
// function of the timer (rules.MissedID), so a timer handed out again
// after a crash, or to a second relay, is stored once: the repeat is a
// duplicate.
func (t *timers) fire(msg jetstream.Msg) {
	var rec timerRecord
	if err := json.Unmarshal(msg.Data(), &rec); err != nil || rec.Expectation == "" {
		t.log.Error("unreadable expectation timer dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	if !t.known(rec.Expectation) {
		t.log.Warn("timer of an expectation no longer configured dropped", "expectation", rec.Expectation, "key", rec.Key)
		_ = msg.Ack()
		return
	}
	body, err := rules.NewMissed(rec.Expectation, rec.Key, rec.Deadline, rec.After).Body()
	if err != nil {
		t.log.Error("expectation timer dropped", "expectation", rec.Expectation, "key", rec.Key, "err", err)
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(t.stopCtx, publishTimeout)
	dup, err := t.inject(ctx, rec, body)
	cancel()
	if err != nil {
		t.log.Warn("missed event not stored; retrying", "expectation", rec.Expectation, "key", rec.Key, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if !dup {
		t.metrics.ExpectationsMissed.WithLabelValues(rec.Expectation).Inc()
		t.log.Info("expectation missed", "expectation", rec.Expectation, "key", rec.Key,
			"deadline", rec.Deadline, "late", t.now().Sub(rec.Deadline).String(), "after_msg_id", rec.MsgID)
	}
	_ = msg.DoubleAck(context.Background())
}

// stop stops taking fired timers and waits for those in hand, cutting
// their store writes off when ctx is done (they are handed out again at
// the next start).
func (t *timers) stop(ctx context.Context) {
	if t == nil || t.cc == nil {
		return
	}
	t.cc.Stop()
	t.mu.Lock()
	t.stopping = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.stopNow()
		<-done
	}
	t.stopNow()
}

// open counts the open timers of one expectation.
func (t *timers) open(ctx context.Context, name string) (uint64, error) {
	// The stream's info with a subject filter counts the subjects that
	// match; an offset past the end leaves the subjects themselves out of
	// the answer.
	req, _ := json.Marshal(map[string]any{"subjects_filter": timerSubject + name + ".>", "offset": 1 << 30})
	reply, err := t.store.nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+expectStream, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Total uint64 `json:"total"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return 0, err
	}
	if resp.Error != nil {
		return 0, errors.New(resp.Error.Description)
	}
	return resp.Total, nil
}

// updateGauges refreshes relay_expectations_open for the expectations in
// set.
func (t *timers) updateGauges(ctx context.Context, set *rules.Expectations) {
	if t == nil {
		return
	}
	t.metrics.ExpectationsOpen.Reset()
	for _, name := range set.Names() {
		if n, err := t.open(ctx, name); err == nil {
			t.metrics.ExpectationsOpen.WithLabelValues(name).Set(float64(n))
		}
	}
}

// injectMissed routes the missed event of rec (body, see rules.Missed) with
// the rules in force and stores it as an event of the after event's source,
// received now, with the deterministic id rules.MissedID.
func (h *ingestHandler) injectMissed(ctx context.Context, rec timerRecord, body []byte) (bool, error) {
	ev := Event{
		Source:     rec.Source,
		MsgID:      rules.MissedID(rec.Expectation, rec.Key, rec.MsgID),
		Body:       body,
		ReceivedAt: h.now(),
	}
	env, err := rules.NewMissedEnv(body, rules.Meta{Source: ev.Source, MsgID: ev.MsgID, ReceivedAt: ev.ReceivedAt})
	if err != nil {
		return false, err
	}
	matched := h.route(h.routes.Load(), env, &ev)
	dup, err := h.store.Append(ctx, ev)
	if err != nil {
		return false, err
	}
	if !dup {
		for _, name := range matched {
			h.metrics.RuleMatches.WithLabelValues(name).Inc()
		}
	}
	return dup, nil
}

// ExpectationWarnings returns what relay check warns about the config's
// expectations, one line each: an expect that no event type of the catalog
// (rules.KnownEvents) satisfies, so that every timer would be missed. A
// warning, not an error: Recall may send types the catalog does not know.
func ExpectationWarnings(cfg *Config) []string {
	never := cfg.ExpectSet.NeverExpected()
	var out []string
	for i, sp := range cfg.Expectations {
		if slices.Contains(never, sp.Name) {
			out = append(out, fmt.Sprintf("expectations[%d] (%s).expect: matches none of the %d known event types (one sample of each, with each documented sub_code): every timer it starts would be missed",
				i, sp.Name, len(rules.KnownEvents())))
		}
	}
	return out
}

// startTimers opens the timer stream, hands ingest the timers and starts
// turning fired timers into missed events: those that ran out while no
// relay was running are injected now.
func (s *Server) startTimers(ctx context.Context, cfg *Config) error {
	stream, err := s.store.ensureExpectStream(ctx)
	if err != nil {
		return err
	}
	t := &timers{
		store:   s.store,
		stream:  stream,
		log:     s.log,
		metrics: s.metrics,
		now:     s.opts.Now,
		ackWait: cfg.Storage.AckWait,
		inject:  s.ingest.injectMissed,
		known: func(name string) bool {
			_, ok := s.ingest.routes.Load().expect.Within(name)
			return ok
		},
	}
	s.ingest.timers = t
	if err := t.run(ctx); err != nil {
		return err
	}
	s.timers = t
	for _, w := range ExpectationWarnings(cfg) {
		s.log.Warn(w)
	}
	return nil
}
