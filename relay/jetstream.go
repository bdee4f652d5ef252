package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and subject names. One stream holds accepted events; each sink reads
// it through its own durable consumer (see docs/design.md). Dead letters have
// a stream of their own.
const (
	eventsStream   = "RELAY_EVENTS"
	deadStream     = "RELAY_DEAD"
	routedSubject  = "relay.to."     // + source + "." + the sinks routed to, sorted, dot-separated (see eventSubject)
	eventsSubject  = "relay.events." // + source: an event routed to more sinks than a subject names
	replaySubject  = "relay.replay." // + sink: a replayed dead letter, for one sink only
	deadSubject    = "relay.dead."   // + sink
	consumerPrefix = "relay-sink-"   // + sink: the sink's durable consumer
	hdrMsgID       = "Relay-Msg-Id"  // the sender's message id (replays and dead letters)
	hdrSource      = "Relay-Source"  // the source's name (replays and dead letters)
	hdrReceivedAt  = "Relay-Received-At"
	hdrRoute       = "Relay-Route" // JSON {"sink": ["rule", ...]}: the routing decided at ingest

	// Dead letters carry these besides the above.
	hdrEvent        = "Relay-Event"
	hdrRules        = "Relay-Rules" // JSON list of rule names
	hdrAttempts     = "Relay-Attempts"
	hdrFirstAttempt = "Relay-First-Attempt"
	hdrLastAttempt  = "Relay-Last-Attempt"
	hdrError        = "Relay-Error"
)

// publishTimeout bounds the wait for the store's acknowledgement when the
// caller set no deadline (the nats.go JetStream client's default).
const publishTimeout = 5 * time.Second

// jsStore is the NATS JetStream store: an embedded server, or a connection to
// an existing deployment. It implements Store.
type jsStore struct {
	cfg    StorageConfig
	log    *slog.Logger
	ns     *server.Server // embedded mode only
	nc     *nats.Conn
	js     jetstream.JetStream
	events jetstream.Stream
	dead   jetstream.Stream
	// history holds the ids and trail streams (history.go); trailw
	// stores the delivery trail (trail.go).
	history *history
	trailw  *batchWriter
	// full is set by the store guard while nothing more may be stored;
	// room is what Append may still add before the guard's next look, and
	// kick asks for that look early (storeguard.go).
	full   atomic.Bool
	room   atomic.Int64
	kick   chan struct{}
	passed atomic.Pointer[chan struct{}] // closed when the guard ends a round
	// refused is set when an event did not fit even after a round; wanted
	// is the room the last event that did not fit asked for.
	refused atomic.Bool
	wanted  atomic.Int64
	// failingSince is when Append started failing (Unix ns), 0 while it
	// succeeds.
	failingSince atomic.Int64

	// gsync, with sync: always in embedded mode, makes each accepted event
	// durable before Append returns, one filesystem sync per group of
	// concurrent appends. nil when the server syncs every write itself or
	// syncs on an interval.
	gsync      *groupSync
	gsyncClose func() error
}

var _ Store = (*jsStore)(nil)

// headerRoom is what a stored message may need besides its body: the
// headers of an event, a replay or a dead letter (route, rules, times, the
// error), which oneLine and the config's names keep well under it.
const headerRoom = 64 << 10

// maxStoreMessage is the largest message NATS can be configured to carry
// (its max_payload ceiling).
const maxStoreMessage = 64 << 20

// openJetStream starts (embedded) or connects to (cluster) NATS and makes
// sure the streams exist with the configured settings. The embedded server
// carries messages of maxBody bytes plus headerRoom, so that a body at
// server.max_body_bytes is stored, and dead-lettered, whole.
func openJetStream(ctx context.Context, cfg StorageConfig, maxBody int64, log *slog.Logger) (*jsStore, error) {
	s := &jsStore{cfg: cfg, log: log, kick: make(chan struct{}, 1)}
	s.room.Store(math.MaxInt64) // until the store guard's first look
	passed := make(chan struct{})
	s.passed.Store(&passed)
	var err error
	if cfg.URL == "" {
		if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("storage dir: %w", err)
		}
		syncAlways, syncInterval := cfg.SyncAlways, cfg.SyncInterval
		if cfg.SyncAlways {
			// Group commit: JetStream's own SyncAlways fsyncs every write,
			// consumer acks and deletes included, one at a time. Only the
			// accepted event must be on disk before the 200, so the server
			// syncs on an interval and Append syncs the filesystem once for
			// all the appends waiting together.
			if syncFn, closeFn, err := fsSyncer(cfg.Dir); err == nil {
				s.gsync, s.gsyncClose = newGroupSync(syncFn), closeFn
				syncAlways, syncInterval = false, time.Second
			} else {
				log.Warn("group commit unavailable; the store fsyncs every write", "err", err)
			}
		}
		s.ns, err = server.NewServer(&server.Options{
			ServerName:        "relay-embedded",
			JetStream:         true,
			JetStreamMaxStore: jetStreamMaxStore(cfg.MaxBytes),
			StoreDir:          cfg.Dir,
			DontListen:        true,
			NoSigs:            true,
			NoLog:             true,
			SyncAlways:        syncAlways,
			SyncInterval:      syncInterval,
			MaxPayload:        int32(max(maxBody+headerRoom, 1<<20)),
		})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		s.ns.Start()
		if !s.ns.ReadyForConnections(30 * time.Second) {
			s.ns.Shutdown()
			return nil, errors.New("embedded nats: not ready after 30s")
		}
		s.nc, err = nats.Connect("", nats.InProcessServer(inProcess{s.ns}), nats.Name("relay"))
	} else {
		s.nc, err = nats.Connect(cfg.URL,
			nats.Name("relay"),
			nats.MaxReconnects(-1),
			nats.RetryOnFailedConnect(false),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("nats disconnected", "err", err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	s.js, err = jetstream.New(s.nc)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := s.ensureStreams(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// jetStreamMaxStore is the embedded server's own cap on what it stores:
// storage.max_bytes and a quarter more (64 MiB at least), for what the
// store guard lets in between two of its rounds (storeguard.go keeps the store to max_bytes and
// to the disk's room). Left to itself the server would take three quarters
// of the disk space free at start, which, after a restart on a store that
// has grown, can be less than what it already holds, and it would then
// refuse every write. 0 (no max_bytes) leaves the server's default.
func jetStreamMaxStore(maxBytes ByteSize) int64 {
	if maxBytes <= 0 {
		return 0
	}
	return int64(maxBytes) + max(int64(maxBytes)/4, 64<<20)
}

// setupTimeout bounds one setup request: a stream or consumer created,
// updated, looked up or listed. A cluster leaves some requests unanswered
// for good: those its meta leader receives during a leader election, and
// every one of two or more identical stream creations that reach it while
// the first is being placed (relays starting at the same moment; a retry
// of a slow creation). Waiting on such a request for the whole start
// budget made start-up hang and give up, so each request gets this long
// and is sent again (see retrySetup).
const setupTimeout = 2 * time.Second

// firstSetupTimeout bounds the first try of a setup request in cluster
// mode; each retry gets twice as long, up to setupTimeout. A healthy
// cluster places a stream in well under it, and the retry of a creation
// whose answer was lost finds the stream there and is answered at once, so
// relays starting together each lose this long per stream, not
// setupTimeout.
const firstSetupTimeout = 500 * time.Millisecond

// retrySetup runs op, each try bounded as setupTimeout says, until it
// succeeds or ctx is done. In cluster mode every failure is tried again
// after a backoff (peers may still be starting, electing a leader or
// placing the streams); an embedded server answers at once, so its first
// answer is final.
func (s *jsStore) retrySetup(ctx context.Context, what string, op func(context.Context) error) error {
	wait := 100 * time.Millisecond
	timeout := setupTimeout
	if s.cfg.URL != "" {
		timeout = firstSetupTimeout
	}
	for {
		tryCtx, cancel := context.WithTimeout(ctx, timeout)
		err := op(tryCtx)
		cancel()
		if err == nil || s.cfg.URL == "" {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
		s.log.Warn("nats cluster did not complete a setup request; retrying", "what", what, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
		timeout = min(2*timeout, setupTimeout)
	}
}

// ensureStreams creates the streams, or updates them to the configured
// settings.
func (s *jsStore) ensureStreams(ctx context.Context) error {
	replicas := 1
	if s.cfg.URL != "" {
		replicas = s.cfg.Replicas
	}
	events := jetstream.StreamConfig{
		Name:        eventsStream,
		Description: "accepted webhooks: the sinks' queues and history, trimmed by the relay, never before every sink routed to has delivered or dead-lettered them",
		Subjects:    []string{routedSubject + ">", eventsSubject + ">", replaySubject + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  s.cfg.DedupeWindow,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true, // listings read it in batches (directget.go)
	}
	dead := jetstream.StreamConfig{
		Name:        deadStream,
		Description: "dead letters, kept until replayed or purged",
		Subjects:    []string{deadSubject + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  10 * time.Minute,
		AllowDirect: true,
	}
	sts, err := s.ensureStreamsTogether(ctx, append([]jetstream.StreamConfig{events, dead}, historyStreams(s.cfg, replicas)...))
	if err != nil {
		return err
	}
	s.events, s.dead = sts[0], sts[1]
	return s.ensureHistory(ctx, sts[2], sts[3])
}

// ensureStreamsTogether ensures every stream of cfgs at once: in a cluster,
// relays starting together make concurrent requests for the same stream,
// some of which the cluster leaves unanswered until they time out and are
// retried, so one round of timeouts for all of them is better than one per
// stream.
func (s *jsStore) ensureStreamsTogether(ctx context.Context, cfgs []jetstream.StreamConfig) ([]jetstream.Stream, error) {
	sts := make([]jetstream.Stream, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { sts[i], errs[i] = s.ensureStream(ctx, cfg) })
	}
	wg.Wait()
	return sts, errors.Join(errs...)
}

func (s *jsStore) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var st jetstream.Stream
	err := s.retrySetup(ctx, "create stream "+cfg.Name, func(ctx context.Context) (err error) {
		st, err = s.js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil && s.cfg.URL == "" {
		err = fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return st, err
}

// ensureConsumer creates the durable consumer cfg on the events stream, or,
// if it exists, updates what may change (filters, MaxAckPending, AckWait)
// and keeps its position.
func (s *jsStore) ensureConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := s.retrySetup(ctx, "consumer "+cfg.Durable, func(ctx context.Context) (err error) {
		cons, err = s.events.Consumer(ctx, cfg.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cons, err = s.events.CreateConsumer(ctx, cfg)
		case err == nil:
			cur := cons.CachedInfo().Config
			cur.MaxAckPending, cur.AckWait = cfg.MaxAckPending, cfg.AckWait
			cur.FilterSubject, cur.FilterSubjects = cfg.FilterSubject, cfg.FilterSubjects
			cons, err = s.events.UpdateConsumer(ctx, cur)
			if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
				// nats-server applies the filters to a consumer it recovered
				// without any but leaves them out of its answer: read back.
				cons, err = s.events.Consumer(ctx, cfg.Durable)
				if err == nil && !slices.Equal(cons.CachedInfo().Config.FilterSubjects, cfg.FilterSubjects) {
					err = fmt.Errorf("filters not applied: %w", jetstream.ErrConsumerMultipleFilterSubjectsNotSupported)
				}
			}
		}
		return err
	})
	return cons, err
}

// consumerNames lists the durable consumers of the events stream.
func (s *jsStore) consumerNames(ctx context.Context) ([]string, error) {
	var names []string
	err := s.retrySetup(ctx, "list consumers", func(ctx context.Context) error {
		names = names[:0]
		lister := s.events.ConsumerNames(ctx)
		for n := range lister.Name() {
			names = append(names, n)
		}
		return lister.Err()
	})
	return names, err
}

// Append publishes e to the events stream and waits for the store's
// acknowledgement. The message id <source>:<msg id> makes JetStream drop a
// repeat within the dedupe window.
func (s *jsStore) Append(ctx context.Context, e Event) (bool, error) {
	if s.seenBefore(e.Source, e.MsgID) {
		// Trimmed from history inside the dedupe window: after a restart
		// the events stream's own window remembers only what it holds.
		return true, nil
	}
	if !s.admit(ctx, len(e.Body)) {
		return false, ErrStoreFull
	}
	// The header keys are in canonical form already: set the map directly
	// rather than through Header.Set, which canonicalises each key.
	// The source and the sender's id travel in the JetStream message id
	// (see eventIdentity); parsePubAck checks which stream stored it.
	sinks := slices.Sorted(maps.Keys(e.Route))
	m := &nats.Msg{Subject: eventSubject(e.Source, sinks), Data: e.Body, Header: make(nats.Header, 4)}
	m.Header[jetstream.MsgIDHeader] = []string{e.Source + ":" + e.MsgID}
	m.Header[hdrReceivedAt] = []string{e.ReceivedAt.UTC().Format(time.RFC3339Nano)}
	if e.Type != "" {
		m.Header[hdrEvent] = []string{e.Type}
	}
	if len(e.Route) > 0 {
		m.Header[hdrRoute] = []string{encodeRoute(e.Route, sinks)}
	}
	if s.gsync != nil {
		s.gsync.begin()
	}
	var reply *nats.Msg
	var err error
	if _, ok := ctx.Deadline(); ok {
		reply, err = s.nc.RequestMsgWithContext(ctx, m)
	} else {
		reply, err = s.nc.RequestMsg(m, publishTimeout) // a pooled timer, no context per event
	}
	if err == nil {
		var dup bool
		if dup, err = parsePubAck(reply.Data); err == nil {
			if s.failingSince.Load() != 0 {
				s.failingSince.Store(0)
			}
			return s.synced(ctx, dup)
		}
	}
	if s.gsync != nil {
		s.gsync.end()
	}
	s.failingSince.CompareAndSwap(0, time.Now().UnixNano())
	return false, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// synced waits, with group commit, for the accepted event to be on stable
// storage, and returns dup.
func (s *jsStore) synced(ctx context.Context, dup bool) (bool, error) {
	if s.gsync != nil {
		// Also for a duplicate: the first copy may still be unsynced.
		if err := s.gsync.waitBegun(ctx); err != nil {
			return false, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
	}
	return dup, nil
}

// parsePubAck reads JetStream's answer to a publish to the events stream:
// whether the message was a duplicate, or the error the stream returned.
// The common answers take parsePubAckFast (this runs once per accepted
// event); anything else is decoded in full.
func parsePubAck(data []byte) (duplicate bool, err error) {
	if dup, ok := parsePubAckFast(data); ok {
		return dup, nil
	}
	var ack struct {
		Stream    string `json:"stream"`
		Duplicate bool   `json:"duplicate"`
		Error     *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &ack); err != nil {
		return false, fmt.Errorf("unreadable publish acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return false, fmt.Errorf("publish refused: %s (code %d, err_code %d)", ack.Error.Description, ack.Error.Code, ack.Error.ErrCode)
	}
	if ack.Stream != eventsStream {
		return false, fmt.Errorf("publish acknowledged by stream %q, want %q", ack.Stream, eventsStream)
	}
	return ack.Duplicate, nil
}

// parsePubAckFast recognises, without a JSON decoder, the two answers the
// events stream gives to a publish it stores or drops as a duplicate, byte
// for byte as nats-server writes them (its duplicate answer has a space
// after the colon; the form without is accepted too); ok is false for
// anything else. TestPubAckFastPathOnRealServer holds it to the server in
// go.mod.
func parsePubAckFast(data []byte) (duplicate, ok bool) {
	const prefix = `{"stream":"` + eventsStream + `","seq":`
	rest, ok := bytes.CutPrefix(data, []byte(prefix))
	if !ok {
		return false, false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 {
		return false, false
	}
	switch string(rest[i:]) {
	case "}":
		return false, true
	case `,"duplicate": true}`, `,"duplicate":true}`:
		return true, true
	}
	return false, false
}

// maxBody is the largest body the store can keep with room for its
// headers: the server's max_payload less headerRoom.
func (s *jsStore) maxBody() int64 {
	return s.nc.MaxPayload() - headerRoom
}

// Ready reports whether the store answers.
func (s *jsStore) Ready(ctx context.Context) error {
	if s.nc == nil || !s.nc.IsConnected() {
		return ErrStoreUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return nil
}

// close flushes and closes the connection and stops the embedded server.
func (s *jsStore) close() {
	if s.history != nil && s.history.follow != nil {
		s.history.follow.Stop()
	}
	if s.trailw != nil {
		s.trailw.close() // before the connection's last flush
	}
	if s.nc != nil {
		_ = s.nc.FlushTimeout(5 * time.Second)
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	if s.gsync != nil {
		s.gsync.close()
		_ = s.gsyncClose()
	}
}

// maxSubjectSinks is how many sinks an event's subject names at most; an
// event routed to more goes to relay.events.<source>, which every sink's
// consumer reads, its route header saying which sinks it is for.
const maxSubjectSinks = 8

// eventSubject is the subject an event is stored under:
// relay.to.<source>.<sink>..., sinks sorted. Each sink's consumer
// filters on the subjects that name it (see routeFilters), so the server
// hands a sink only the events routed to it, and an event routed nowhere
// is not stored at all (its id is still kept for deduplication).
func eventSubject(source string, sinks []string) string {
	if len(sinks) > maxSubjectSinks {
		return eventsSubject + source
	}
	return routedSubject + source + dotJoin(sinks)
}

// dotJoin returns "" or ".a.b...".
func dotJoin(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteByte('.')
		b.WriteString(n)
	}
	return b.String()
}

// routeFilters are the subjects a sink's consumer reads: the routed
// subjects naming the sink at any position, the events routed to more
// sinks than a subject names, and the sink's replays.
func routeFilters(sink string) []string {
	filters := make([]string, 0, 2*maxSubjectSinks+2)
	prefix := routedSubject + "*" // the source
	for range maxSubjectSinks {
		filters = append(filters, prefix+"."+sink, prefix+"."+sink+".>")
		prefix += ".*"
	}
	return append(filters, eventsSubject+">", replaySubject+sink)
}

// eventIdentity returns the source and the sender's message id of a stored
// event: from the Relay-Source and Relay-Msg-Id headers when it has them
// (replays), else from its JetStream message id, <source>:<msg id>, which
// ingest sets (source names cannot hold a colon).
func eventIdentity(h nats.Header) (source, msgID string) {
	source, msgID = h.Get(hdrSource), h.Get(hdrMsgID)
	if source == "" || msgID == "" {
		source, msgID, _ = strings.Cut(h.Get(jetstream.MsgIDHeader), ":")
	}
	return source, msgID
}

func sinkConsumerName(sink string) string { return consumerPrefix + sink }

func sinkOfConsumer(name string) (string, bool) { return strings.CutPrefix(name, consumerPrefix) }
