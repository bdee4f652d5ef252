package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// statusError is the status key used for transport errors (no HTTP response).
const statusError = "error"

// maxErrorKinds bounds the number of distinct transport error messages kept.
const maxErrorKinds = 10

// maxResponseBody bounds how much of a response body is read (and parsed).
const maxResponseBody = 64 << 10

// result is the outcome of a load run.
type result struct {
	sent        int64
	statuses    map[string]int64
	duplicates  int64
	errors      map[string]int64
	latencies   []time.Duration // sorted ascending; responses only
	wall        time.Duration
	interrupted bool
	missed      int64 // open loop: due requests not sent before the duration ended
	idsErr      error
}

// workerStats is accumulated by one worker without locking and merged at the end.
type workerStats struct {
	sent       int64
	statuses   map[string]int64
	duplicates int64
	errors     map[string]int64
	latencies  []time.Duration
}

func newWorkerStats() *workerStats {
	return &workerStats{statuses: map[string]int64{}, errors: map[string]int64{}}
}

// idsWriter appends svix ids to a file; safe for concurrent use. A nil
// *idsWriter discards ids.
type idsWriter struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	err error
}

func createIDsWriter(path string) (*idsWriter, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ids-out: %w", err)
	}
	return &idsWriter{f: f, w: bufio.NewWriter(f)}, nil
}

func (w *idsWriter) add(id string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	if _, err := w.w.WriteString(id + "\n"); err != nil {
		w.err = err
	}
}

// close flushes, syncs and closes the file, returning the first error seen.
func (w *idsWriter) close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	if ferr := w.w.Flush(); err == nil {
		err = ferr
	}
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ids-out: %w", err)
	}
	return nil
}

// newClient returns an HTTP client whose connection pool fits concurrency
// connections to one host, so connections are reused between requests.
func newClient(concurrency int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newMsgID returns "msg_" followed by 27 random base62 characters.
func newMsgID() string {
	const n = 27
	out := make([]byte, 4, 4+n)
	copy(out, "msg_")
	var buf [48]byte
	for len(out) < 4+n {
		rand.Read(buf[:]) // never returns an error (crypto/rand, Go 1.24+)
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: reject to keep the distribution uniform
				continue
			}
			out = append(out, base62[b%62])
			if len(out) == 4+n {
				break
			}
		}
	}
	return string(out)
}

// loader sends individual signed requests.
type loader struct {
	url    string
	client *http.Client
	wh     *svix.Webhook
	bodies [][]byte
	ids    *idsWriter
	reqCtx context.Context
}

// do sends request number seq, whose intended start time is scheduled, and
// records the outcome in st. Latency is measured from scheduled to the end
// of reading the response.
func (l *loader) do(seq int64, scheduled time.Time, st *workerStats) {
	st.sent++
	body := l.bodies[seq%int64(len(l.bodies))]
	id := newMsgID()
	now := time.Now()
	sig, err := l.wh.Sign(id, now, body)
	if err != nil {
		l.fail(st, err)
		return
	}
	req, err := http.NewRequestWithContext(l.reqCtx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		l.fail(st, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "relay-load")
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := l.client.Do(req)
	if err != nil {
		l.fail(st, err)
		return
	}
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_, _ = io.Copy(io.Discard, resp.Body) // drain the rest so the connection is reused
	resp.Body.Close()
	if err != nil {
		l.fail(st, err)
		return
	}
	st.latencies = append(st.latencies, time.Since(scheduled))
	st.statuses[strconv.Itoa(resp.StatusCode)]++
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		l.ids.add(id)
		var ack struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(respBody, &ack) == nil && ack.Status == "duplicate" {
			st.duplicates++
		}
	}
}

func (l *loader) fail(st *workerStats, err error) {
	st.statuses[statusError]++
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	msg := err.Error()
	if _, ok := st.errors[msg]; ok || len(st.errors) < maxErrorKinds {
		st.errors[msg]++
	}
}

// runLoad runs the load described by cfg. Cancelling ctx stops issuing new
// requests; requests in flight still complete (bounded by cfg.timeout) so
// that every 2xx is recorded. Cancelling abort aborts requests in flight.
func runLoad(ctx, abort context.Context, cfg config) (*result, error) {
	bodies, err := loadEvents(cfg.events)
	if err != nil {
		return nil, err
	}
	wh, err := svix.NewWebhook(cfg.secret)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	ids, err := createIDsWriter(cfg.idsOut)
	if err != nil {
		return nil, err
	}
	client := newClient(cfg.concurrency, cfg.timeout)
	defer client.CloseIdleConnections()
	l := &loader{url: cfg.url, client: client, wh: wh, bodies: bodies, ids: ids, reqCtx: abort}

	stats := make([]*workerStats, cfg.concurrency)
	for i := range stats {
		stats[i] = newWorkerStats()
	}
	start := time.Now()
	var missed int64
	if cfg.rate > 0 {
		missed = openLoop(ctx, cfg, l, stats, start)
	} else {
		closedLoop(ctx, cfg, l, stats)
	}
	res := &result{
		wall:        time.Since(start),
		statuses:    map[string]int64{},
		errors:      map[string]int64{},
		interrupted: ctx.Err() != nil,
		missed:      missed,
	}
	for _, st := range stats {
		res.sent += st.sent
		res.duplicates += st.duplicates
		for k, v := range st.statuses {
			res.statuses[k] += v
		}
		for k, v := range st.errors {
			if _, ok := res.errors[k]; ok || len(res.errors) < maxErrorKinds {
				res.errors[k] += v
			}
		}
		res.latencies = append(res.latencies, st.latencies...)
	}
	slices.Sort(res.latencies)
	res.idsErr = ids.close()
	return res, nil
}

// closedLoop runs cfg.concurrency workers, each sending back-to-back until
// cfg.requests have been issued in total or cfg.duration has elapsed.
func closedLoop(ctx context.Context, cfg config, l *loader, stats []*workerStats) {
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	var issued atomic.Int64
	var wg sync.WaitGroup
	for _, st := range stats {
		wg.Go(func() {
			for ctx.Err() == nil {
				seq := issued.Add(1) - 1
				if cfg.requests > 0 && seq >= cfg.requests {
					return
				}
				l.do(seq, time.Now(), st)
			}
		})
	}
	wg.Wait()
}

// ticket is one scheduled request of the open loop.
type ticket struct {
	seq int64
	at  time.Time
}

// openLoop schedules request i at start + i/cfg.rate regardless of
// responses. At most cfg.concurrency requests are in flight; when all are
// busy, the schedule falls behind and overdue requests are sent as soon as a
// worker frees up. Latency is measured from the scheduled time, so the wait
// counts (no coordinated omission). Scheduling stops after cfg.requests
// requests, or at start+cfg.duration (wall clock): requests that were due by
// then but could not be dispatched because every worker was busy are not sent
// and are returned as missed.
func openLoop(ctx context.Context, cfg config, l *loader, stats []*workerStats, start time.Time) (missed int64) {
	stop := ctx
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		stop, cancel = context.WithDeadline(ctx, start.Add(cfg.duration))
		defer cancel()
	}
	ch := make(chan ticket)
	var wg sync.WaitGroup
	for _, st := range stats {
		wg.Go(func() {
			for t := range ch {
				l.do(t.seq, t.at, st)
			}
		})
	}
	defer wg.Wait()
	defer close(ch)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var i int64
	for ; cfg.requests == 0 || i < cfg.requests; i++ {
		offset := scheduleOffset(i, cfg.rate)
		if cfg.duration > 0 && offset >= cfg.duration {
			return 0
		}
		at := start.Add(offset)
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-stop.Done():
				// at < deadline, so on a deadline stop this request was due.
				return missedAt(ctx, cfg, i)
			case <-timer.C:
			}
		}
		select {
		case <-stop.Done():
			return missedAt(ctx, cfg, i)
		case ch <- ticket{seq: i, at: at}:
		}
	}
	return 0
}

// missedAt is the number of scheduled requests from index i on that will not
// be sent: none when stopped by ctx (interrupted), the rest of the schedule
// when stopped by the duration deadline.
func missedAt(ctx context.Context, cfg config, i int64) int64 {
	if ctx.Err() != nil {
		return 0
	}
	return plannedRequests(cfg) - i
}

// scheduleOffset is the offset from the start of request i at rate per second.
func scheduleOffset(i int64, rate float64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}

// plannedRequests is the number of requests the open-loop schedule contains:
// those with an offset below cfg.duration, at most cfg.requests.
func plannedRequests(cfg config) int64 {
	n := int64(math.Ceil(cfg.duration.Seconds() * cfg.rate))
	for n > 0 && scheduleOffset(n-1, cfg.rate) >= cfg.duration {
		n--
	}
	for scheduleOffset(n, cfg.rate) < cfg.duration {
		n++
	}
	if cfg.requests > 0 && n > cfg.requests {
		n = cfg.requests
	}
	return n
}
