package relay

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkDedupeWindowMemory measures what the JetStream duplicate window
// costs per remembered message id: the heap of an embedded store after
// publishing b.N events with ids, minus the same without ids. Report:
// dedupe-bytes/id. Run with a fixed count, e.g. -benchtime 200000x.
func BenchmarkDedupeWindowMemory(b *testing.B) {
	heapAfter := func(withIDs bool) uint64 {
		s, err := openJetStream(context.Background(), StorageConfig{
			Dir: b.TempDir(), SyncInterval: time.Minute, DedupeWindow: 24 * time.Hour,
		}, 1<<20, discardLogger())
		if err != nil {
			b.Fatal(err)
		}
		defer s.close()
		body := []byte(sampleBody)
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("msg_%027d", i)
			e := Event{Source: "recall", MsgID: id, Body: body, ReceivedAt: time.Now()}
			if !withIDs {
				// A unique subject-less publish: same message, no id.
				if _, err := s.js.Publish(context.Background(), eventsSubject+"recall", body); err != nil {
					b.Fatal(err)
				}
				continue
			}
			if _, err := s.Append(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	b.ReportAllocs()
	without := heapAfter(false)
	with := heapAfter(true)
	per := float64(int64(with)-int64(without)) / float64(b.N)
	b.ReportMetric(per, "dedupe-bytes/id")
}

// BenchmarkSeenIDsMemory measures what an id read back at start costs the
// relay's own set (seenIDs), which answers for the ids accepted before a
// restart: the heap after adding b.N ids of the usual shape ("recall:" and
// a Svix id), their strings included, minus before. Report: seen-bytes/id. Run with a fixed count,
// e.g. -benchtime 1000000x.
func BenchmarkSeenIDsMemory(b *testing.B) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	var s seenIDs
	now := time.Now().UnixNano()
	b.ResetTimer()
	for i := range b.N {
		// The key as loadSeen makes it: a string of its own per id.
		s.add(fmt.Sprintf("recall:msg_%027d", i), now+int64(i))
	}
	b.StopTimer()
	after := heap()
	b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "seen-bytes/id")
	runtime.KeepAlive(&s)
}

// BenchmarkSubjectIndexMemory measures what JetStream keeps in memory per
// distinct subject of a file stream (its per-subject index): the heap
// after b.N publishes to as many subjects, minus b.N to one subject. It is
// why the delivery trail shares one subject among many events (trail.go).
// Report: bytes/subject. Run with a fixed count, e.g. -benchtime 200000x.
func BenchmarkSubjectIndexMemory(b *testing.B) {
	heapAfter := func(distinct bool) uint64 {
		s, err := openJetStream(context.Background(), StorageConfig{
			Dir: b.TempDir(), SyncInterval: time.Minute, DedupeWindow: time.Minute,
		}, 1<<20, discardLogger())
		if err != nil {
			b.Fatal(err)
		}
		defer s.close()
		ctx := context.Background()
		if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
			b.Fatal(err)
		}
		line := []byte("123456 archive delivered 1 1764540000000000000 ")
		var futures []jetstream.PubAckFuture
		for i := 0; i < b.N; i++ {
			subj := "t.recall.bXNnXzJhYmNkZWZnaGlqa2xtbm9wcXJzdHV2.archive"
			if distinct {
				subj = fmt.Sprintf("t.recall.bXNnXzJh%027d.archive", i)
			}
			f, err := s.js.PublishAsync(subj, line)
			if err != nil {
				b.Fatal(err)
			}
			if futures = append(futures, f); len(futures) == 1000 {
				for _, f := range futures {
					<-f.Ok()
				}
				futures = futures[:0]
			}
		}
		for _, f := range futures {
			<-f.Ok()
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	one := heapAfter(false)
	many := heapAfter(true)
	b.ReportMetric(float64(int64(many)-int64(one))/float64(b.N), "bytes/subject")
}
