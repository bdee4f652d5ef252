package relay

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// loadWindow is the period over which the ingest load is averaged.
const loadWindow = 20 * time.Millisecond

// ingestLoad measures how busy ingest is and lets deliveries give way to it.
// The load is the average number of webhook requests in flight over the last
// loadWindow (the time they spent, divided by the window: Little's law).
// Ingest is busy while the load is at busyAt or more; then a delivery waits,
// at most maxHold, for ingest to ease before it sends.
//
// Ingest and delivery share the CPU (and, embedded, the store). In a burst,
// every delivery made competes with the webhooks waiting for an answer, and
// a sender that waits too long retries or gives up. Holding deliveries back
// while ingest is saturated answers the burst faster. The deliveries are
// already stored, and they catch up once the burst has passed. maxHold
// bounds the wait, so deliveries never stop under sustained load.
//
// The count of requests in flight at any one instant would not do: under
// load it swings from the whole burst down to none and back within a
// millisecond or two, as the store confirms writes in groups, and it
// reaches a burst's size now and then at any rate.
type ingestLoad struct {
	busyAt  float64       // 0: deliveries never wait
	maxHold time.Duration // the longest one delivery waits
	window  time.Duration // loadWindow; tests may lengthen it

	spent atomic.Int64                  // ns spent by requests that finished in this window
	load  atomic.Uint64                 // float64 bits: the last window's load
	eased atomic.Pointer[chan struct{}] // non-nil while busy; closed when ingest eases
}

func newIngestLoad(p IngestPriority) *ingestLoad {
	return &ingestLoad{busyAt: float64(p.BusyAt), maxHold: p.MaxHold, window: loadWindow}
}

// spend records the time one request spent in flight.
func (l *ingestLoad) spend(d time.Duration) { l.spent.Add(int64(d)) }

// run updates the load every window until ctx is done, and then lets
// every waiting delivery go.
func (l *ingestLoad) run(ctx context.Context) {
	t := time.NewTicker(l.window)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			l.setBusy(false)
			return
		case now := <-t.C:
			load := float64(l.spent.Swap(0)) / float64(now.Sub(last))
			last = now
			l.load.Store(math.Float64bits(load))
			l.setBusy(l.busyAt > 0 && load >= l.busyAt)
		}
	}
}

// setBusy is called by run only.
func (l *ingestLoad) setBusy(busy bool) {
	cur := l.eased.Load()
	switch {
	case busy && cur == nil:
		ch := make(chan struct{})
		l.eased.Store(&ch)
	case !busy && cur != nil:
		l.eased.Store(nil)
		close(*cur)
	}
}

// current is the last window's load.
func (l *ingestLoad) current() float64 { return math.Float64frombits(l.load.Load()) }

// busy returns nil when ingest is not busy, and otherwise a channel that is
// closed when it eases.
func (l *ingestLoad) busy() <-chan struct{} {
	if p := l.eased.Load(); p != nil {
		return *p
	}
	return nil
}

// wait returns when eased is closed, when maxHold has passed or when ctx is
// done, whichever comes first.
func (l *ingestLoad) wait(ctx context.Context, eased <-chan struct{}) {
	t := time.NewTimer(l.maxHold)
	defer t.Stop()
	select {
	case <-eased:
	case <-t.C:
	case <-ctx.Done():
	}
}
