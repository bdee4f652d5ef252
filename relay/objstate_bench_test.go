package relay

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/relay-dev/relay/rules"
)

// Benchmarks of order awareness (stale, previous_status), on a real
// embedded store; docs/benchmarks.md has the figures:
//
//	go test -run '^$' -bench 'ObjectState' -benchtime 100000x ./relay
//
// Hit is an event of an object the relay has in memory: annotate (before
// the rules) and record (after the store's confirmation); the bucket is
// written by a background writer. New is an event of an object the relay
// has never seen, while the cache holds the whole bucket (it was loaded at
// start and never overflowed). Miss is the same once the cache has
// overflowed: the bucket is read first. Memory is the heap each tracked
// object holds in the cache (reported as B/object).

func benchObjects(b *testing.B) *objects {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := openJetStream(ctx, StorageConfig{Dir: b.TempDir(), SyncInterval: time.Second, DedupeWindow: time.Hour}, 1<<20, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.close)
	kv, err := s.openObjects(ctx, 168*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	o := newObjects(s.nc, kv, 168*time.Hour, time.Now, discardLogger())
	if err := o.load(ctx, false); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(o.stop) // before the store closes
	return o
}

func benchEnv(b *testing.B, id int, at time.Time) *rules.Env {
	env, err := rules.NewEnv([]byte(transcriptEvent("done", fmt.Sprintf("t%08d", id), at.Format(time.RFC3339Nano))), rules.Meta{})
	if err != nil {
		b.Fatal(err)
	}
	return env
}

func BenchmarkObjectStateHit(b *testing.B) {
	o := benchObjects(b)
	const objects = 1000
	envs := make([]*rules.Env, objects)
	at := time.Now()
	for i := range envs {
		envs[i] = benchEnv(b, i, at)
		o.record(o.annotate(context.Background(), envs[i]))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.record(o.annotate(context.Background(), envs[i%objects]))
	}
}

func BenchmarkObjectStateNew(b *testing.B) { benchObjectStateNew(b, true) }

func BenchmarkObjectStateMiss(b *testing.B) { benchObjectStateNew(b, false) }

func benchObjectStateNew(b *testing.B, complete bool) {
	o := benchObjects(b)
	o.complete = complete
	envs := make([]*rules.Env, b.N)
	at := time.Now()
	for i := range envs {
		envs[i] = benchEnv(b, i, at)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.record(o.annotate(context.Background(), envs[i]))
	}
}

func BenchmarkObjectStateMemory(b *testing.B) {
	o := newObjects(nil, nil, 168*time.Hour, time.Now, discardLogger())
	o.max = b.N + 1
	envs := make([]*rules.Env, b.N)
	at := time.Now()
	for i := range envs {
		envs[i] = benchEnv(b, i, at)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.record(o.annotate(context.Background(), envs[i]))
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "B/object")
	runtime.KeepAlive(envs)
	runtime.KeepAlive(o)
}
