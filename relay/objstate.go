package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/rules"
)

// objectHistory is how long the relay remembers an object's latest state
// (and a sink's state: a Slack thread, an open group) after its last event
// under cfg: as long as history, and at least the dedupe window (an event
// Svix delivers late must still be compared with its object's state).
func objectHistory(cfg StorageConfig) time.Duration { return max(cfg.History, cfg.DedupeWindow) }

// objectsBucket is the key-value bucket (stream KV_relay_objects) that
// keeps each object's latest state.
const objectsBucket = "relay_objects"

// objectCacheMax bounds the objects kept in memory; beyond it, some are
// dropped and read back from the bucket when their next event comes.
const objectCacheMax = 200_000

// objState is what the relay remembers of one object: the latest
// updated_at it accepted (Unix nanoseconds, 0 when none had one), the
// status that came with it, and when it was written (for expiry).
type objState struct {
	UpdatedAt int64  `json:"u"`
	Status    string `json:"s"`
	Written   int64  `json:"w"`
}

// objTrack is what annotate found out about one event, for record.
type objTrack struct {
	key  string
	next objState
}

// objects tracks the latest updated_at and status of each object (object
// type plus its media, recording or bot id), for the rule names stale and
// previous_status. An in-memory cache sits in front of a key-value bucket;
// with kv nil it is memory only (dry runs). Safe for concurrent use; a nil
// *objects tracks nothing.
type objects struct {
	kv    jetstream.KeyValue
	out   *batchWriter // writes to kv a batch at a time; nil: memory only
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
	max   int
	mu    sync.Mutex
	cache map[string]objState
	// complete is true while the cache holds every object of the bucket:
	// from a load until the first entry is dropped.
	complete bool
	stopped  chan struct{} // closed when the watch ends
	cancel   context.CancelFunc
}

// newObjects returns a tracker keeping state for ttl in kv, written through
// nc; both may be nil (memory only). With nc set, it writes until stop.
func newObjects(nc *nats.Conn, kv jetstream.KeyValue, ttl time.Duration, now func() time.Time, log *slog.Logger) *objects {
	o := &objects{kv: kv, ttl: ttl, now: now, log: log, max: objectCacheMax, cache: make(map[string]objState)}
	if nc != nil {
		o.out = newBatchWriter(nc)
	}
	return o
}

// kvKeyToken reports whether s may be one token of a key-value key: one
// or more of - _ = A-Z a-z 0-9. (A loop: it runs for every event, and a
// regular expression took about ten times as long.)
func kvKeyToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return s != ""
}

// objectKey names the object env is about: its object type and the id of
// its media object, recording or bot; "" when it has no id (and for missed
// events, whose object is the relay).
func objectKey(env *rules.Env) string {
	var ref map[string]any
	switch env.Object {
	case "", "relay":
		return ""
	case "recording":
		ref = env.Recording
	case "bot":
		ref = env.Bot
	default:
		ref = env.Media
	}
	id, _ := ref["id"].(string)
	if id == "" || !kvKeyToken(env.Object) {
		return ""
	}
	if !kvKeyToken(id) {
		id = "h" + keyHash(id) // any id, as a valid key
	}
	return env.Object + "." + id
}

// order decides what an event says about its object given what is known
// of it: stale when a later updated_at was already accepted (both known),
// previous the known status, and the state to remember when the event is
// accepted (none for a stale event: the later state stays).
func order(prev objState, known bool, env *rules.Env) (stale bool, previous string, next objState, remember bool) {
	at := int64(0)
	if !env.UpdatedAt.IsZero() {
		at = env.UpdatedAt.UnixNano()
	}
	if !known {
		return false, "", objState{UpdatedAt: at, Status: env.Status}, true
	}
	if at != 0 && prev.UpdatedAt > at {
		return true, prev.Status, objState{}, false
	}
	return false, prev.Status, objState{UpdatedAt: max(at, prev.UpdatedAt), Status: env.Status}, true
}

// annotate sets env.Stale and env.PreviousStatus from what is known of
// env's object, and returns what record needs once the event is accepted.
// A bucket that cannot be read counts as knowing nothing of the object
// (logged).
func (o *objects) annotate(ctx context.Context, env *rules.Env) objTrack {
	if o == nil {
		return objTrack{}
	}
	key := objectKey(env)
	if key == "" {
		return objTrack{}
	}
	prev, known := o.lookup(ctx, key)
	stale, previous, next, remember := order(prev, known, env)
	env.Stale, env.PreviousStatus = stale, previous
	if !remember {
		return objTrack{}
	}
	return objTrack{key: key, next: next}
}

// lookup returns the known state of key: from the cache, else from the
// bucket. State older than ttl is not known.
func (o *objects) lookup(ctx context.Context, key string) (objState, bool) {
	now := o.now().UnixNano()
	o.mu.Lock()
	st, ok := o.cache[key]
	complete := o.complete
	o.mu.Unlock()
	if !ok && !complete && o.kv != nil {
		st, ok = o.read(ctx, key)
	}
	if ok && now-st.Written > int64(o.ttl) {
		return objState{}, false
	}
	return st, ok
}

// read gets key from the bucket.
func (o *objects) read(ctx context.Context, key string) (objState, bool) {
	e, err := o.kv.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			o.log.Warn("object state unreadable; the event counts as its object's first", "key", key, "err", err)
		}
		return objState{}, false
	}
	var st objState
	if json.Unmarshal(e.Value(), &st) != nil {
		return objState{}, false
	}
	o.merge(key, st)
	return st, true
}

// record remembers the state annotate decided on, for an accepted event:
// in the cache at once, in the bucket with the writer's next batch (a crash
// may lose the last writes; the state is advisory).
func (o *objects) record(tr objTrack) {
	if o == nil || tr.key == "" {
		return
	}
	tr.next.Written = o.now().UnixNano()
	o.merge(tr.key, tr.next)
	if o.out != nil {
		b, _ := json.Marshal(tr.next)
		o.out.put("$KV."+objectsBucket+"."+tr.key, b)
	}
}

// merge puts st in the cache unless the cache knows a later updated_at.
func (o *objects) merge(key string, st objState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, ok := o.cache[key]; ok && cur.UpdatedAt > st.UpdatedAt {
		return
	}
	o.putLocked(key, st)
}

// putLocked stores st, first dropping a tenth of the cache when it is full
// (map order: arbitrary entries, read back from the bucket when needed).
func (o *objects) putLocked(key string, st objState) {
	if _, ok := o.cache[key]; !ok && len(o.cache) >= o.max {
		o.complete = false
		drop := max(o.max/10, 1)
		for k := range o.cache {
			delete(o.cache, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	o.cache[key] = st
}

// load reads the whole bucket into the cache. While everything fits (no
// entry was ever dropped), the cache knows every object and a miss needs no
// read of the bucket. With follow, it then keeps the cache in line with the
// writes of other relays sharing the bucket, until stop.
func (o *objects) load(ctx context.Context, follow bool) error {
	if o == nil || o.kv == nil {
		return nil
	}
	// The watch outlives ctx, which bounds the initial load only.
	watchCtx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	w, err := o.kv.WatchAll(watchCtx, jetstream.IgnoreDeletes())
	if err != nil {
		o.cancel()
		return err
	}
	o.stopped = make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(o.stopped)
		defer func() { _ = w.Stop() }()
		initial := true
		for e := range w.Updates() {
			if e == nil { // the end of the initial values
				o.mu.Lock()
				o.complete = len(o.cache) < o.max
				o.mu.Unlock()
				initial = false
				close(loaded)
				if !follow {
					return
				}
				continue
			}
			var st objState
			if json.Unmarshal(e.Value(), &st) == nil {
				o.merge(e.Key(), st)
			}
		}
		if initial {
			close(loaded)
		}
	}()
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends the watch and writes what is left, waiting (up to
// publishTimeout) for the store to have it.
func (o *objects) stop() {
	if o == nil {
		return
	}
	if o.cancel != nil {
		o.cancel()
		<-o.stopped
	}
	if o.out != nil {
		o.out.close()
	}
}

// openObjects opens (creating or updating) the bucket of object state,
// keeping each object ttl after its last write.
func (s *jsStore) openObjects(ctx context.Context, ttl time.Duration) (jetstream.KeyValue, error) {
	replicas := 1
	if s.cfg.URL != "" {
		replicas = s.cfg.Replicas
	}
	var kv jetstream.KeyValue
	err := s.retrySetup(ctx, "bucket "+objectsBucket, func(ctx context.Context) (err error) {
		kv, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      objectsBucket,
			Description: "each object's latest updated_at and status, for stale and previous_status",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		return err
	})
	return kv, err
}

// startObjects opens the object state, loads it and hands it to ingest.
// With a NATS cluster, where several relays may share the bucket, each
// keeps its cache in line with the others' writes.
func (s *Server) startObjects(ctx context.Context, cfg *Config) error {
	ttl := objectHistory(cfg.Storage)
	kv, err := s.store.openObjects(ctx, ttl)
	if err != nil {
		return err
	}
	o := newObjects(s.store.nc, kv, ttl, s.opts.Now, s.log)
	if err := o.load(ctx, cfg.Storage.URL != ""); err != nil {
		o.stop()
		return fmt.Errorf("load object state: %w", err)
	}
	s.ingest.objects = o
	return nil
}
