package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
//   - trims history of the events received before storage.history, but
//     never past the oldest event still undelivered (it is in the events
//     stream until every sink it was routed to has delivered or
//     dead-lettered it), nor the newest copy (the history writer resumes
//     after it);
//   - when the store holds more than evictAbove of max_bytes, trims the
//     oldest delivered events from history early until it holds evictTo of
//     it, counting them in relay_history_evicted_total (first a range, then,
//     past an old undelivered event, one copy at a time);
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
//
// Ids stay for the dedupe window whatever history gives up: they are in
// RELAY_IDS and in the events stream's own window.
const (
	evictAbove = 0.90
	evictTo    = 0.80
	fullAt     = 0.95
	roomAgain  = 0.90
	// deleteScan bounds the copies one pass looks at one by one.
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
	bytes       uint64
	historyMsgs uint64
	hist        *jetstream.StreamInfo
}

func (s *jsStore) usage(ctx context.Context) (storeUsage, error) {
	var u storeUsage
	for _, st := range []jetstream.Stream{s.events, s.dead, s.history.hist, s.history.ids} {
		info, err := st.Info(ctx)
		if err != nil {
			return u, err
		}
		u.bytes += info.State.Bytes
		if info.Config.Name == historyStream {
			u.hist, u.historyMsgs = info, info.State.Msgs
		}
	}
	info, err := s.history.trail.Info(ctx)
	if err != nil {
		return u, err
	}
	u.bytes += info.State.Bytes
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
	safe, err := g.safeSeq(ctx, u.hist)
	if err != nil {
		return err
	}
	// By age.
	if n, err := g.trimOlderThan(ctx, u.hist, safe); err != nil {
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
				"bytes", u.bytes, "limit", uint64(limit), "disk", disk, "history_events", u.historyMsgs)
			g.evicting = true
		}
		if err := g.evict(ctx, u, safe, uint64(max(float64(u.bytes)-evictTo*limit, wanted))); err != nil {
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
	g.metrics.HistoryEvents.Set(float64(u.historyMsgs))
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

// safeSeq is the history sequence history may be trimmed up to (not
// including): the copy of the oldest event still in the events stream, and
// at most the newest copy.
func (g *storeGuard) safeSeq(ctx context.Context, hist *jetstream.StreamInfo) (uint64, error) {
	safe := hist.State.LastSeq // keep the newest copy: the writer resumes after it
	oldest, err := g.store.oldestUndelivered(ctx)
	if err != nil {
		return 0, err
	}
	if oldest != 0 {
		b, err := g.store.historyLowerBound(ctx, oldest)
		if err != nil {
			return 0, err
		}
		safe = min(safe, b)
	}
	return safe, nil
}

// oldestUndelivered is the id of the oldest event the events stream still
// holds (0: none).
func (s *jsStore) oldestUndelivered(ctx context.Context) (uint64, error) {
	var oldest uint64
	for _, subj := range []string{routedSubject + ">", eventsSubject + ">"} {
		m, err := s.events.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if oldest == 0 || m.Sequence < oldest {
			oldest = m.Sequence
		}
	}
	return oldest, nil
}

// trimOlderThan drops the copies received before storage.history, below
// safe, and returns how many it dropped.
func (g *storeGuard) trimOlderThan(ctx context.Context, hist *jetstream.StreamInfo, safe uint64) (uint64, error) {
	if hist.State.Msgs == 0 {
		return 0, nil
	}
	cut := safe
	m, err := g.store.directGet(ctx, historyStream, 0, g.now().Add(-g.store.cfg.History))
	switch {
	case errors.Is(err, ErrNotFound): // every copy is older
	case err != nil:
		return 0, err
	default:
		cut = min(cut, m.Seq)
	}
	return g.purgeBelow(ctx, hist, cut)
}

// purgeBelow drops every copy below seq.
func (g *storeGuard) purgeBelow(ctx context.Context, hist *jetstream.StreamInfo, seq uint64) (uint64, error) {
	if seq <= hist.State.FirstSeq {
		return 0, nil
	}
	if err := g.store.history.hist.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		return 0, err
	}
	info, err := g.store.history.hist.Info(ctx)
	if err != nil {
		return 0, err
	}
	n := hist.State.Msgs - min(hist.State.Msgs, info.State.Msgs)
	*hist = *info
	return n, nil
}

// trailMargin is how much earlier than the oldest event left in history
// the trail is kept: events are copied nearly, not exactly, in the order
// they were received.
const trailMargin = time.Minute

// trimTrail drops the trail records written before the oldest event left in
// history was received (less trailMargin): every older event has left
// history, delivered.
func (g *storeGuard) trimTrail(ctx context.Context) error {
	s := g.store
	first, err := s.directGet(ctx, historyStream, 1, time.Time{})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	e, ok := eventFromHistory(first)
	if !ok {
		return nil
	}
	m, err := s.directGet(ctx, trailStream, 0, e.ReceivedAt.Add(-trailMargin))
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
// first, below safe by range and past it copy by copy.
func (g *storeGuard) evict(ctx context.Context, u storeUsage, safe, free uint64) error {
	hist := u.hist
	if hist.State.Msgs == 0 {
		return nil
	}
	per := max(hist.State.Bytes/hist.State.Msgs, 1)
	want := free/per + 1
	n, err := g.purgeBelow(ctx, hist, min(safe, hist.State.FirstSeq+want))
	if err != nil {
		return err
	}
	g.metrics.HistoryEvicted.Add(float64(n))
	if n >= want || safe >= hist.State.LastSeq {
		return nil
	}
	// An old undelivered event holds the range back: delete the delivered
	// copies after it one by one.
	deleted, err := g.deleteDelivered(ctx, safe, want-n)
	g.metrics.HistoryEvicted.Add(float64(deleted))
	return err
}

// deleteDelivered deletes up to n copies from seq on whose event has left
// the events stream (delivered or dead-lettered by every sink), never the
// newest copy.
func (g *storeGuard) deleteDelivered(ctx context.Context, seq, n uint64) (uint64, error) {
	s := g.store
	info, err := s.history.hist.Info(ctx)
	if err != nil {
		return 0, err
	}
	var victims []uint64
	scanned := 0
	for seq < info.State.LastSeq && uint64(len(victims)) < n && scanned < deleteScan {
		var ferr error
		next, err := s.directBatch(ctx, historyStream, seq, scanChunk, func(m *storedMsg) bool {
			scanned++
			if m.Seq >= info.State.LastSeq || uint64(len(victims)) >= n {
				return false
			}
			id, err := strconv.ParseUint(m.Header.Get(hdrEventsSeq), 10, 64)
			if err != nil {
				return true
			}
			_, err = s.events.GetMsg(ctx, id)
			switch {
			case isNotFound(err):
				victims = append(victims, m.Seq)
			case err != nil:
				ferr = err
				return false
			}
			return true
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return 0, err
		}
		if next == 0 {
			break
		}
		seq = next
	}
	var done uint64
	for _, v := range victims {
		if err := s.history.hist.DeleteMsg(ctx, v); err != nil && !isNotFound(err) {
			return done, err
		}
		done++
	}
	return done, nil
}

// storeFull reports whether Append refuses events for want of room.
func (s *jsStore) storeFull() bool { return s.full.Load() }

// eventCost is what Append counts against the room for an event of n body
// bytes: the event, its history copy and its id and trail lines, with a
// margin.
func eventCost(n int) int64 { return 2*int64(n) + 1024 }

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
