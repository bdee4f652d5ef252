package relay

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
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
