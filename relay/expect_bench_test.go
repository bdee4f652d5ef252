package relay

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// BenchmarkExpectationTimers opens many expectation timers on a real relay
// (embedded store, storage.sync: always) and lets them all run out: the
// heap and disk that the open timers hold, how fast they are started, and
// how late each missed event is stored after its deadline (its
// received_at less its payload's deadline, read at a fake sink the missed
// events are routed to). docs/benchmarks.md has the figures:
//
//	RELAY_TIMERS=100000 RELAY_TIMERS_SPREAD=100s go test -run '^$' -bench ExpectationTimers -benchtime 1x -timeout 30m ./relay
//
// RELAY_TIMERS (default 10000) timers are started with deadlines spread
// evenly over RELAY_TIMERS_SPREAD (default 10s), starting 5 s after the
// last timer is started; RELAY_TIMERS_SPREAD=0s puts every deadline at the
// same instant.
func BenchmarkExpectationTimers(b *testing.B) {
	n := envInt(b, "RELAY_TIMERS", 10000)
	spread := envDuration(b, "RELAY_TIMERS_SPREAD", 10*time.Second)
	for range b.N {
		benchTimers(b, n, spread)
	}
}

func benchTimers(b *testing.B, n int, spread time.Duration) {
	dir := b.TempDir()
	var late []time.Duration
	var mu sync.Mutex
	got := make(chan struct{}, n)
	tr := &testRegistry{}
	tr.set("a", func(_ context.Context, d sinks.Delivery) error {
		p, _ := d.Data["payload"].(map[string]any)
		deadline, err := time.Parse(time.RFC3339Nano, fmt.Sprint(p["deadline"]))
		if err != nil {
			return err
		}
		mu.Lock()
		late = append(late, d.ReceivedAt.Sub(deadline))
		mu.Unlock()
		got <- struct{}{}
		return nil
	})
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
storage:
  dir: %s
sources:
  recall:
    secrets: [%s]
sinks:
  a: {type: fake, concurrency: 64}
rules:
  - name: missed
    when: event == "relay.expectation_missed"
    sinks: [a]
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript"
    key: recording.id
    within: 1h
`, filepath.Join(dir, "data"), testSecret)
	path := filepath.Join(dir, "relay.yaml")
	cfg, err := LoadConfig(writeFile(b, path, yaml), LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		b.Fatal(err)
	}
	srv := New(cfg, Options{Registry: tr.registry(), ConfigPath: path, Environ: []string{}, Logger: discardLogger()})
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Stop(ctx) }()

	heapBefore := heapInUse()
	// Deadlines are set once every timer is started: the start rate is
	// measured first, on deadlines far in the future, then each timer is
	// started again (a new after event replaces it) with its real deadline.
	startAll := func(deadline func(i int) time.Time, round string) time.Duration {
		began := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					rec := fmt.Sprintf("rec_%07d", i)
					body := recordingDone(rec)
					hit := rules.Hit{Expectation: "transcript-arrives", Key: rec, Start: true, Deadline: deadline(i)}
					ev := Event{Source: "recall", MsgID: "msg_" + round + rec, Body: []byte(body)}
					if err := srv.timers.start(ctx, hit, ev); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(began)
	}
	far := time.Now().Add(time.Hour)
	took := startAll(func(int) time.Time { return far }, "a")
	b.ReportMetric(float64(n)/took.Seconds(), "starts/s")
	b.ReportMetric(float64(heapInUse()-heapBefore)/float64(n), "heap-B/timer")
	b.ReportMetric(float64(heapInUse()-heapBefore)/1e6, "heap-MB")
	b.ReportMetric(float64(dirSize(filepath.Join(dir, "data")))/1e6, "disk-MB")
	if open, err := srv.timers.open(ctx, "transcript-arrives"); err != nil || open != uint64(n) {
		b.Fatalf("open timers %d (%v), want %d", open, err, n)
	}

	// The first deadline leaves room for the second round of starts.
	first := time.Now().Add(took + 5*time.Second)
	startAll(func(i int) time.Time { return first.Add(time.Duration(int64(spread) * int64(i) / int64(n))) }, "b")
	for i := 0; i < n; i++ {
		select {
		case <-got:
		case <-time.After(time.Until(first.Add(spread)) + 5*time.Minute):
			b.Fatalf("%d of %d missed events delivered", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(late)
	q := func(p float64) float64 { return float64(late[int(p*float64(len(late)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "late-p50-ms")
	b.ReportMetric(q(0.99), "late-p99-ms")
	b.ReportMetric(q(1), "late-max-ms")
	if late[0] < 0 {
		b.Errorf("a missed event stored %s before its deadline", -late[0])
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return d
	}
	return def
}

func writeFile(b *testing.B, path, content string) string {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}
