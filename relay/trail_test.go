package relay

import (
	"testing"
	"time"
)

// TestTrailLine: a record reads back as written, the error on one line.
func TestTrailLine(t *testing.T) {
	at := time.Unix(1764543600, 123456789).UTC()
	for _, tc := range []struct {
		name                  string
		id                    uint64
		sink, status, errText string
		attempts              int
		wantErr               string
	}{
		{"delivered", 1, "archive", StatusDelivered, "", 1, ""},
		{"retrying", 1 << 40, "oncall-slack", StatusRetrying, "status 503: busy", 4, "status 503: busy"},
		{"error on one line", 7, "api", StatusDeadLettered, "status 400:\nbad\r\nrequest", 1, "status 400: bad request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, sink, st, ok := parseTrailLine(trailLine(tc.id, tc.sink, tc.status, tc.attempts, at, tc.errText))
			if !ok || id != tc.id || sink != tc.sink || st.Status != tc.status || st.Attempts != tc.attempts ||
				st.LastError != tc.wantErr || st.LastAttemptAt == nil || !st.LastAttemptAt.Equal(at) {
				t.Errorf("read back %v %d %s %+v", ok, id, sink, st)
			}
		})
	}
}

// FuzzTrailLine: any bytes parse without a panic, and a record written
// from any values reads back with them.
func FuzzTrailLine(f *testing.F) {
	f.Add([]byte("12 archive delivered 1 1764543600123456789 "), uint64(12), "archive", 3, "boom")
	f.Add([]byte("x"), uint64(0), "", 0, "")
	f.Fuzz(func(t *testing.T, raw []byte, id uint64, sink string, attempts int, errText string) {
		parseTrailLine(raw)
		if sink == "" || !plainName(sink) || attempts < 0 {
			return
		}
		at := time.Unix(0, 1764543600123456789)
		gotID, gotSink, st, ok := parseTrailLine(trailLine(id, sink, StatusRetrying, attempts, at, errText))
		if !ok || gotID != id || gotSink != sink || st.Attempts != attempts || st.LastError != oneLine(errText, 512) {
			t.Errorf("%d %q %d %q read back as %v %d %q %+v", id, sink, attempts, errText, ok, gotID, gotSink, st)
		}
	})
}

// plainName reports whether s could be a sink's name in a record: no
// space or line break.
func plainName(s string) bool {
	for _, r := range s {
		if r == ' ' || r == '\n' || r == '\r' {
			return false
		}
	}
	return true
}

// BenchmarkTrailLine: the record a worker writes for every delivery.
func BenchmarkTrailLine(b *testing.B) {
	at := time.Now()
	for b.Loop() {
		_ = trailLine(123456789, "archive", StatusDelivered, 1, at, "")
	}
}
