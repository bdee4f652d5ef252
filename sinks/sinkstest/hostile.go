// Package sinkstest holds HTTP destinations that misbehave, for the tests
// of sinks: one that never answers, one that answers a byte at a time, one
// that sends a huge body. Each counts what it managed to write.
package sinkstest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a misbehaving destination; any path and method reach it.
type Server struct {
	*httptest.Server
	written atomic.Int64
	ended   chan struct{} // one value per request that ended
}

func start(t testing.TB, h func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
	t.Helper()
	s := &Server{ended: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { s.ended <- struct{}{} }()
		// Read the request first: only then does the server notice the
		// client going away (and end r's context).
		_, _ = io.Copy(io.Discard, r.Body)
		h(s, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// Written waits, at most timeout, for a request to end, and returns the
// bytes the server wrote in all.
func (s *Server) Written(t testing.TB, timeout time.Duration) int64 {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(timeout):
		t.Fatalf("the server's handler did not end within %s", timeout)
	}
	return s.written.Load()
}

// Hang accepts each request and never answers, until the client goes away.
func Hang(t testing.TB) *Server {
	return start(t, func(_ *Server, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
}

// Dribble answers each request with a 200 whose status line, headers and
// body arrive one byte every `every`.
func Dribble(t testing.TB, every time.Duration) *Server {
	return start(t, func(s *Server, w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		s.dribble(buf.Writer, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok", every)
	})
}

// DribbleBody answers each request with status at once and then its body,
// of 1,000 bytes, one byte every `every`.
func DribbleBody(t testing.TB, status int, every time.Duration) *Server {
	return start(t, func(s *Server, w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n", status, http.StatusText(status))
		if _, err := buf.WriteString(head); err != nil || buf.Flush() != nil {
			return
		}
		body := make([]byte, 1000)
		for i := range body {
			body[i] = 'x'
		}
		s.dribble(buf.Writer, string(body), every)
	})
}

// dribble writes text one byte every `every` until it is written or a
// write fails (the client went away).
func (s *Server) dribble(w *bufio.Writer, text string, every time.Duration) {
	for i := range len(text) {
		if w.WriteByte(text[i]) != nil || w.Flush() != nil {
			return
		}
		s.written.Add(1)
		time.Sleep(every)
	}
}

// Huge answers each request with status and a body of size bytes, sent as
// fast as the client reads it, until the client goes away.
func Huge(t testing.TB, status int, size int64) *Server {
	return start(t, func(s *Server, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(status)
		chunk := make([]byte, 32<<10)
		for i := range chunk {
			chunk[i] = ' ' // JSON whitespace: a decoder reads on
		}
		for left := size; left > 0; {
			n := min(int64(len(chunk)), left)
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
			s.written.Add(n)
			left -= n
		}
	})
}
