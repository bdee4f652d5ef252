package relay

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/relay-dev/relay/rules"
)

// The events API: stored events, one event, and replays of stored events to
// a sink (docs/reference.md, Admin listener). Every route takes the admin
// token.

// whereProblem prefixes the compiler's message for a where expression that
// does not compile; the command line exits 2 on it.
const whereProblem = "where: "

// parseWhen reads since or until: a duration back from now (24h) or an
// RFC 3339 time. "" is the zero time.
func parseWhen(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, errors.New(name + ": a duration must not be negative")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New(name + ": want a duration such as 24h or an RFC 3339 time")
}

// eventQueryOf reads the query of the events routes; where is compiled with
// compile. It answers 400 itself and returns false on a problem.
func (s *Server) eventQueryOf(w http.ResponseWriter, q url.Values, compile func(string) (*rules.Condition, error)) (eventQuery, bool) {
	var eq eventQuery
	var err error
	now := s.opts.Now()
	if eq.since, err = parseWhen("since", q.Get("since"), now); err == nil {
		eq.until, err = parseWhen("until", q.Get("until"), now)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return eq, false
	}
	if eq.where, err = compile(q.Get("where")); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(whereProblem+err.Error()))
		return eq, false
	}
	eq.limit = 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeJSON(w, http.StatusBadRequest, errorBody("limit must be a whole number from 1 to 1000"))
			return eq, false
		}
		eq.limit = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeJSON(w, http.StatusBadRequest, errorBody("cursor must be a value from next_cursor"))
			return eq, false
		}
		eq.before = n
	}
	return eq, true
}

func (s *Server) handleEventsList(w http.ResponseWriter, r *http.Request) {
	eq, ok := s.eventQueryOf(w, r.URL.Query(), compileEventFilter)
	if !ok {
		return
	}
	events, next, err := s.store.listEvents(r.Context(), eq)
	if err != nil {
		s.storeError(w, err)
		return
	}
	resp := struct {
		Events     []StoredEvent `json:"events"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}{Events: events}
	if next != 0 {
		resp.NextCursor = strconv.FormatUint(next, 10)
	}
	writeJSONValue(w, http.StatusOK, resp)
}

func (s *Server) handleEventGet(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeJSON(w, http.StatusBadRequest, errorBody("event id must be a positive whole number"))
		return
	}
	e, err := s.store.getEvent(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody("no such event"))
		return
	}
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSONValue(w, http.StatusOK, e)
}
