package relay

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestBatchWriter: within one batch, add accumulates lines and put keeps
// the latest; close stores what is waiting before it returns.
func TestBatchWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := openJetStream(ctx, StorageConfig{Dir: t.TempDir(), SyncInterval: time.Second, DedupeWindow: time.Hour}, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	kv, err := s.openObjects(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *nats.Msg, 16)
	sub, err := s.nc.ChanSubscribe("test.batch.>", got)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	w := newBatchWriter(s.nc)
	w.add("test.batch.lines", []byte("one"))
	w.add("test.batch.lines", []byte("two"))
	w.put("test.batch.state", []byte("old"))
	w.put("test.batch.state", []byte("new"))
	want := map[string]string{"test.batch.lines": "one\ntwo\n", "test.batch.state": "new"}
	for range want {
		select {
		case m := <-got:
			if string(m.Data) != want[m.Subject] {
				t.Errorf("%s: %q, want %q", m.Subject, m.Data, want[m.Subject])
			}
			delete(want, m.Subject)
		case <-time.After(10 * time.Second):
			t.Fatalf("no batch within 10s; still waiting for %v", want)
		}
	}
	select {
	case m := <-got:
		t.Errorf("a second message: %s %q", m.Subject, m.Data)
	case <-time.After(3 * batchEvery):
	}

	w.put("$KV."+objectsBucket+".k", []byte("latest"))
	w.close()
	e, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	if string(e.Value()) != "latest" {
		t.Errorf("after close: %q", e.Value())
	}
}
