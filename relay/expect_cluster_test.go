package relay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// TestClusterExpectationsTwoRelays runs two relays on one 3-node cluster
// (replicas: 3): timers started through either relay, some settled through
// the other, each fire as exactly one missed event; and an event one relay
// accepted makes a late event of the same object stale at the other.
func TestClusterExpectationsTwoRelays(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := startCluster(t, 3)
	var mu sync.Mutex
	missed := map[string]int{} // by key
	var stale []string
	record := func(_ context.Context, d sinks.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if d.Event == rules.MissedEvent {
			p, _ := d.Data["payload"].(map[string]any)
			missed[fmt.Sprint(p["key"])]++
		} else {
			stale = append(stale, d.MsgID)
		}
		return nil
	}
	yaml := clusterConfig(t, servers, `
rules:
  - name: missed
    when: event == "relay.expectation_missed"
    sinks: [a]
  - name: late
    when: stale
    sinks: [a]
expectations:
  - name: transcript-arrives
    after: event == "recording.done"
    expect: object == "transcript"
    key: recording.id
    within: 3s
`)
	var relays []*harness
	for range 2 {
		tr := &testRegistry{}
		tr.set("a", record)
		relays = append(relays, startHarness(t, tr, yaml))
	}

	const n = 20
	var want []string
	for i := range n {
		rec := fmt.Sprintf("rec_%02d", i)
		relays[i%2].mustAccept("msg_after_"+rec, recordingDone(rec))
		if i%4 == 0 { // settled through the other relay
			relays[(i+1)%2].mustAccept("msg_t_"+rec, transcriptDone(rec))
			continue
		}
		want = append(want, rec)
	}
	eventually(t, 60*time.Second, "every missed event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(missed) >= len(want)
	})
	for _, h := range relays {
		settled(t, h.srv, "a")
	}
	mu.Lock()
	for _, rec := range want {
		if missed[rec] != 1 {
			t.Errorf("%s: %d missed events, want 1", rec, missed[rec])
		}
	}
	if len(missed) != len(want) {
		t.Errorf("missed events for %d keys, want %d: %v", len(missed), len(want), missed)
	}
	mu.Unlock()

	// Order state crosses relays: the second relay learns of the first's
	// done through the bucket's watch.
	relays[0].mustAccept("msg_done", transcriptEvent("done", "t_x", "2025-03-14T15:47:09Z"))
	eventually(t, 20*time.Second, "the other relay to know the object", func() bool {
		o := relays[1].srv.ingest.objects
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.cache["transcript.t_x"].Status == "done"
	})
	relays[1].mustAccept("msg_late", transcriptEvent("processing", "t_x", "2025-03-14T15:00:00Z"))
	eventually(t, 20*time.Second, "the late event flagged stale", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(stale, ",") == "msg_late"
	})
}
