package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// fsyncStore appends records to a file with one fsync per record, serialised
// by a mutex, as a naive durable store would.
type fsyncStore struct {
	mu sync.Mutex
	f  *os.File
}

// openFsyncStore opens (creating or appending to) the file at path.
func openFsyncStore(path string) (*fsyncStore, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("floor-fsync: %w", err)
	}
	return &fsyncStore{f: f}, nil
}

// Append writes rec followed by a newline and syncs the file.
func (s *fsyncStore) Append(rec []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := make([]byte, 0, len(rec)+1)
	line = append(append(line, rec...), '\n')
	if _, err := s.f.Write(line); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// Close closes the file.
func (s *fsyncStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}

// floorHandler is the minimal webhook receiver of floor mode: it verifies
// the svix signature, parses the JSON body and, when store is not nil,
// appends the compacted body to it before answering 200.
type floorHandler struct {
	wh      *svix.Webhook
	maxBody int64
	store   *fsyncStore // may be nil
}

func writeJSONResponse(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ServeHTTP implements http.Handler.
func (h *floorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONResponse(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSONResponse(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body too large"})
			return
		}
		writeJSONResponse(w, http.StatusBadRequest, map[string]string{"error": "read body"})
		return
	}
	if err := h.wh.Verify(body, r.Header); err != nil {
		writeJSONResponse(w, http.StatusUnauthorized, map[string]string{"error": "invalid signature"})
		return
	}
	var event map[string]any
	if err := json.Unmarshal(body, &event); err != nil {
		writeJSONResponse(w, http.StatusBadRequest, map[string]string{"error": "invalid json"})
		return
	}
	id := r.Header.Get("svix-id")
	if id == "" {
		id = r.Header.Get("webhook-id")
	}
	if h.store != nil {
		// Compact so that one accepted request is exactly one line.
		var buf bytes.Buffer
		if err := json.Compact(&buf, body); err != nil {
			writeJSONResponse(w, http.StatusBadRequest, map[string]string{"error": "invalid json"})
			return
		}
		if err := h.store.Append(buf.Bytes()); err != nil {
			writeJSONResponse(w, http.StatusServiceUnavailable, map[string]string{"error": "store unavailable"})
			return
		}
	}
	writeJSONResponse(w, http.StatusOK, map[string]string{"id": id, "status": "accepted"})
}

// floorServer is a running floor-mode HTTP server.
type floorServer struct {
	ln    net.Listener
	srv   *http.Server
	store *fsyncStore
	done  chan error
}

// startFloor listens on cfg.floorAddr and serves the floor handler in the
// background.
func startFloor(cfg config) (*floorServer, error) {
	wh, err := svix.NewWebhook(cfg.secret)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	h := &floorHandler{wh: wh, maxBody: cfg.floorMaxBody}
	if h.maxBody <= 0 {
		h.maxBody = 1 << 20
	}
	if cfg.floorFsync != "" {
		if h.store, err = openFsyncStore(cfg.floorFsync); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.floorAddr)
	if err != nil {
		if h.store != nil {
			h.store.Close()
		}
		return nil, fmt.Errorf("listen: %w", err)
	}
	fs := &floorServer{
		ln:    ln,
		store: h.store,
		srv:   &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		done:  make(chan error, 1),
	}
	go func() { fs.done <- fs.srv.Serve(ln) }()
	return fs, nil
}

// Addr returns the address the server listens on.
func (fs *floorServer) Addr() string { return fs.ln.Addr().String() }

// Shutdown stops accepting connections, waits for requests in flight until
// ctx is done, and closes the store.
func (fs *floorServer) Shutdown(ctx context.Context) error {
	err := fs.srv.Shutdown(ctx)
	if err != nil {
		fs.srv.Close()
	}
	if serr := <-fs.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if fs.store != nil {
		if cerr := fs.store.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// runFloor serves the floor until ctx is done, printing the listening address
// as the first line of stdout. In-flight requests are drained on shutdown for
// up to 10s, or until abort is done.
func runFloor(ctx, abort context.Context, cfg config, stdout io.Writer) error {
	fs, err := startFloor(cfg)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "listening on %s\n", fs.Addr()); err != nil {
		fs.Shutdown(abort)
		return fmt.Errorf("write address: %w", err)
	}
	select {
	case <-ctx.Done():
	case err := <-fs.done:
		fs.done <- err // let Shutdown observe it
	}
	sctx, cancel := context.WithTimeout(abort, 10*time.Second)
	defer cancel()
	return fs.Shutdown(sctx)
}
