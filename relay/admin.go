package relay

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relay-dev/relay/relay/console"
)

// adminHandler serves health, metrics, the dead-letter API, reload and the
// console.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	metrics := promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		s.refreshGauges(ctx)
		cancel()
		metrics.ServeHTTP(w, r)
	})
	mux.Handle("GET /api/v1/dlq", s.auth(s.handleDLQList))
	mux.Handle("GET /api/v1/dlq/{id}", s.auth(s.handleDLQGet))
	mux.Handle("POST /api/v1/dlq/{id}/replay", s.auth(s.handleDLQReplayOne))
	mux.Handle("POST /api/v1/dlq/replay", s.auth(s.handleDLQReplayAll))
	mux.Handle("DELETE /api/v1/dlq/{id}", s.auth(s.handleDLQDeleteOne))
	mux.Handle("DELETE /api/v1/dlq", s.auth(s.handleDLQPurge))
	mux.Handle("GET /api/v1/events", s.auth(s.handleEventsList))
	mux.Handle("GET /api/v1/events/{id}", s.auth(s.handleEventGet))
	mux.Handle("POST /api/v1/events/replay", s.auth(s.handleEventsReplay))
	mux.Handle("POST /api/v1/backtest", s.auth(s.handleBacktest))
	// Profiling, for operators chasing CPU or memory (behind the token too).
	mux.Handle("GET /debug/pprof/", s.auth(pprof.Index))
	mux.Handle("GET /debug/pprof/profile", s.auth(pprof.Profile))
	mux.Handle("GET /debug/pprof/trace", s.auth(pprof.Trace))
	mux.Handle("GET /debug/pprof/symbol", s.auth(pprof.Symbol))
	mux.Handle("POST /-/reload", s.auth(func(w http.ResponseWriter, r *http.Request) {
		if err := s.Reload(r.Context()); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("reload failed, running config kept: "+err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, []byte(`{"status":"reloaded"}`+"\n"))
	}))
	s.mountConsole(mux)
	return mux
}

// auth requires "Authorization: Bearer <admin_token>", or the console's
// session cookie, when a token is set.
func (s *Server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := s.cfg.Load().Server.AdminToken.Reveal()
		if token != "" {
			got := r.Header.Get("Authorization")
			want := "Bearer " + token
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 && !console.Authorized(r, token, s.opts.Now()) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
				writeJSON(w, http.StatusUnauthorized, errorBody("missing or wrong admin token"))
				return
			}
		}
		h(w, r)
	})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.ingest == nil || s.ingest.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, errorBody("not accepting events"))
		return
	}
	if err := s.store.Ready(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody("store unavailable"))
		return
	}
	if s.store.storeFull() {
		writeJSON(w, http.StatusServiceUnavailable, errorBody("store full"))
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
}

func (s *Server) refreshGauges(ctx context.Context) {
	if s.engine != nil {
		s.engine.updateGauges(ctx)
	}
	s.timers.updateGauges(ctx, s.cfg.Load().ExpectSet)
	if s.store == nil {
		return
	}
	counts, err := s.store.deadCounts(ctx)
	if err != nil {
		return
	}
	s.metrics.DeadLetters.Reset()
	for sink := range s.cfg.Load().Sinks {
		s.metrics.DeadLetters.WithLabelValues(sink).Set(0)
	}
	for sink, n := range counts {
		s.metrics.DeadLetters.WithLabelValues(sink).Set(float64(n))
	}
}

func (s *Server) handleDLQList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeJSON(w, http.StatusBadRequest, errorBody("limit must be a whole number from 1 to 1000"))
			return
		}
		limit = n
	}
	var cursor uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("cursor must be a value from next_cursor"))
			return
		}
		cursor = n
	}
	where, ok := deadFilterOf(w, q.Get("where"))
	if !ok {
		return
	}
	items, next, err := s.store.listDead(r.Context(), q.Get("sink"), where, limit, cursor)
	if err != nil {
		s.storeError(w, err)
		return
	}
	resp := struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
		NextCursor  string       `json:"next_cursor,omitempty"`
	}{DeadLetters: items}
	if next != 0 {
		resp.NextCursor = strconv.FormatUint(next, 10)
	}
	writeJSONValue(w, http.StatusOK, resp)
}

func (s *Server) handleDLQGet(w http.ResponseWriter, r *http.Request) {
	id, ok := dlqID(w, r)
	if !ok {
		return
	}
	dl, _, err := s.store.getDead(r.Context(), id)
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSONValue(w, http.StatusOK, dl)
}

func (s *Server) handleDLQReplayOne(w http.ResponseWriter, r *http.Request) {
	id, ok := dlqID(w, r)
	if !ok {
		return
	}
	if err := s.store.replayDead(r.Context(), id, s.isSink); err != nil {
		s.storeError(w, err)
		return
	}
	s.log.Info("dead letter replayed", "id", id)
	writeJSONValue(w, http.StatusOK, map[string]any{"replayed": []uint64{id}})
}

func (s *Server) handleDLQReplayAll(w http.ResponseWriter, r *http.Request) {
	where, ok := deadFilterOf(w, r.URL.Query().Get("where"))
	if !ok {
		return
	}
	ids, err := s.store.deadIDs(r.Context(), r.URL.Query().Get("sink"), where)
	if err != nil {
		s.storeError(w, err)
		return
	}
	replayed := []uint64{}
	failed := map[string]string{}
	for _, id := range ids {
		if err := s.store.replayDead(r.Context(), id, s.isSink); err != nil {
			failed[strconv.FormatUint(id, 10)] = err.Error()
			continue
		}
		replayed = append(replayed, id)
	}
	s.log.Info("dead letters replayed", "count", len(replayed), "failed", len(failed))
	writeJSONValue(w, http.StatusOK, map[string]any{"replayed": replayed, "failed": failed})
}

func (s *Server) handleDLQDeleteOne(w http.ResponseWriter, r *http.Request) {
	id, ok := dlqID(w, r)
	if !ok {
		return
	}
	if err := s.store.deleteDead(r.Context(), id); err != nil {
		s.storeError(w, err)
		return
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"purged": 1})
}

func (s *Server) handleDLQPurge(w http.ResponseWriter, r *http.Request) {
	where, ok := deadFilterOf(w, r.URL.Query().Get("where"))
	if !ok {
		return
	}
	purge := s.store.purgeDead
	if where != nil {
		purge = func(ctx context.Context, sink string) (uint64, error) {
			return s.store.purgeDeadWhere(ctx, sink, where)
		}
	}
	n, err := purge(r.Context(), r.URL.Query().Get("sink"))
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"purged": n})
}

func (s *Server) isSink(name string) bool {
	_, ok := s.cfg.Load().Sinks[name]
	return ok
}

func dlqID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody("dead letter id must be a positive whole number"))
		return 0, false
	}
	return id, true
}

func (s *Server) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody("no such dead letter"))
	case errors.Is(err, errConflict):
		writeJSON(w, http.StatusConflict, errorBody(err.Error()))
	default:
		s.log.Error("admin api: store error", "err", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeJSON(w, http.StatusServiceUnavailable, errorBody("store unavailable"))
	}
}

func writeJSONValue(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody("encode response"))
		return
	}
	writeJSON(w, code, append(b, '\n'))
}
