package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// runLoad starts l.run in the test's bubble and stops it at the end.
func runLoad(t *testing.T, l *ingestLoad) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
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
				runCtx, stopRelay := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				defer wg.Wait()
				defer stopRelay()
				wg.Go(func() { l.run(runCtx) })
				wg.Go(func() { // a load of 4 in each of the first busyFor windows
					time.Sleep(w / 2) // away from the ticks
					for range tt.busyFor {
						l.spend(4 * w)
						select {
						case <-time.After(w):
						case <-runCtx.Done():
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

// TestDeliveriesGiveWayToBusyIngest: a delivery waits while ingest is busy
// and goes as soon as it eases.
func TestDeliveriesGiveWayToBusyIngest(t *testing.T) {
	tr := &testRegistry{}
	b := newRecorder()
	tr.set("b", b.send)
	yaml := strings.Replace(testServerConfig(t.TempDir(), onlyB),
		"  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  ingest_priority: {busy_at: 2, max_hold: 1h}\n", 1)
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, Options{Registry: tr.registry(), ConfigPath: path, Environ: []string{}, Logger: newTestLogger(t)})
	// The test decides when ingest is busy: the load is never measured.
	srv.load.window = 24 * time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	h := newHarness(t, srv)

	srv.load.setBusy(true)
	h.mustAccept("msg_p1", sampleBody)
	eventually(t, 10*time.Second, "the delivery gives way", func() bool {
		return strings.Contains(h.scrape(), `relay_deliveries_yielding{sink="b"} 1`)
	})
	b.none(t, 0)

	srv.load.setBusy(false)
	if d := b.wait(t, 10*time.Second); d.MsgID != "msg_p1" {
		t.Errorf("delivered %s, want msg_p1", d.MsgID)
	}
	body := h.scrape()
	if !strings.Contains(body, `relay_deliveries_yielding{sink="b"} 0`) {
		t.Error("relay_deliveries_yielding not back to 0")
	}
	if strings.Contains(body, `relay_delivery_yield_seconds_total{sink="b"} 0`+"\n") {
		t.Error("relay_delivery_yield_seconds_total did not count the wait")
	}
}
