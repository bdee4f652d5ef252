package relay

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

func TestRouteRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		route map[string][]string
	}{
		{"one sink one rule", map[string][]string{"slack": {"zoom-alerts"}}},
		{"sorted sinks", map[string][]string{"b": {"r1", "r2"}, "a": {"r3"}, "c-_9": {"x"}}},
		{"escaped rule names", map[string][]string{"s": {`quote"d`, `back\slash`, "<html>&", "tab\t", "ünï", "\u2028"}}},
		{"empty rule list", map[string][]string{"s": {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, _ := json.Marshal(tt.route)
			got := encodeRoute(tt.route, slices.Sorted(maps.Keys(tt.route)))
			if got != string(want) {
				t.Fatalf("encodeRoute = %s, want %s (encoding/json)", got, want)
			}
			back := parseRoute(nats.Header{hdrRoute: {got}})
			if !reflect.DeepEqual(back, tt.route) {
				t.Fatalf("parseRoute(%s) = %v, want %v", got, back, tt.route)
			}
		})
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		header string
		want   map[string][]string
	}{
		{"", nil},
		{`{}`, map[string][]string{}},
		{`{"a":["r"]}`, map[string][]string{"a": {"r"}}},
		{`{ "a" : [ "r" ] }`, map[string][]string{"a": {"r"}}}, // encoding/json's job
		{`{"a":["r\"q"]}`, map[string][]string{"a": {`r"q`}}},
		{`{"a":null}`, map[string][]string{"a": nil}},
		{`{"a":["r"],"a":["s"]}`, map[string][]string{"a": {"s"}}},
		{`{"a":["r"]`, nil},
		{`{"a":["r"],}`, nil},
		{`{"a":"r"}`, nil},
		{`not json`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got := parseRoute(nats.Header{hdrRoute: {tt.header}})
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseRoute(%q) = %#v, want %#v", tt.header, got, tt.want)
			}
		})
	}
}

// FuzzRoute holds the fast paths to encoding/json: a header the fast parser
// accepts decodes as encoding/json decodes it, and a route built from the
// input encodes as encoding/json encodes it.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{`{"a":["r"]}`, `{"a":["r","s"],"b":[]}`, `{"a":["<"]}`, `{"a":["r"],"a":["s"]}`, `{"":[""]}`, `{"a":[""],"b":["\u00e9"]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fast, ok := parseRouteFast(s); ok {
			var want map[string][]string
			if err := json.Unmarshal([]byte(s), &want); err != nil {
				t.Fatalf("fast path accepted %q, encoding/json: %v", s, err)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("parseRouteFast(%q) = %#v, encoding/json %#v", s, fast, want)
			}
		}
		// A route from the input: sinks and rules split on "|" and ",".
		route := map[string][]string{}
		for part := range strings.SplitSeq(s, "|") {
			sink, rules, _ := strings.Cut(part, "=")
			route[sink] = strings.Split(rules, ",")
		}
		want, _ := json.Marshal(route)
		if got := encodeRoute(route, slices.Sorted(maps.Keys(route))); got != string(want) {
			t.Fatalf("encodeRoute(%#v) = %s, encoding/json %s", route, got, want)
		}
		// Invalid UTF-8 does not survive encoding/json either.
		if back := parseRoute(nats.Header{hdrRoute: {string(want)}}); utf8.ValidString(s) && !reflect.DeepEqual(back, route) {
			t.Fatalf("parseRoute(%s) = %#v, want %#v", want, back, route)
		}
	})
}

func TestParsePubAck(t *testing.T) {
	tests := []struct {
		ack     string
		dup     bool
		wantErr string // "" for none
	}{
		{`{"stream":"RELAY_EVENTS","seq":1}`, false, ""},
		{`{"stream":"RELAY_EVENTS","seq":123456789,"duplicate":true}`, true, ""},
		{`{"stream":"RELAY_EVENTS","domain":"hub","seq":7,"duplicate":true}`, true, ""}, // the decoder's path
		{`{"stream":"RELAY_EVENTS","seq":7,"duplicate":false}`, false, ""},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, false, "publish refused: maximum messages exceeded (code 503, err_code 10077)"},
		{`{"stream":"OTHER","seq":1}`, false, `publish acknowledged by stream "OTHER", want "RELAY_EVENTS"`},
		{`{"stream":"RELAY_EVENTS","seq":}`, false, "unreadable publish acknowledgement"},
		{``, false, "unreadable publish acknowledgement"},
	}
	for _, tt := range tests {
		t.Run(tt.ack, func(t *testing.T) {
			dup, err := parsePubAck([]byte(tt.ack))
			if tt.wantErr == "" {
				if err != nil || dup != tt.dup {
					t.Fatalf("parsePubAck = %v, %v; want %v, nil", dup, err, tt.dup)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("parsePubAck error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
