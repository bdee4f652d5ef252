package relay

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/rules"
)

// ingestSource is a configured source ready to verify requests.
type ingestSource struct {
	name      string
	verifiers []*svix.Webhook
	tolerance time.Duration
	addrs     addrPolicy // who may send
}

// ingestRoutes maps request paths to sources and holds the rules that route
// accepted events; replaced whole on reload.
type ingestRoutes struct {
	byPath       map[string]*ingestSource
	maxBodyBytes int64
	rules        *rules.Set
	expect       *rules.Expectations
}

// newIngestRoutes prepares cfg's sources. Bodies are limited to
// server.max_body_bytes, or to storeMax when the store cannot keep more.
func newIngestRoutes(cfg *Config, storeMax int64) (*ingestRoutes, error) {
	r := &ingestRoutes{
		byPath:       make(map[string]*ingestSource),
		maxBodyBytes: min(cfg.Server.MaxBodyBytes, storeMax),
		rules:        cfg.RuleSet,
		expect:       cfg.ExpectSet,
	}
	for name, sc := range cfg.Sources {
		src := &ingestSource{name: name, tolerance: sc.Tolerance}
		src.addrs, _ = newAddrPolicy("sources."+name, sc.AllowIPs, sc.TrustedProxies) // validated by LoadConfig
		for _, sec := range sc.Secrets {
			wh, err := svix.NewWebhook(sec.Reveal())
			if err != nil {
				return nil, errors.New("sources." + name + ": malformed secret")
			}
			src.verifiers = append(src.verifiers, wh)
		}
		r.byPath[sc.Path] = src
	}
	return r, nil
}

// ingestHandler answers webhook deliveries per the ingest table of
// docs/reference.md.
type ingestHandler struct {
	routes   atomic.Pointer[ingestRoutes]
	store    Store
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time
	load     *ingestLoad // measures how busy ingest is
	timers   *timers     // expectation timers; nil: none
	objects  *objects    // each object's latest state; nil: none
	draining atomic.Bool
	reading  atomic.Int64 // requests reading their body now
}

// retryAfterSeconds is what a 503 asks the sender to wait.
const retryAfterSeconds = "5"

func (h *ingestHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	routes := h.routes.Load()
	src, ok := routes.byPath[r.URL.Path]
	if !ok {
		h.answer(w, "unknown", http.StatusNotFound, errorBody("no source at this path"))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, src.name, http.StatusMethodNotAllowed, errorBody("method not allowed (use POST)"))
		return
	}
	if h.draining.Load() {
		w.Header().Set("Retry-After", retryAfterSeconds)
		h.answer(w, src.name, http.StatusServiceUnavailable, errorBody("shutting down"))
		return
	}

	// Everything that can be decided without the body is decided before
	// it is read: who may send, the headers, the timestamp, the declared
	// size. A sender that fails these gets its answer without the relay
	// reading (or holding memory for) a byte of its body.
	// Answered so, the connection closes after the answer: net/http would
	// otherwise read (and discard) up to 256 KiB of the unread body first,
	// waiting for a sender that may never send it.
	if !src.addrs.allows(r) {
		w.Header().Set("Connection", "close")
		h.reject(w, src.name, "address", http.StatusForbidden, errorBody("client address not allowed"))
		return
	}
	msgID, reason, err := checkHeaders(src, r.Header, h.now())
	if err != nil {
		h.log.Info("webhook rejected", "source", src.name, "err", err)
		w.Header().Set("Connection", "close")
		h.reject(w, src.name, reason, http.StatusUnauthorized, errorBody("invalid or missing webhook signature"))
		return
	}
	h.reading.Add(1)
	body, err := readLimited(w, r, routes.maxBodyBytes)
	h.reading.Add(-1)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, src.name, "too_large", http.StatusRequestEntityTooLarge, errorBody("body larger than "+strconv.FormatInt(routes.maxBodyBytes, 10)+" bytes"))
			return
		}
		h.reject(w, src.name, "unreadable", http.StatusBadRequest, errorBody("cannot read body"))
		return
	}
	if err := verifySignature(src, body, r.Header); err != nil {
		h.log.Info("webhook rejected", "source", src.name, "err", err)
		h.reject(w, src.name, "signature", http.StatusUnauthorized, errorBody("invalid or missing webhook signature"))
		return
	}
	// Counted from here, so that neither slow senders nor unsigned
	// requests make deliveries give way.
	began := time.Now()
	defer func() { h.load.spend(time.Since(began)) }()
	ev := Event{Source: src.name, MsgID: msgID, Body: body, ReceivedAt: h.now()}
	// Decoding the body for the rules is also the check that it is one
	// JSON object: the body is parsed once.
	env, err := rules.NewEnv(ev.Body, rules.Meta{Source: ev.Source, MsgID: ev.MsgID, ReceivedAt: ev.ReceivedAt})
	if err != nil {
		h.reject(w, src.name, "not_json", http.StatusBadRequest, errorBody("body is not a JSON object"))
		return
	}
	track := h.objects.annotate(r.Context(), env) // stale, previous_status
	matched := h.route(routes, env, &ev)
	start := time.Now()
	dup, err := h.store.Append(r.Context(), ev)
	if errors.Is(err, ErrStoreFull) {
		// The store guard logs the episode; the sender retries.
		w.Header().Set("Retry-After", retryAfterSeconds)
		h.answer(w, src.name, http.StatusServiceUnavailable, errorBody("store full, retry later"))
		return
	}
	if err != nil {
		h.log.Error("store append failed", "source", src.name, "msg_id", msgID, "err", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		h.answer(w, src.name, http.StatusServiceUnavailable, errorBody("store unavailable, retry later"))
		return
	}
	h.metrics.IngestStoreLatency.Observe(time.Since(start).Seconds())
	if err := h.timers.observe(r.Context(), routes.expect, env, ev); err != nil {
		h.log.Error("expectation timers not updated; the sender will retry", "source", src.name, "msg_id", msgID, "err", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		h.answer(w, src.name, http.StatusServiceUnavailable, errorBody("store unavailable, retry later"))
		return
	}
	status := "accepted"
	if dup {
		status = "duplicate"
		h.log.Info("duplicate event", "source", src.name, "msg_id", msgID, "event", ev.Type)
	} else {
		h.objects.record(track)
		h.metrics.EventsAccepted.WithLabelValues(src.name).Inc()
		for _, name := range matched {
			h.metrics.RuleMatches.WithLabelValues(name).Inc()
		}
		if lh := h.log.Handler(); lh.Enabled(r.Context(), slog.LevelInfo) {
			// The handler directly: Logger methods also record the caller's
			// program counter (runtime.Callers), which nothing here prints.
			rec := slog.NewRecord(time.Now(), slog.LevelInfo, "event accepted", 0)
			rec.AddAttrs(slog.String("source", src.name), slog.String("msg_id", msgID), slog.String("event", ev.Type), slog.Any("rules", matched))
			_ = lh.Handle(r.Context(), rec)
		}
	}
	h.answer(w, src.name, http.StatusOK, acceptBody(msgID, status))
}

// route evaluates the rules in force over ev (decoded as env), sets its type
// and its route (rules.Result.Route: per sink, the rules that send ev there;
// nil when no rule matched); it returns the matched rules. A rule that fails
// at run time counts as not matched; it is logged and counted.
func (h *ingestHandler) route(routes *ingestRoutes, env *rules.Env, ev *Event) (matched []string) {
	ev.Type = env.Event
	res := routes.rules.Eval(env)
	for _, re := range res.Errors {
		h.metrics.RuleErrors.WithLabelValues(re.Rule).Inc()
		h.log.Warn("rule failed; counted as not matched", "rule", re.Rule, "msg_id", ev.MsgID, "event", env.Event, "err", re.Err)
	}
	ev.Route = res.Route
	return res.Rules
}

// verifyError says why a request failed verification. It is logged, never
// answered.
type verifyError struct{ reason string }

func (e *verifyError) Error() string { return e.reason }

// checkHeaders checks the Svix (or Standard Webhooks) headers of a
// request, all but the signature itself, and returns the message id; on
// failure, reason names the check for relay_ingest_rejected_total. It needs
// no body, so a request that fails it is answered before its body is read.
func checkHeaders(src *ingestSource, hdr http.Header, now time.Time) (msgID, reason string, err error) {
	id, ts, sig := hdr.Get("svix-id"), hdr.Get("svix-timestamp"), hdr.Get("svix-signature")
	if id == "" || ts == "" || sig == "" {
		id, ts, sig = hdr.Get("webhook-id"), hdr.Get("webhook-timestamp"), hdr.Get("webhook-signature")
		if id == "" || ts == "" || sig == "" {
			return "", "headers", &verifyError{"missing signature headers"}
		}
	}
	if len(id) > 256 {
		return "", "headers", &verifyError{"message id too long"}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", "headers", &verifyError{"malformed timestamp header"}
	}
	if !withinTolerance(sec, now, src.tolerance) {
		return "", "timestamp", &verifyError{"timestamp outside tolerance"}
	}
	return id, "", nil
}

// withinTolerance reports whether the Unix time sec is within tolerance of
// now. It compares whole seconds as integers: no timestamp, however far in
// the past or future, can overflow the comparison into a pass.
func withinTolerance(sec int64, now time.Time, tolerance time.Duration) bool {
	n, tol := now.Unix(), int64(tolerance/time.Second)
	return sec >= n-tol && sec <= n+tol
}

// verifySignature checks the request's signature against every secret of
// the source (the timestamp was checked by checkHeaders).
func verifySignature(src *ingestSource, body []byte, hdr http.Header) error {
	for _, wh := range src.verifiers {
		if wh.VerifyIgnoringTimestamp(body, hdr) == nil {
			return nil
		}
	}
	return &verifyError{"no matching signature"}
}

// bodyChunk is the most readLimited allocates when a body's first byte
// arrives: a declared Content-Length up to this size gets a buffer of exactly
// that size (one allocation for a typical webhook), a larger one only this
// much, the buffer growing as the body arrives.
const bodyChunk = 4 << 10

// readLimited reads r's body, at most limit bytes. When the declared
// Content-Length exceeds limit (checked before reading) or the body runs past
// it, it returns an *http.MaxBytesError; in the second case the server also
// closes the connection after the answer. Nothing is allocated for the body
// until its first byte arrives, and the buffer then grows with the bytes
// that arrive: a sender that declares a large body and sends little makes
// the relay hold little.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	var first [1]byte
	n, err := io.ReadFull(body, first[:])
	switch {
	case err == io.EOF:
		return []byte{}, nil
	case err != nil:
		return nil, err
	}
	// The spare byte lets the read of a body of the declared size see EOF
	// without growing the buffer.
	b := make([]byte, n, min(max(r.ContentLength, 511), bodyChunk)+1)
	b[0] = first[0]
	for {
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grows by about a quarter to double
		}
	}
}

// reject answers a request the relay refuses, and counts why.
func (h *ingestHandler) reject(w http.ResponseWriter, source, reason string, code int, body []byte) {
	h.metrics.IngestRejected.WithLabelValues(source, reason).Inc()
	h.answer(w, source, code, body)
}

func (h *ingestHandler) answer(w http.ResponseWriter, source string, code int, body []byte) {
	h.metrics.IngestRequests.WithLabelValues(source, strconv.Itoa(code)).Inc()
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func errorBody(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, '\n')
}

func acceptBody(id, status string) []byte {
	b, _ := json.Marshal(struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{id, status})
	return append(b, '\n')
}
