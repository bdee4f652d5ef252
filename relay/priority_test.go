package relay

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// runLoad starts l.run in the test's bubble; it stops when the returned
// func is called or at the end of the test.
func runLoad(t *testing.T, l *ingestLoad) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// TestIngestLoadBusy: the load is the time requests spent in flight over
// the window; ingest is busy at busy_at or more (fake clock).
func TestIngestLoadBusy(t *testing.T) {
	tests := []struct {
		name     string
		busyAt   int
		requests int           // finished in the first window
		each     time.Duration // time each spent in flight
		wantLoad float64
		wantBusy bool
	}{
		{"idle", 4, 0, 0, 0, false},
		{"below", 4, 30, 2 * time.Millisecond, 3, false},
		{"at", 4, 40, 2 * time.Millisecond, 4, true},
		{"above", 4, 5, loadWindow, 5, true},
		{"off", 0, 100, loadWindow, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newIngestLoad(IngestPriority{BusyAt: tt.busyAt, MaxHold: time.Second})
				runLoad(t, l)
				for range tt.requests {
					l.spend(tt.each)
				}
				time.Sleep(loadWindow + time.Millisecond) // past the first tick
				if got := l.current(); got != tt.wantLoad {
					t.Errorf("load %v, want %v", got, tt.wantLoad)
				}
				if got := l.busy() != nil; got != tt.wantBusy {
					t.Errorf("busy %v, want %v", got, tt.wantBusy)
				}
				time.Sleep(loadWindow) // a window without requests
				if l.current() != 0 || l.busy() != nil {
					t.Errorf("after an idle window: load %v, busy %v", l.current(), l.busy() != nil)
				}
			})
		})
	}
}

// TestIngestLoadWait: a delivery waits until ingest eases, maxHold passes,
// its context ends or the relay stops, whichever is first (fake clock).
func TestIngestLoadWait(t *testing.T) {
	const (
		w       = loadWindow
		maxHold = 5 * w
	)
	tests := []struct {
		name      string
		busyFor   int           // windows in a row at a busy load
		cancelAt  time.Duration // the delivery's context ends this long into the wait (0: never)
		stopRelay bool
		want      time.Duration
	}{
		// The wait starts 1 ms into the second window; ingest eases at
		// the tick after its last busy window.
		{name: "ingest eases", busyFor: 3, want: 3*w - time.Millisecond},
		{name: "ingest stays busy", busyFor: 10, want: maxHold},
		{name: "context ends", busyFor: 10, cancelAt: 5 * time.Millisecond, want: 5 * time.Millisecond},
		{name: "relay stops", busyFor: 10, stopRelay: true, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newIngestLoad(IngestPriority{BusyAt: 2, MaxHold: maxHold})
				stopRelay := runLoad(t, l)
				var wg sync.WaitGroup
				quit := make(chan struct{})
				defer wg.Wait()
				defer close(quit)
				wg.Go(func() { // a load of 4 in each of the first busyFor windows
					time.Sleep(w / 2) // away from the ticks
					for range tt.busyFor {
						l.spend(4 * w)
						select {
						case <-time.After(w):
						case <-quit:
							return
						}
					}
				})
				time.Sleep(w + time.Millisecond)
				eased := l.busy()
				if eased == nil {
					t.Fatal("not busy at a load of 4 with busy_at 2")
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.cancelAt > 0 {
					time.AfterFunc(tt.cancelAt, cancel)
				}
				if tt.stopRelay {
					stopRelay()
				}
				start := time.Now()
				l.wait(ctx, eased)
				if got := time.Since(start); got != tt.want {
					t.Errorf("waited %v, want %v", got, tt.want)
				}
			})
		})
	}
}

// TestIngestCountsVerifiedRequests: the time a signed request spends is
// counted; one that fails verification is not.
func TestIngestCountsVerifiedRequests(t *testing.T) {
	h := newTestIngest(t, &memStore{})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/webhooks/recall", strings.NewReader(sampleBody)))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d, want 401", w.Code)
	}
	if n := h.load.spent.Load(); n != 0 {
		t.Errorf("an unsigned request counted %v", time.Duration(n))
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, signed(t, testSecret, "msg_1", testNow, sampleBody, "svix"))
	if w.Code != http.StatusOK {
		t.Fatalf("signed: %d, want 200", w.Code)
	}
	if n := h.load.spent.Load(); n <= 0 {
		t.Errorf("a signed request counted %v", time.Duration(n))
	}
}

// busyIngestConfig has sink b, and deliveries that wait up to an hour for a
// busy ingest.
func busyIngestConfig(t *testing.T, grace string) string {
	return strings.Replace(testServerConfig(t.TempDir(), onlyB), "  shutdown_grace: 5s\n",
		"  shutdown_grace: "+grace+"\n  ingest_priority: {busy_at: 2, max_hold: 1h}\n", 1)
}

// testDecidesBusy leaves it to the test to say when ingest is busy: the
// load is never measured.
func testDecidesBusy(srv *Server) { srv.load.window = 24 * time.Hour }

// waitYielding waits until sink b has n deliveries giving way.
func waitYielding(h *harness, n int) {
	h.t.Helper()
	want := fmt.Sprintf(`relay_deliveries_yielding{sink="b"} %d`+"\n", n)
	eventually(h.t, 10*time.Second, want, func() bool { return strings.Contains(h.scrape(), want) })
}

// TestDeliveriesGiveWayToBusyIngest: a delivery waits while ingest is busy
// and goes as soon as it eases.
func TestDeliveriesGiveWayToBusyIngest(t *testing.T) {
	tr := &testRegistry{}
	b := newRecorder()
	tr.set("b", b.send)
	h := startHarness(t, tr, busyIngestConfig(t, "5s"), testDecidesBusy)

	h.srv.load.setBusy(true)
	h.mustAccept("msg_p1", sampleBody)
	waitYielding(h, 1)
	b.none(t, 0)

	h.srv.load.setBusy(false)
	if d := b.wait(t, 10*time.Second); d.MsgID != "msg_p1" {
		t.Errorf("delivered %s, want msg_p1", d.MsgID)
	}
	waitYielding(h, 0)
	if strings.Contains(h.scrape(), `relay_delivery_yield_seconds_total{sink="b"} 0`+"\n") {
		t.Error("relay_delivery_yield_seconds_total did not count the wait")
	}
}

// TestStopEndsTheWait: at shutdown no more webhooks come, so a delivery
// waiting for ingest goes at once instead of holding the shutdown for
// max_hold (an hour here, as is the grace).
func TestStopEndsTheWait(t *testing.T) {
	tr := &testRegistry{}
	b := newRecorder()
	tr.set("b", b.send)
	srv := startServer(t, tr, busyIngestConfig(t, "1h"), testDecidesBusy)
	h := newHarness(t, srv)

	srv.load.setBusy(true)
	h.mustAccept("msg_s1", sampleBody)
	waitYielding(h, 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the shutdown if the test fails before it does
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(ctx) }()
	if d := b.wait(t, 10*time.Second); d.MsgID != "msg_s1" {
		t.Errorf("delivered %s, want msg_s1", d.MsgID)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v", err)
	}
}
