package relay

import (
	"bufio"
	"bytes"
	"context"
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
)

// History: every accepted event is kept for storage.history once it is
// delivered, and its id for storage.dedupe_window, in streams of their own
// beside the events stream (see docs/design.md):
//
//   - RELAY_HISTORY (limits retention): a copy of each event, made by the
//     history writer from the events stream, with the event's id (its
//     sequence in the events stream) in Relay-Events-Seq. The relay trims
//     it (storeguard.go), never past an event that is still undelivered.
//   - RELAY_IDS (limits, kept for the dedupe window): the ids the writer
//     copied, one message per batch, read back at start into seenIDs.
//   - RELAY_TRAIL (trail.go): per event and sink, how its delivery went,
//     keyed by the event's id.
//
// The writer reads the events stream through a durable consumer of its own,
// so the events stream keeps an event, delivered or routed nowhere, until
// its copy and its id are stored: a crash loses neither.
const (
	historyStream   = "RELAY_HISTORY"
	idsStream       = "RELAY_IDS"
	historySubject  = "relay.history." // + source
	idsSubject      = "relay.ids"
	historyConsumer = "relay-history"
	hdrEventsSeq    = "Relay-Events-Seq" // a history copy's id: its sequence in the events stream
)

// historyStreams are the stream configs of history, the ids and the trail
// for cfg.
func historyStreams(cfg StorageConfig, replicas int) []jetstream.StreamConfig {
	keep := max(cfg.History, cfg.DedupeWindow)
	return []jetstream.StreamConfig{{
		Name:        historyStream,
		Description: "every accepted event, kept for storage.history once delivered (the relay trims it)",
		Subjects:    []string{historySubject + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  time.Minute, // copies carry no message id: the writer's order makes them idempotent
		AllowDirect: true,
	}, {
		Name:        idsStream,
		Description: "the ids of accepted events, kept for storage.dedupe_window",
		Subjects:    []string{idsSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      cfg.DedupeWindow,
		Duplicates:  min(time.Minute, cfg.DedupeWindow),
		AllowDirect: true,
	}, {
		Name:        trailStream,
		Description: "per event and sink, how its delivery went; expires with history",
		Subjects:    []string{trailSubject + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      keep,
		Duplicates:  min(time.Minute, keep),
		AllowDirect: true,
	}}
}

// history holds the history streams and the ids accepted before this
// process started.
type history struct {
	hist  jetstream.Stream
	ids   jetstream.Stream
	trail jetstream.Stream
	seen  seenIDs

	// lastCopied is the id of the newest event the writer has copied;
	// newer ones are read from the events stream.
	lastCopied atomic.Uint64
}

// ensureHistory creates or updates the history streams and reads back the
// ids accepted within the dedupe window.
func (s *jsStore) ensureHistory(ctx context.Context, replicas int) error {
	h := &history{}
	var sts []jetstream.Stream
	for _, cfg := range historyStreams(s.cfg, replicas) {
		st, err := s.ensureStream(ctx, cfg)
		if err != nil {
			return err
		}
		sts = append(sts, st)
	}
	h.hist, h.ids = sts[0], sts[1]
	h.trail = sts[2]
	s.history = h
	if err := s.loadSeen(ctx); err != nil {
		return fmt.Errorf("read the ids of the dedupe window: %w", err)
	}
	last, err := s.lastHistoryEvent(ctx)
	if err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	h.lastCopied.Store(last)
	return nil
}

// loadSeen reads RELAY_IDS into history.seen: every id received within the
// dedupe window.
func (s *jsStore) loadSeen(ctx context.Context) error {
	cutoff := time.Now().Add(-s.cfg.DedupeWindow).UnixNano()
	seq := uint64(1)
	for {
		next, err := s.directBatch(ctx, idsStream, seq, 256, func(m *storedMsg) bool {
			forEachID(m.Data, func(at int64, key string) {
				if at >= cutoff {
					s.history.seen.add(key, at)
				}
			})
			return true
		})
		if err != nil || next == 0 {
			return err
		}
		seq = next
	}
}

// forEachID calls fn for every line "<received, Unix ns> <source>:<msg id>"
// of an ids message.
func forEachID(data []byte, fn func(at int64, key string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		at, key, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(at, 10, 64)
		if ok && err == nil && key != "" {
			fn(n, key)
		}
	}
}

// lastHistoryEvent is the id of the newest event in history, 0 if none.
func (s *jsStore) lastHistoryEvent(ctx context.Context) (uint64, error) {
	info, err := s.history.hist.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	m, err := s.history.hist.GetMsg(ctx, info.State.LastSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, _ := strconv.ParseUint(m.Header.Get(hdrEventsSeq), 10, 64)
	return n, nil
}

// seenBefore reports whether source's msgID was accepted before this
// process started, within the dedupe window.
func (s *jsStore) seenBefore(source, msgID string) bool {
	return s.history != nil && s.history.seen.has(source, msgID)
}

// historyWriter copies each event of the events stream into history and its
// id into RELAY_IDS, then acknowledges it, in order, a batch at a time.
// Its consumer's deliveries say how far there is to copy and acknowledge
// what was copied (see copy).
type historyWriter struct {
	store *jsStore
	log   *slog.Logger
	load  *ingestLoad
	cons  jetstream.Consumer

	cancel context.CancelFunc
	done   chan struct{}
}

// writerBatch is how many deliveries of its consumer the writer takes per
// round (it copies the events up to the newest of them); busyBatch while
// ingest is busy.
const (
	writerBatch = 512
	busyBatch   = 16
)

// startHistoryWriter creates the writer's consumer (before any event can be
// accepted: from then on the events stream keeps every event until the
// writer has copied it) and starts copying.
func (s *jsStore) startHistoryWriter(ctx context.Context, load *ingestLoad, log *slog.Logger) (*historyWriter, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        historyConsumer,
		Description:    "copies every accepted event into history",
		FilterSubjects: []string{routedSubject + ">", eventsSubject + ">"},
		AckPolicy:      jetstream.AckAllPolicy,
		AckWait:        30 * time.Second,
		MaxDeliver:     -1,
		MaxAckPending:  4 * writerBatch,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		HeadersOnly:    true, // the writer reads the events from the stream (see copy)
	}
	cons, err := s.ensureConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("history consumer: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &historyWriter{store: s, log: log.With("component", "history"), load: load, cons: cons, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.run(wctx)
	}()
	return w, nil
}

// stop ends the writer after the round in progress.
func (w *historyWriter) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

func (w *historyWriter) run(ctx context.Context) {
	failing := false
	for ctx.Err() == nil {
		n := writerBatch
		if eased := w.load.busy(); eased != nil {
			// Give way to a busy ingest as the deliveries do: wait, then
			// copy only a few events if it is still busy.
			w.load.wait(ctx, eased)
			if w.load.busy() != nil {
				n = busyBatch
			}
		}
		msgs, err := w.fetch(ctx, n)
		if err == nil && len(msgs) > 0 {
			err = w.copy(ctx, msgs)
			if err != nil {
				for _, m := range msgs {
					_ = m.Nak()
				}
			}
		}
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				w.log.Error("cannot copy events into history; will retry (they stay in the events stream)", "err", err)
			}
			failing = true
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		case err == nil && failing:
			failing = false
			w.log.Info("copying events into history again")
		}
	}
}

// fetch returns up to n deliveries: those available now, or else the first
// to arrive within a second and those available with it.
func (w *historyWriter) fetch(ctx context.Context, n int) ([]jetstream.Msg, error) {
	msgs, err := collect(w.cons.FetchNoWait(n))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	first, err := collect(w.cons.Fetch(1, jetstream.FetchContext(fctx)))
	if err != nil || len(first) == 0 {
		if ctx.Err() == nil && (err == nil || errors.Is(err, context.DeadlineExceeded)) {
			return nil, nil
		}
		return nil, err
	}
	if n == 1 {
		return first, nil
	}
	rest, err := collect(w.cons.FetchNoWait(n - 1))
	return append(first, rest...), err
}

// collect reads a fetched batch; running out of time is no error.
func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	return msgs, nil
}

// copy copies every event of the events stream after lastCopied up to the
// newest of msgs, then acknowledges msgs (AckAll: every earlier delivery
// too). It reads the events themselves from the stream, in order: a pull
// consumer's deliveries can be lost in transit (a fetch that ended before
// they arrived) and come back out of order after the ack wait, and copies
// must stay in order and complete. The consumer's deliveries are only the
// handles that acknowledge: the events stream keeps every event until the
// writer has acknowledged it. The batch's ids are stored first: a crash
// after the copies but before the ids would skip them at the next start.
func (w *historyWriter) copy(ctx context.Context, msgs []jetstream.Msg) error {
	h := w.store.history
	last := h.lastCopied.Load()
	var newest uint64
	var handle jetstream.Msg
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.Sequence.Stream > newest {
			newest, handle = md.Sequence.Stream, m
		}
	}
	if newest > last {
		var events []*storedMsg
		err := w.store.scanForward(ctx, eventsStream, last+1, newest, func(m *storedMsg) bool {
			if strings.HasPrefix(m.Subject, routedSubject) || strings.HasPrefix(m.Subject, eventsSubject) {
				events = append(events, m)
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if err := w.store.storeCopies(ctx, events); err != nil {
			return err
		}
		h.lastCopied.Store(newest)
	}
	return handle.Ack()
}

// storeCopies stores the ids of events in RELAY_IDS, then their copies in
// history, and waits for the store.
func (s *jsStore) storeCopies(ctx context.Context, events []*storedMsg) error {
	if len(events) == 0 {
		return nil
	}
	var ids bytes.Buffer
	for _, m := range events {
		fmt.Fprintf(&ids, "%d %s\n", receivedAt(m.Header, m.Time).UnixNano(), m.Header.Get(jetstream.MsgIDHeader))
	}
	if _, err := s.js.Publish(ctx, idsSubject, ids.Bytes(), jetstream.WithExpectStream(idsStream)); err != nil {
		return fmt.Errorf("store ids: %w", err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for _, m := range events {
		f, err := s.js.PublishMsgAsync(historyCopy(m), jetstream.WithExpectStream(historyStream))
		if err != nil {
			return fmt.Errorf("copy event %d: %w", m.Seq, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("copy event: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// historyCopy is the history message of the event m of the events stream.
func historyCopy(m *storedMsg) *nats.Msg {
	source, msgID := eventIdentity(m.Header)
	c := &nats.Msg{Subject: historySubject + source, Data: m.Data, Header: make(nats.Header, 6)}
	c.Header[hdrSource] = []string{source}
	c.Header[hdrMsgID] = []string{msgID}
	c.Header[hdrEventsSeq] = []string{strconv.FormatUint(m.Seq, 10)}
	for _, k := range []string{hdrReceivedAt, hdrEvent, hdrRoute} {
		if v := m.Header.Values(k); len(v) > 0 {
			c.Header[k] = v
		}
	}
	return c
}

// receivedAt is an event's Relay-Received-At, or else fallback.
func receivedAt(h nats.Header, fallback time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, h.Get(hdrReceivedAt)); err == nil {
		return t
	}
	return fallback
}

// expireSeen drops, once a minute, the ids read at start that have left the
// dedupe window.
func (s *jsStore) expireSeen(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.history.seen.expire(now.Add(-s.cfg.DedupeWindow))
				if s.history.seen.len() == 0 {
					return
				}
			}
		}
	}()
}
