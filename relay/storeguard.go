package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStoreFull is returned by Append while what the store holds is at
// storage.max_bytes and none of it may be given up: undelivered events,
// dead letters and the ids of the dedupe window.
var ErrStoreFull = errors.New("store full")

// The store guard keeps what the store holds within storage.history and
// storage.max_bytes. Once a second it:
//
//   - trims the events stream of the events received before
//     storage.history, but never past the oldest event some sink has not
//     yet delivered or dead-lettered (safeSeq);
//   - when the store holds more than evictAbove of max_bytes, trims the
//     oldest delivered events early until it holds evictTo of it, counting
//     them in relay_history_evicted_total (first a range up to the oldest
//     undelivered event, then, past it, the events every sink they were
//     routed to has settled, one at a time);
//   - before it trims an event received inside the dedupe window, records
//     its id in RELAY_IDS (history.go), so that it stays a duplicate;
//   - marks the store full when it still holds fullAt of max_bytes (all of
//     it undelivered events, dead letters and dedupe ids, or it would have
//     been trimmed), and not full once it holds less than roomAgain of it:
//     while full, Append refuses new events and the readiness check fails,
//     naming the reason.
//
// Between two rounds, Append takes each event's cost out of the room the
// last round left below fullAt (admit), and asks for a round at once when
// it runs out: the store cannot outgrow the limit between rounds. An event
// that still does not fit after that round marks the store full.
//
// In embedded mode the limit is lower when the disk of storage.dir has less
// room than max_bytes allows (capBytes): a full disk is handled the same
// way, before the embedded server's writes fail. If they fail all the same
// (something else filled the disk), nats-server's file store refuses every
// later write until it restarts: when Append has failed for stuckAfter, or
// the server has shut its store down, the guard reports it and the relay
// exits, for a restart to recover it.
const (
	evictAbove = 0.90
	evictTo    = 0.80
	fullAt     = 0.95
	roomAgain  = 0.90
	// deleteScan bounds the events one pass looks at one by one.
	deleteScan = 20000
)

type storeGuard struct {
	store   *jsStore
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	every   time.Duration
	// failed is told, once, that the embedded store has stopped.
	failed func(error)

	evicting  bool // an eviction episode is under way (logged once)
	full      bool // the store is full (logged once)
	loggedErr bool
}

// startGuard runs the store guard until ctx is done. failed is told if the
// embedded store stops.
func (s *jsStore) startGuard(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, m *Metrics, now func() time.Time, failed func(error)) {
	g := &storeGuard{store: s, log: log.With("component", "store"), metrics: m, now: now, every: time.Second, failed: failed}
	m.StoreMaxBytes.Set(float64(s.cfg.MaxBytes))
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(g.every)
		defer t.Stop()
		for {
			g.pass(ctx)
			done := make(chan struct{})
			close(*s.passed.Swap(&done))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-s.kick:
			}
		}
	}()
}

// storeUsage is what the relay's streams hold.
type storeUsage struct {
	bytes  uint64
	events *jetstream.StreamInfo
}

func (s *jsStore) usage(ctx context.Context) (storeUsage, error) {
	var u storeUsage
	for _, st := range []jetstream.Stream{s.events, s.dead, s.history.ids, s.history.trail} {
		info, err := st.Info(ctx)
		if err != nil {
			return u, err
		}
		u.bytes += info.State.Bytes
		if info.Config.Name == eventsStream {
			u.events = info
		}
	}
	return u, nil
}

// errStoreStopped is reported when the embedded JetStream server has shut
// its store down, which it does when the disk is full: it stays down until
// the process starts again.
var errStoreStopped = errors.New("the embedded store has stopped (disk full?); a restart recovers it, with every acknowledged event")

// stuckAfter is how long Append may fail without a break before the
// embedded store is taken for stuck: nats-server's file store refuses every
// write after one has failed (a full disk), until it is restarted.
const stuckAfter = 30 * time.Second

// pass is one round of the guard.
func (g *storeGuard) pass(ctx context.Context) {
	if ns := g.store.ns; ns != nil && g.failed != nil {
		failing := g.store.failingSince.Load()
		switch {
		case !ns.JetStreamEnabled() && ns.Running():
			g.failed(errStoreStopped)
			g.failed = nil
			return
		case failing != 0 && g.now().Sub(time.Unix(0, failing)) >= stuckAfter:
			g.failed(fmt.Errorf("every write to the embedded store has failed for %s; a restart recovers it, with every acknowledged event", stuckAfter))
			g.failed = nil
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := g.trim(ctx); err != nil && ctx.Err() == nil {
		if !g.loggedErr {
			g.log.Warn("cannot check or trim the store; will retry", "err", err)
		}
		g.loggedErr = true
		return
	}
	g.loggedErr = false
}

// diskReserve is the room the guard leaves free on the disk of
// storage.dir: 64 MiB, or a tenth of a smaller disk. The store's files take
// more than the bytes it counts (indexes, deleted messages not yet
// compacted away).
func diskReserve(total uint64) uint64 { return min(64<<20, total/10) }

// capBytes is what the store may hold now: storage.max_bytes, or less when
// the disk of storage.dir has less room (what the store holds plus the
// disk's free space, less diskReserve). disk reports which one.
func (g *storeGuard) capBytes(used uint64) (limit float64, disk bool) {
	limit = float64(g.store.cfg.MaxBytes)
	if g.store.cfg.URL != "" || g.store.cfg.Dir == "" {
		return limit, false
	}
	free, total, ok := diskSpace(g.store.cfg.Dir)
	if !ok {
		return limit, false
	}
	room := float64(used) + float64(free) - float64(diskReserve(total))
	if limit == 0 || room < limit {
		return max(room, 1), true
	}
	return limit, false
}

func (g *storeGuard) trim(ctx context.Context) error {
	s := g.store
	u, err := s.usage(ctx)
	if err != nil {
		return err
	}
	limit, disk := g.capBytes(u.bytes)
	floors, err := s.sinkFloors(ctx)
	if err != nil {
		return err
	}
	safe := floors.safeSeq(u.events)
	// By age.
	if n, err := g.trimOlderThan(ctx, u.events, safe); err != nil {
		return err
	} else if n > 0 {
		if err := g.trimTrail(ctx); err != nil {
			return err
		}
		if u, err = s.usage(ctx); err != nil {
			return err
		}
	}
	// By size: above evictAbove, or when an event did not fit.
	wanted := float64(s.wanted.Swap(0))
	if limit > 0 && (float64(u.bytes) > evictAbove*limit || fullAt*limit-float64(u.bytes) < wanted) {
		if !g.evicting {
			g.log.Warn("store nearly full: the oldest delivered events leave history early",
				"bytes", u.bytes, "limit", uint64(limit), "disk", disk, "history_events", u.events.State.Msgs)
			g.evicting = true
		}
		if err := g.evict(ctx, u, floors, safe, uint64(max(float64(u.bytes)-evictTo*limit, wanted))); err != nil {
			return err
		}
		if err := g.trimTrail(ctx); err != nil {
			return err
		}
		if u, err = s.usage(ctx); err != nil {
			return err
		}
	} else if g.evicting && float64(u.bytes) < evictTo*limit {
		g.log.Info("store below its eviction mark: history is kept for storage.history again", "bytes", u.bytes)
		g.evicting = false
	}
	g.metrics.StoreBytes.Set(float64(u.bytes))
	g.metrics.HistoryEvents.Set(float64(u.events.State.Msgs))
	if limit, disk = g.capBytes(u.bytes); limit > 0 {
		refused := s.refused.Swap(false)
		g.setFull(refused || float64(u.bytes) >= fullAt*limit, float64(u.bytes) < roomAgain*limit, u.bytes, uint64(limit), disk)
		s.room.Store(int64(fullAt*limit) - int64(u.bytes))
	}
	return nil
}

// setFull marks the store full or not, logging each change.
func (g *storeGuard) setFull(full, room bool, bytes, limit uint64, disk bool) {
	switch {
	case full:
		g.store.full.Store(true)
		if !g.full {
			g.log.Error("store full: refusing new events (503) until deliveries free space; only undelivered events, dead letters and dedupe ids are left",
				"bytes", bytes, "limit", limit, "disk", disk)
		}
		g.full = true
	case room && g.store.full.Load():
		g.store.full.Store(false)
		if g.full {
			g.log.Info("store has room again: accepting events", "bytes", bytes)
		}
		g.full = false
	}
}

// sinkFloor is how far a sink's consumer has settled the events stream.
type sinkFloor struct {
	ackFloor uint64 // every event routed to the sink up to here is settled
	next     uint64 // the oldest event it may still have to settle; 0: none
}

// sinkFloors maps each consumer of the events stream (every sink of every
// relay on the store, and the queues of removed sinks not yet drained) to
// its floor.
type sinkFloors map[string]sinkFloor

func (s *jsStore) sinkFloors(ctx context.Context) (sinkFloors, error) {
	floors := sinkFloors{}
	lister := s.events.ListConsumers(ctx)
	for info := range lister.Info() {
		f := sinkFloor{ackFloor: info.AckFloor.Stream}
		switch {
		case info.NumAckPending > 0:
			f.next = info.AckFloor.Stream + 1
		case info.NumPending > 0:
			f.next = info.Delivered.Stream + 1
		}
		floors[info.Name] = f
	}
	return floors, lister.Err()
}

// safeSeq is the sequence the events stream may be trimmed up to (not
// including): the oldest event some consumer may still have to settle, or
// one past the last event.
func (f sinkFloors) safeSeq(events *jetstream.StreamInfo) uint64 {
	safe := events.State.LastSeq + 1
	for _, fl := range f {
		if fl.next != 0 {
			safe = min(safe, fl.next)
		}
	}
	return safe
}

// settled reports whether every sink m was routed to has settled it, as far
// as the sinks' ack floors tell (an event settled above its sink's floor
// counts as not).
func (f sinkFloors) settled(m *storedMsg) bool {
	for _, sink := range sinksOf(m) {
		if fl, ok := f[sinkConsumerName(sink)]; ok && m.Seq > fl.ackFloor {
			return false
		}
	}
	return true
}

// sinksOf lists the sinks a message of the events stream is queued for: the
// sinks its subject names, its route's for an event routed to more sinks
// than a subject names, a replay's one sink.
func sinksOf(m *storedMsg) []string {
	switch {
	case strings.HasPrefix(m.Subject, replaySubject):
		return []string{m.Subject[len(replaySubject):]}
	case strings.HasPrefix(m.Subject, eventsSubject):
		return slices.Collect(maps.Keys(parseRoute(m.Header)))
	case strings.HasPrefix(m.Subject, routedSubject):
		return strings.Split(m.Subject[len(routedSubject):], ".")[1:] // after the source
	}
	return nil
}

// trimOlderThan drops the events received before storage.history, below
// safe, and returns how many it dropped.
func (g *storeGuard) trimOlderThan(ctx context.Context, events *jetstream.StreamInfo, safe uint64) (uint64, error) {
	if events.State.Msgs == 0 {
		return 0, nil
	}
	cut := safe
	m, err := g.store.directGet(ctx, eventsStream, 0, g.now().Add(-g.store.cfg.History))
	switch {
	case errors.Is(err, ErrNotFound): // every event is older
	case err != nil:
		return 0, err
	default:
		cut = min(cut, m.Seq)
	}
	return g.dropBelow(ctx, events, cut)
}

// dropBelow drops every event below seq, recording first the ids of those
// inside the dedupe window.
func (g *storeGuard) dropBelow(ctx context.Context, events *jetstream.StreamInfo, seq uint64) (uint64, error) {
	if seq <= events.State.FirstSeq {
		return 0, nil
	}
	if err := g.recordWindowIDs(ctx, events.State.FirstSeq, seq-1); err != nil {
		return 0, err
	}
	if err := g.store.events.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		return 0, err
	}
	info, err := g.store.events.Info(ctx)
	if err != nil {
		return 0, err
	}
	n := events.State.Msgs - min(events.State.Msgs, info.State.Msgs)
	*events = *info
	return n, nil
}

// recordWindowIDs records in RELAY_IDS the ids of the events from lo to hi
// received inside the dedupe window, a batch at a time.
func (g *storeGuard) recordWindowIDs(ctx context.Context, lo, hi uint64) error {
	s := g.store
	first, err := s.directGet(ctx, eventsStream, 0, g.now().Add(-s.cfg.DedupeWindow))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil // every event is older than the window
	case err != nil:
		return err
	case first.Seq > hi:
		return nil
	}
	var batch []*storedMsg
	var recErr error
	err = s.scanForward(ctx, eventsStream, max(lo, first.Seq), hi, func(m *storedMsg) bool {
		if isEventSubject(m.Subject) {
			batch = append(batch, m)
		}
		if len(batch) == scanChunk {
			recErr, batch = s.recordIDs(ctx, batch), batch[:0]
		}
		return recErr == nil
	})
	if err == nil {
		err = recErr
	}
	if err != nil {
		return err
	}
	return s.recordIDs(ctx, batch)
}

// trailMargin is how much earlier than the oldest event left in history
// the trail is kept: a replay's records are keyed by an older event.
const trailMargin = time.Minute

// trimTrail drops the trail records written before the oldest event left in
// history was received (less trailMargin): every older event has left
// history, settled.
func (g *storeGuard) trimTrail(ctx context.Context) error {
	s := g.store
	first, err := s.directGet(ctx, eventsStream, 1, time.Time{})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	m, err := s.directGet(ctx, trailStream, 0, receivedAt(first.Header, first.Time).Add(-trailMargin))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	info, err := s.history.trail.Info(ctx)
	if err != nil || m.Seq <= info.State.FirstSeq {
		return err
	}
	return s.history.trail.Purge(ctx, jetstream.WithPurgeSequence(m.Seq))
}

// evict gives up about free bytes of history, oldest delivered events
// first: below safe by range, past it event by event.
func (g *storeGuard) evict(ctx context.Context, u storeUsage, floors sinkFloors, safe, free uint64) error {
	events := u.events
	if events.State.Msgs == 0 {
		return nil
	}
	per := max(events.State.Bytes/events.State.Msgs, 1)
	want := free/per + 1
	n, err := g.dropBelow(ctx, events, min(safe, events.State.FirstSeq+want))
	if err != nil {
		return err
	}
	g.metrics.HistoryEvicted.Add(float64(n))
	if n >= want || safe > events.State.LastSeq {
		return nil
	}
	// An old undelivered event holds the range back: delete the settled
	// events after it one by one.
	deleted, err := g.deleteSettled(ctx, floors, safe, want-n)
	g.metrics.HistoryEvicted.Add(float64(deleted))
	return err
}

// deleteSettled deletes up to n events from seq on that every sink they were
// routed to has settled, recording first the ids of those inside the
// dedupe window.
func (g *storeGuard) deleteSettled(ctx context.Context, floors sinkFloors, seq, n uint64) (uint64, error) {
	s := g.store
	info, err := s.events.Info(ctx)
	if err != nil {
		return 0, err
	}
	var victims []*storedMsg
	scanned := 0
	err = s.scanForward(ctx, eventsStream, seq, info.State.LastSeq, func(m *storedMsg) bool {
		scanned++
		if floors.settled(m) {
			victims = append(victims, &storedMsg{Seq: m.Seq, Subject: m.Subject, Time: m.Time, Header: m.Header})
		}
		return uint64(len(victims)) < n && scanned < deleteScan
	})
	if err != nil {
		return 0, err
	}
	window := g.now().Add(-s.cfg.DedupeWindow)
	var ids []*storedMsg
	for _, v := range victims {
		if isEventSubject(v.Subject) && !receivedAt(v.Header, v.Time).Before(window) {
			ids = append(ids, v)
		}
	}
	if err := s.recordIDs(ctx, ids); err != nil {
		return 0, err
	}
	var done uint64
	for _, v := range victims {
		if err := s.events.DeleteMsg(ctx, v.Seq); err != nil && !isNotFound(err) {
			return done, err
		}
		done++
	}
	return done, nil
}

// storeFull reports whether Append refuses events for want of room.
func (s *jsStore) storeFull() bool { return s.full.Load() }

// eventCost is what Append counts against the room for an event of n body
// bytes: the event with its headers and its trail lines, with a margin.
func eventCost(n int) int64 { return int64(n) + 1024 }

// admit takes an event of n body bytes out of the room the guard left, and
// reports whether it fits. When it does not, it asks the guard for a round
// at once, which may make room by trimming history, and waits for it
// (bounded by ctx and admitWait) before it answers.
func (s *jsStore) admit(ctx context.Context, n int) bool {
	if s.full.Load() {
		return false
	}
	cost := eventCost(n)
	if s.room.Add(-cost) >= 0 {
		return true
	}
	done := s.passed.Load()
	s.wanted.Store(cost) // the round makes at least this much room if it can
	select {
	case s.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(admitWait)
	defer t.Stop()
	select {
	case <-*done:
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
	if !s.full.Load() && s.room.Add(-cost) >= 0 {
		return true
	}
	s.refused.Store(true) // for the next round, which logs it
	s.full.Store(true)
	return false
}

// admitWait bounds how long an event waits for the guard's round when the
// room has run out.
const admitWait = 2 * time.Second
