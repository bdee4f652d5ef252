package relay

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
)

// The Relay-Route header is the JSON object {"sink": ["rule", ...], ...}
// with its keys sorted, as encoding/json writes a map. It is written once
// per accepted event and read once per (event, sink), so both directions
// have a fast path for names that need no escaping, and fall back to
// encoding/json for anything else. FuzzRoute holds them to encoding/json.

// encodeRoute writes route as the Relay-Route header value; sinks are its
// keys, sorted (the caller has them: the event's subject names them too).
func encodeRoute(route map[string][]string, sinks []string) string {
	size := 2
	for sink, rules := range route {
		size += len(sink) + 6
		for _, r := range rules {
			size += len(r) + 3
		}
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, sink := range sinks {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, sink)
		b = append(b, ':', '[')
		for j, r := range route[sink] {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	return string(b)
}

// appendJSONString appends s as a JSON string the way encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	if plainJSON(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// plainJSON reports whether encoding/json writes s as itself between quotes:
// printable ASCII without the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// parseRoute decodes the Relay-Route header; nil when there is none or it
// cannot be read.
func parseRoute(h nats.Header) map[string][]string {
	v := h.Get(hdrRoute)
	if v == "" {
		return nil
	}
	if r, ok := parseRouteFast(v); ok {
		return r
	}
	var r map[string][]string
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil
	}
	return r
}

// parseRouteFast reads the compact form encodeRoute writes when no name
// needed escaping; ok is false for anything else.
func parseRouteFast(v string) (_ map[string][]string, ok bool) {
	if strings.IndexByte(v, '\\') >= 0 || len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
		return nil, false
	}
	rest := v[1 : len(v)-1]
	route := make(map[string][]string, 2)
	for rest != "" {
		sink, after, ok := cutQuoted(rest)
		if !ok || !strings.HasPrefix(after, ":[") {
			return nil, false
		}
		rest = after[2:]
		rules := []string{}
		for !strings.HasPrefix(rest, "]") {
			if len(rules) > 0 {
				if !strings.HasPrefix(rest, ",") {
					return nil, false
				}
				rest = rest[1:]
			}
			var r string
			if r, rest, ok = cutQuoted(rest); !ok {
				return nil, false
			}
			rules = append(rules, r)
		}
		rest = rest[1:]
		if _, dup := route[sink]; dup {
			return nil, false
		}
		route[sink] = rules
		if rest != "" {
			if rest[0] != ',' || len(rest) == 1 {
				return nil, false
			}
			rest = rest[1:]
		}
	}
	return route, true
}

// cutQuoted splits `"name"rest` (no escapes) into name and rest.
func cutQuoted(s string) (name, rest string, ok bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", false
	}
	name = s[1 : 1+end]
	if !plainJSON(name) {
		return "", "", false
	}
	return name, s[2+end:], true
}
