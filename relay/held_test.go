package relay

import (
	"context"
	"testing"
	"time"
)

// TestHeldQueueRoom checks that a worker fetches only with half of both
// limits free, and asks for the room left in each: waitRoom, started with
// the messages added, returns only after the given number of them are
// settled, with the room then left (a return before would report the room
// before those settles, which differs).
func TestHeldQueueRoom(t *testing.T) {
	tests := []struct {
		name      string
		sizes     []int // added, in order
		settle    int   // how many of them are then taken and settled
		wantN     int
		wantBytes int
	}{
		{name: "empty", wantN: 8, wantBytes: 1000},
		{name: "half the count, little bytes", sizes: []int{10, 10, 10, 10}, wantN: 4, wantBytes: 960},
		{name: "over half the count", sizes: []int{10, 10, 10, 10, 10}, settle: 1, wantN: 4, wantBytes: 960},
		{name: "over half the bytes", sizes: []int{300, 300}, settle: 1, wantN: 7, wantBytes: 700},
		{name: "over half of both", sizes: []int{100, 100, 100, 100, 100, 100}, settle: 2, wantN: 4, wantBytes: 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newHeldQueue(8, 1000)
			for _, size := range tt.sizes {
				q.add(&held{size: size})
			}
			type room struct{ n, bytes int }
			got := make(chan room, 1)
			go func() {
				n, bytes := q.waitRoom(context.Background())
				got <- room{n, bytes}
			}()
			for range tt.settle {
				q.settled(q.next())
			}
			select {
			case r := <-got:
				if r != (room{tt.wantN, tt.wantBytes}) {
					t.Errorf("waitRoom = %d messages, %d bytes; want %d, %d", r.n, r.bytes, tt.wantN, tt.wantBytes)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("waitRoom still waiting 10 s after %d settles", tt.settle)
			}
			left := q.drain()
			if q.count != 0 || q.bytes != 0 || len(left) != len(tt.sizes)-tt.settle {
				t.Errorf("drain: %d handed back, count %d, bytes %d; want %d, 0, 0", len(left), q.count, q.bytes, len(tt.sizes)-tt.settle)
			}
		})
	}
}

func TestHeldBytes(t *testing.T) {
	tests := []struct {
		maxPayload int64
		want       int
	}{
		{1 << 20, minHeldBytes},
		{8 << 20, 4*(8<<20) + 4*heldOverhead},
	}
	for _, tt := range tests {
		if got := heldBytes(tt.maxPayload); got != tt.want {
			t.Errorf("heldBytes(%d) = %d, want %d", tt.maxPayload, got, tt.want)
		}
		if got := heldBytes(tt.maxPayload); got/2 < int(tt.maxPayload)+heldOverhead {
			t.Errorf("heldBytes(%d) = %d: half of it cannot take the largest message", tt.maxPayload, got)
		}
	}
}
