package relay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// History: the events stream itself is the history. It keeps every
// accepted event (limits retention) until the store guard trims it
// (storeguard.go): after storage.history, or earlier when the store nears
// storage.max_bytes, and never an event some sink has not yet delivered or
// dead-lettered. So keeping history costs no write beyond the one that
// stores the event, and JetStream's own duplicate window, which a restarted
// server rebuilds from the messages it still stores, covers every event
// still in history. Beside it (see docs/design.md):
//
//   - RELAY_IDS (limits, kept for the dedupe window): the ids of the events
//     the guard trims while they are still inside the dedupe window (only
//     when storage.history is shorter than it, or the store is nearly
//     full), one message per batch; every relay reads it into seenIDs at
//     start and follows it while it runs.
//   - RELAY_TRAIL (trail.go): per event and sink, how its delivery went,
//     keyed by the event's id.
const (
	idsStream  = "RELAY_IDS"
	idsSubject = "relay.ids"
)

// historyStreams are the stream configs of the ids and the trail for cfg.
func historyStreams(cfg StorageConfig, replicas int) []jetstream.StreamConfig {
	keep := max(cfg.History, cfg.DedupeWindow)
	return []jetstream.StreamConfig{{
		Name:        idsStream,
		Description: "the ids of events trimmed from history inside storage.dedupe_window, kept for the window",
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

// history holds the ids and trail streams, and the ids trimmed from the
// events stream inside the dedupe window.
type history struct {
	ids   jetstream.Stream
	trail jetstream.Stream
	seen  seenIDs
	// follow consumes the ids other relays (and this one) record from
	// now on; stopped by close.
	follow jetstream.ConsumeContext
}

// ensureHistory takes the ids and trail streams (historyStreams), reads
// back the ids trimmed inside the dedupe window and follows the ones
// recorded from now on.
func (s *jsStore) ensureHistory(ctx context.Context, ids, trail jetstream.Stream) error {
	h := &history{ids: ids, trail: trail}
	s.history = h
	s.trailw = newBatchWriter(s.nc)
	var next uint64
	err := s.retrySetup(ctx, "read "+idsStream, func(ctx context.Context) (err error) {
		next, err = s.loadSeen(ctx) // a new stream's direct gets may have no responder yet
		return err
	})
	if err != nil {
		return fmt.Errorf("read the ids of the dedupe window: %w", err)
	}
	return s.followSeen(ctx, next)
}

// loadSeen reads RELAY_IDS into history.seen: every id received within the
// dedupe window. It returns the sequence after the last message read.
func (s *jsStore) loadSeen(ctx context.Context) (uint64, error) {
	seq := uint64(1)
	for {
		next, err := s.directBatch(ctx, idsStream, seq, 256, func(m *storedMsg) bool {
			s.addSeen(m.Data)
			return true
		})
		if err != nil || next == 0 {
			return seq, err
		}
		seq = next
	}
}

// followSeen adds to history.seen the ids recorded in RELAY_IDS from seq
// on, by any relay of the store, as they come.
func (s *jsStore) followSeen(ctx context.Context, seq uint64) error {
	var cons jetstream.Consumer
	err := s.retrySetup(ctx, "follow "+idsStream, func(ctx context.Context) (err error) {
		cons, err = s.js.OrderedConsumer(ctx, idsStream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:   seq,
		})
		return err
	})
	if err != nil {
		return err
	}
	s.history.follow, err = cons.Consume(func(m jetstream.Msg) { s.addSeen(m.Data()) })
	return err
}

// addSeen adds the ids of one RELAY_IDS message still inside the dedupe
// window.
func (s *jsStore) addSeen(data []byte) {
	cutoff := time.Now().Add(-s.cfg.DedupeWindow).UnixNano()
	forEachID(data, func(at int64, key string) {
		if at >= cutoff {
			s.history.seen.add(key, at)
		}
	})
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

// idsMessageBytes bounds one RELAY_IDS message.
const idsMessageBytes = 256 << 10

// recordIDs stores the ids of events in RELAY_IDS (waiting for the store),
// with the time each was received, before they leave the events stream
// inside the dedupe window.
func (s *jsStore) recordIDs(ctx context.Context, events []*storedMsg) error {
	var b []byte
	flush := func() error {
		if len(b) == 0 {
			return nil
		}
		_, err := s.js.Publish(ctx, idsSubject, b)
		b = nil
		return err
	}
	for _, m := range events {
		key := m.Header.Get(nats.MsgIdHdr)
		if key == "" {
			continue
		}
		b = strconv.AppendInt(b, receivedAt(m.Header, m.Time).UnixNano(), 10)
		b = append(b, ' ')
		b = append(b, key...)
		b = append(b, '\n')
		if len(b) >= idsMessageBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// seenBefore reports whether source's msgID was trimmed from the events
// stream inside the dedupe window (the stream's own window then no longer
// knows it after a restart).
func (s *jsStore) seenBefore(source, msgID string) bool {
	return s.history != nil && s.history.seen.has(source, msgID)
}

// receivedAt is an event's Relay-Received-At, or else fallback.
func receivedAt(h nats.Header, fallback time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, h.Get(hdrReceivedAt)); err == nil {
		return t
	}
	return fallback
}

// expireSeen drops, once a minute, the ids that have left the dedupe
// window.
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
			}
		}
	}()
}
