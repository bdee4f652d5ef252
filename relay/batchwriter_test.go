package relay

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestBatchWriter: within one batch, add accumulates lines and put keeps
// the latest; close returns once the store has every batch, the one
// waiting and those published before.
func TestBatchWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openTestStore(ctx, t)
	defer s.close()
	kv, err := s.openObjects(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The test's subscriber answers as a stream would: close waits for
	// the answers.
	got := make(chan *nats.Msg, 16)
	sub, err := s.nc.Subscribe("test.batch.>", func(m *nats.Msg) {
		got <- m
		if m.Reply != "" {
			_ = m.Respond(nil)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	// One batch, flushed by hand before the loop starts: no tick can split
	// it.
	w := makeBatchWriter(s.nc)
	w.add("test.batch.lines", []byte("one"))
	w.add("test.batch.lines", []byte("two"))
	w.put("test.batch.state", []byte("old"))
	w.put("test.batch.state", []byte("new"))
	w.flush()
	go w.run()
	want := map[string]string{"test.batch.lines": "one\ntwo\n", "test.batch.state": "new"}
	for len(want) > 0 {
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

	// Close waits for the store to have what ticks published just before
	// it (flushed here by hand: the same race), with nothing left waiting.
	w.put("$KV."+objectsBucket+".k", []byte("latest"))
	const ticked = 200
	for i := range ticked {
		w.put("$KV."+objectsBucket+".t"+strconv.Itoa(i), []byte("published"))
		w.flush()
	}
	w.close()
	stored := map[string]string{"k": "latest"}
	for i := range ticked {
		stored["t"+strconv.Itoa(i)] = "published"
	}
	for key, v := range stored {
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatalf("%s after close: %v", key, err)
		}
		if string(e.Value()) != v {
			t.Errorf("%s after close: %q, want %q", key, e.Value(), v)
		}
	}
}
