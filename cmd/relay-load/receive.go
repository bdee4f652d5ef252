package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Receive mode (--receive ADDR) stands in for a sink endpoint: it answers
// every POST with 200 and, when the body is a JSON object with a string
// field "received_at" (RFC 3339, nanoseconds allowed), records the latency
// from that instant to the moment the request arrived. With the relay's http
// sink and
//
//	body_template: '{"received_at":"{{ .received_at.Format "2006-01-02T15:04:05.999999999Z07:00" }}"}'
//
// that is the end-to-end latency from the relay accepting an event to its
// delivery. GET /stats answers the counts so far (for scripts waiting for
// deliveries to drain).
//
// For fault runs: with --down-until FILE it answers every POST 503 (no
// Retry-After) until FILE exists, counting them as refused; with
// --count-keys it counts the distinct Idempotency-Key values of the POSTs
// it answered 200 and the repeats.

// maxReceiveBody bounds how much of a request body is read.
const maxReceiveBody = 1 << 20

// receiver records what receive mode saw. Safe for concurrent use.
type receiver struct {
	now    func() time.Time
	target int64 // stop after this many POSTs (0 = no limit)
	// downUntil, when set, is a file whose absence makes every POST a 503.
	downUntil string
	countKeys bool
	up        atomic.Bool // downUntil has been seen to exist

	mu        sync.Mutex
	received  int64 // POSTs answered 200
	missing   int64 // bodies without a string received_at field
	invalid   int64 // received_at present but not RFC 3339
	latencies []time.Duration
	first     time.Time
	last      time.Time
	refused   int64               // POSTs answered 503 while down
	keys      map[string]struct{} // Idempotency-Key values answered 200 (countKeys)
	repeats   int64               // POSTs answered 200 whose key was already seen

	full     chan struct{} // closed when received reaches target
	fullOnce sync.Once
}

func newReceiver(target int64, now func() time.Time) *receiver {
	if now == nil {
		now = time.Now
	}
	return &receiver{now: now, target: target, full: make(chan struct{}), keys: make(map[string]struct{})}
}

// down reports whether POSTs are refused now: a --down-until file that
// does not exist yet. Once it has been seen, the receiver stays up.
func (rc *receiver) down() bool {
	if rc.downUntil == "" || rc.up.Load() {
		return false
	}
	if _, err := os.Stat(rc.downUntil); err == nil {
		rc.up.Store(true)
		return false
	}
	return true
}

// receiveStats is the GET /stats answer.
type receiveStats struct {
	Received int64 `json:"received"`
	Measured int64 `json:"measured"`
	Missing  int64 `json:"missing_received_at"`
	Invalid  int64 `json:"invalid_received_at"`
	Refused  int64 `json:"refused"`
	Keys     int64 `json:"unique_keys"`
	Repeats  int64 `json:"duplicate_keys"`
}

func (rc *receiver) stats() receiveStats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return receiveStats{
		Received: rc.received, Measured: int64(len(rc.latencies)), Missing: rc.missing, Invalid: rc.invalid,
		Refused: rc.refused, Keys: int64(len(rc.keys)), Repeats: rc.repeats,
	}
}

// ServeHTTP implements http.Handler.
func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := rc.now()
	if r.Method == http.MethodGet && r.URL.Path == "/stats" {
		writeJSONResponse(w, http.StatusOK, rc.stats())
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONResponse(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReceiveBody))
	_, _ = io.Copy(io.Discard, r.Body)
	if err != nil {
		writeJSONResponse(w, http.StatusBadRequest, map[string]string{"error": "read body"})
		return
	}
	if rc.down() {
		rc.mu.Lock()
		rc.refused++
		rc.mu.Unlock()
		writeJSONResponse(w, http.StatusServiceUnavailable, map[string]string{"error": "down"})
		return
	}
	lat, state := receivedLatency(body, arrived)

	rc.mu.Lock()
	if key := r.Header.Get("Idempotency-Key"); rc.countKeys && key != "" {
		if _, seen := rc.keys[key]; seen {
			rc.repeats++
		} else {
			rc.keys[key] = struct{}{}
		}
	}
	rc.received++
	if rc.first.IsZero() {
		rc.first = arrived
	}
	rc.last = arrived
	switch state {
	case stampOK:
		rc.latencies = append(rc.latencies, lat)
	case stampMissing:
		rc.missing++
	case stampInvalid:
		rc.invalid++
	}
	reached := rc.target > 0 && rc.received >= rc.target
	rc.mu.Unlock()
	if reached {
		rc.fullOnce.Do(func() { close(rc.full) })
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(receivedAnswer)
}

var receivedAnswer = []byte(`{"status":"received"}` + "\n")

type stampState int

const (
	stampOK stampState = iota
	stampMissing
	stampInvalid
)

// receivedLatency returns arrived minus the body's received_at.
func receivedLatency(body []byte, arrived time.Time) (time.Duration, stampState) {
	if !bytes.Contains(body, []byte(`"received_at"`)) {
		// Not a stamped body (the throughput runs forward raw events):
		// the receiver shares the cores with the relay, so do not decode.
		return 0, stampMissing
	}
	var v struct {
		ReceivedAt *json.RawMessage `json:"received_at"`
	}
	if json.Unmarshal(body, &v) != nil || v.ReceivedAt == nil {
		return 0, stampMissing
	}
	var s string
	if json.Unmarshal(*v.ReceivedAt, &s) != nil {
		return 0, stampMissing // not a string: not a stamp
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, stampInvalid
	}
	return arrived.Sub(t), stampOK
}

// receiveReport is the summary printed when receive mode stops.
type receiveReport struct {
	Addr        string  `json:"addr"`
	Mode        string  `json:"mode"` // "receive"
	Received    int64   `json:"received"`
	Missing     int64   `json:"missing_received_at"`
	Invalid     int64   `json:"invalid_received_at"`
	WallSeconds float64 `json:"wall_seconds"`
	// ActiveSeconds spans the first to the last POST; Throughput is the
	// POSTs received per second over it.
	ActiveSeconds float64       `json:"active_seconds"`
	Throughput    float64       `json:"throughput_rps"`
	Latency       latencyReport `json:"latency"`
	Interrupted   bool          `json:"interrupted,omitempty"`
	// Refused, Keys and Repeats: see receiveStats (fault runs).
	Refused int64 `json:"refused,omitempty"`
	Keys    int64 `json:"unique_keys,omitempty"`
	Repeats int64 `json:"duplicate_keys,omitempty"`
}

// summarizeLatencies turns sorted latencies into a latencyReport.
func summarizeLatencies(sorted []time.Duration) latencyReport {
	var lr latencyReport
	lr.Count = int64(len(sorted))
	if len(sorted) == 0 {
		return lr
	}
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	lr.Mean = ms(sum / time.Duration(len(sorted)))
	lr.P50 = ms(percentile(sorted, 50))
	lr.P90 = ms(percentile(sorted, 90))
	lr.P99 = ms(percentile(sorted, 99))
	lr.Max = ms(sorted[len(sorted)-1])
	return lr
}

// report summarises what rc saw; wall is how long the receiver ran.
func (rc *receiver) report(addr string, wall time.Duration, interrupted bool) receiveReport {
	rc.mu.Lock()
	lat := slices.Clone(rc.latencies)
	r := receiveReport{
		Addr:        addr,
		Mode:        "receive",
		Received:    rc.received,
		Missing:     rc.missing,
		Invalid:     rc.invalid,
		WallSeconds: math.Round(wall.Seconds()*1e6) / 1e6,
		Interrupted: interrupted,
		Refused:     rc.refused,
		Keys:        int64(len(rc.keys)),
		Repeats:     rc.repeats,
	}
	active := rc.last.Sub(rc.first)
	rc.mu.Unlock()
	slices.Sort(lat)
	r.Latency = summarizeLatencies(lat)
	r.ActiveSeconds = math.Round(active.Seconds()*1e6) / 1e6
	if active > 0 {
		r.Throughput = math.Round(float64(r.Received)/active.Seconds()*10) / 10
	}
	return r
}

func (r receiveReport) writeJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

func (r receiveReport) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "receiver:    %s\n", r.Addr)
	fmt.Fprintf(&b, "received:    %d (with received_at %d, without %d, invalid %d)\n", r.Received, r.Latency.Count, r.Missing, r.Invalid)
	fmt.Fprintf(&b, "wall:        %.3fs (first to last POST %.3fs)\n", r.WallSeconds, r.ActiveSeconds)
	fmt.Fprintf(&b, "throughput:  %.1f req/s\n", r.Throughput)
	fmt.Fprintf(&b, "latency:     p50=%.3fms p90=%.3fms p99=%.3fms max=%.3fms mean=%.3fms (n=%d, now - received_at)\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Latency.Mean, r.Latency.Count)
	if r.Refused > 0 || r.Keys > 0 {
		fmt.Fprintf(&b, "faults:      %d refused (503 while down), %d distinct Idempotency-Key, %d repeated\n", r.Refused, r.Keys, r.Repeats)
	}
	if r.Interrupted {
		fmt.Fprintf(&b, "interrupted: stopped early by signal\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// receiveServer is a running receive-mode HTTP server.
type receiveServer struct {
	ln    net.Listener
	srv   *http.Server
	rc    *receiver
	done  chan error
	start time.Time
}

// startReceive listens on addr and serves, in the background, a receiver
// configured by cfg (see receiver).
func startReceive(addr string, cfg config) (*receiveServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	rc := newReceiver(cfg.requests, nil)
	rc.downUntil, rc.countKeys = cfg.downUntil, cfg.countKeys
	rs := &receiveServer{
		ln:    ln,
		rc:    rc,
		srv:   &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute},
		done:  make(chan error, 1),
		start: time.Now(),
	}
	go func() { rs.done <- rs.srv.Serve(ln) }()
	return rs, nil
}

// Addr returns the address the server listens on.
func (rs *receiveServer) Addr() string { return rs.ln.Addr().String() }

// Shutdown stops accepting connections and waits for requests in flight
// until ctx is done.
func (rs *receiveServer) Shutdown(ctx context.Context) error {
	err := rs.srv.Shutdown(ctx)
	if err != nil {
		rs.srv.Close()
	}
	if serr := <-rs.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// runReceive serves receive mode, printing the listening address as the
// first line of stdout, until --requests POSTs were received, --duration
// passed or ctx is done; then it prints the report.
func runReceive(ctx, abort context.Context, cfg config, stdout io.Writer) error {
	rs, err := startReceive(cfg.receiveAddr, cfg)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "listening on %s\n", rs.Addr()); err != nil {
		rs.Shutdown(abort)
		return fmt.Errorf("write address: %w", err)
	}
	var timeout <-chan time.Time
	if cfg.duration > 0 {
		t := time.NewTimer(cfg.duration)
		defer t.Stop()
		timeout = t.C
	}
	interrupted := false
	var serveErr error
	select {
	case <-ctx.Done():
		interrupted = true
	case <-rs.rc.full:
	case <-timeout:
	case serveErr = <-rs.done:
		rs.done <- serveErr // let Shutdown observe it
	}
	sctx, cancel := context.WithTimeout(abort, 10*time.Second)
	defer cancel()
	err = rs.Shutdown(sctx)
	rep := rs.rc.report(rs.Addr(), time.Since(rs.start), interrupted)
	var werr error
	if cfg.jsonOut {
		werr = rep.writeJSON(stdout)
	} else {
		werr = rep.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("write report: %w", werr)
	}
	return nil
}
