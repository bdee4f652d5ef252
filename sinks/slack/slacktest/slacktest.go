// Package slacktest is a local Slack Web API for tests of Slack sinks in
// Web API mode (token and api_url): it answers chat.postMessage and
// chat.update the way slack-go calls them (form-encoded requests under
// /api/) and records every call. Unlike slack-go's own slacktest package,
// each posted message gets a timestamp of its own, so that a test can
// follow threads (replies name their parent's ts) and updates. It also
// answers conversations.history with the messages posted (not replies),
// newest first, with their metadata when asked; its oldest parameter is
// compared with the time each message reached the server, since the
// timestamps it gives are not times.
package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Channel is the channel ID the server answers every call with.
const Channel = "C0CHANNEL"

// Call is one Web API call the server received.
type Call struct {
	Method   string // chat.postMessage, chat.update
	Channel  string
	TS       string // the message's ts: the one s gave it (post, reply) or the one updated
	ThreadTS string // chat.postMessage: the thread replied in, "" for a new message
	Text     string
	Blocks   string // JSON, as sent
	Metadata string // chat.postMessage: the message metadata, JSON as sent
	At       time.Time
}

// IsPost reports whether c posted a new message, not a reply.
func (c Call) IsPost() bool { return c.Method == "chat.postMessage" && c.ThreadTS == "" }

// IsReply reports whether c posted a reply in a thread.
func (c Call) IsReply() bool { return c.Method == "chat.postMessage" && c.ThreadTS != "" }

// String is a short form for failure messages and shape checks:
// "post: TEXT", "reply THREAD_TS" or "update TS: TEXT".
func (c Call) String() string {
	switch {
	case c.Method == "chat.update":
		return "update " + c.TS + ": " + c.Text
	case c.IsReply():
		return "reply " + c.ThreadTS
	case c.IsPost():
		return "post: " + c.Text
	}
	return c.Method
}

// Server is a local Slack Web API. Safe for concurrent use.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []Call
	lookups []Call // conversations.history
	posts   int
	fail    func(c Call, w http.ResponseWriter) bool
}

// New starts a Server on a loopback port; it is closed when the test ends.
// The n-th message posted gets the ts "1700000000.n" (n on six digits).
func New(t testing.TB) *Server {
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// APIURL is the api_url of a sink that calls s.
func (s *Server) APIURL() string { return s.URL + "/api/" }

// FailWith has f see each call first: f may answer it itself (with an
// error, a 429 ...) and return true, and the call is not recorded; or
// return false, and s answers ok. f runs under s's lock.
func (s *Server) FailWith(f func(c Call, w http.ResponseWriter) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = f
}

// Calls returns the calls answered ok so far, in the order received, but
// for reads of the channel's history (see Lookups).
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Lookups returns the conversations.history calls answered ok so far.
func (s *Server) Lookups() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.lookups...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	c := Call{
		Method: strings.TrimPrefix(r.URL.Path, "/api/"), Channel: r.Form.Get("channel"),
		TS: r.Form.Get("ts"), ThreadTS: r.Form.Get("thread_ts"),
		Text: r.Form.Get("text"), Blocks: r.Form.Get("blocks"), Metadata: r.Form.Get("metadata"), At: time.Now(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil && s.fail(c, w) {
		return
	}
	if c.Method == "conversations.history" {
		s.lookups = append(s.lookups, c)
		s.history(w, r)
		return
	}
	if c.Method == "chat.postMessage" {
		s.posts++
		c.TS = fmt.Sprintf("1700000000.%06d", s.posts)
	}
	s.calls = append(s.calls, c)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q}`, Channel, c.TS)
}

// historyMessage is a message as conversations.history lists it.
type historyMessage struct {
	Type     string          `json:"type"`
	TS       string          `json:"ts"`
	Text     string          `json:"text"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// history answers conversations.history: the posts (not replies) received
// at or after oldest (seconds since the epoch), newest first, limit a page
// (default 100), the cursor being the index of the page's first message.
// Called with s.mu held.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	var oldest time.Time
	if v, err := strconv.ParseFloat(r.Form.Get("oldest"), 64); err == nil && v > 0 {
		oldest = time.Unix(0, int64(v*1e9))
	}
	withMeta := r.Form.Get("include_all_metadata") == "1"
	var all []historyMessage
	for i := len(s.calls) - 1; i >= 0; i-- {
		c := s.calls[i]
		if !c.IsPost() || c.At.Before(oldest) {
			continue
		}
		m := historyMessage{Type: "message", TS: c.TS, Text: c.Text}
		if withMeta && c.Metadata != "" {
			m.Metadata = json.RawMessage(c.Metadata)
		}
		all = append(all, m)
	}
	limit, err := strconv.Atoi(r.Form.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	from, _ := strconv.Atoi(r.Form.Get("cursor"))
	from = min(max(from, 0), len(all))
	to := min(from+limit, len(all))
	next := ""
	if to < len(all) {
		next = strconv.Itoa(to)
	}
	page := struct {
		OK       bool             `json:"ok"`
		Messages []historyMessage `json:"messages"`
		HasMore  bool             `json:"has_more"`
		Meta     struct {
			NextCursor string `json:"next_cursor"`
		} `json:"response_metadata"`
	}{OK: true, Messages: all[from:to], HasMore: next != ""}
	page.Meta.NextCursor = next
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}
