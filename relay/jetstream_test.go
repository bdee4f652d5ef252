package relay

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPubAckFastPathOnRealServer: the acknowledgements the embedded server
// really sends for a fresh publish to the events stream and for a duplicate
// take parsePubAckFast, so that an upgrade of nats-server that changes
// their bytes fails here rather than silently sending every accepted event
// through the JSON decoder.
func TestPubAckFastPathOnRealServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openTestStore(ctx, t)
	defer s.close()

	for _, want := range []struct {
		name string
		dup  bool
	}{{"fresh publish", false}, {"duplicate", true}} {
		// As Append publishes: a routed subject and <source>:<msg id>.
		m := &nats.Msg{Subject: eventSubject("recall", []string{"a"}), Data: []byte(sampleBody), Header: nats.Header{}}
		m.Header[jetstream.MsgIDHeader] = []string{"recall:msg_fast"}
		reply, err := s.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatalf("%s: %v", want.name, err)
		}
		dup, ok := parsePubAckFast(reply.Data)
		if !ok {
			t.Fatalf("%s: the server's acknowledgement %s misses the fast path", want.name, reply.Data)
		}
		if dup != want.dup {
			t.Errorf("%s: %s read as duplicate=%v", want.name, reply.Data, dup)
		}
	}
}

func TestParsePubAckFast(t *testing.T) {
	tests := []struct {
		ack     string
		dup, ok bool
	}{
		{`{"stream":"RELAY_EVENTS","seq":1}`, false, true},
		{`{"stream":"RELAY_EVENTS","seq":42,"duplicate": true}`, true, true}, // as nats-server writes it
		{`{"stream":"RELAY_EVENTS","seq":42,"duplicate":true}`, true, true},
		{`{"stream":"RELAY_EVENTS","seq":7,"duplicate":false}`, false, false},
		{`{"stream":"RELAY_EVENTS","domain":"hub","seq":7}`, false, false},
		{`{"stream":"RELAY_EVENTS","seq":}`, false, false},
		{`{"stream":"OTHER","seq":1}`, false, false},
		{``, false, false},
	}
	for _, tt := range tests {
		if dup, ok := parsePubAckFast([]byte(tt.ack)); dup != tt.dup || ok != tt.ok {
			t.Errorf("parsePubAckFast(%s) = %v, %v; want %v, %v", tt.ack, dup, ok, tt.dup, tt.ok)
		}
	}
}
