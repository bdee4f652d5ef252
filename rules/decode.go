package rules

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeObject decodes a JSON object into a map exactly as
// json.Unmarshal(body, &map[string]any{}) would, but several times faster
// for the common shape of webhook bodies.
//
// It takes a fast path that understands a strict subset of JSON: strings
// without escape sequences, with valid UTF-8 and no control characters,
// plain numbers, literals, and nesting up to fastMaxDepth. Anything else —
// escapes, invalid input, deep nesting — falls back to encoding/json for the
// whole body, so results and errors are always encoding/json's.
func decodeObject(body []byte) (map[string]any, error) {
	if m, ok := fastDecode(body); ok {
		return m, nil
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// fastMaxDepth bounds the fast path's recursion; deeper input falls back.
const fastMaxDepth = 512

// fastDecoder is the state of one fast-path decode. Strings are substrings
// of src, a single copy of the body.
type fastDecoder struct {
	src string
	pos int
}

// fastDecode attempts the fast path; ok is false when the body needs
// encoding/json (unsupported construct or invalid JSON).
func fastDecode(body []byte) (m map[string]any, ok bool) {
	d := fastDecoder{src: string(body)}
	d.skipSpace()
	if d.pos >= len(d.src) || d.src[d.pos] != '{' {
		return nil, false
	}
	v, ok := d.object(0)
	if !ok {
		return nil, false
	}
	d.skipSpace()
	if d.pos != len(d.src) {
		return nil, false
	}
	return v, true
}

// skipSpace advances past JSON whitespace.
func (d *fastDecoder) skipSpace() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value decodes any JSON value at d.pos (whitespace already skipped).
func (d *fastDecoder) value(depth int) (any, bool) {
	if d.pos >= len(d.src) {
		return nil, false
	}
	switch c := d.src[d.pos]; {
	case c == '{':
		m, ok := d.object(depth + 1)
		return m, ok
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		s, ok := d.string()
		return s, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, false
}

// literal consumes lit if it is next in the input.
func (d *fastDecoder) literal(lit string) bool {
	if len(d.src)-d.pos < len(lit) || d.src[d.pos:d.pos+len(lit)] != lit {
		return false
	}
	d.pos += len(lit)
	return true
}

// object decodes an object; d.pos is at '{'.
func (d *fastDecoder) object(depth int) (map[string]any, bool) {
	if depth > fastMaxDepth {
		return nil, false
	}
	d.pos++ // '{'
	m := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == '}' {
		d.pos++
		return m, true
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != '"' {
			return nil, false
		}
		k, ok := d.string()
		if !ok {
			return nil, false
		}
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != ':' {
			return nil, false
		}
		d.pos++
		d.skipSpace()
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		d.skipSpace()
		if d.pos >= len(d.src) {
			return nil, false
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return m, true
		default:
			return nil, false
		}
	}
}

// array decodes an array; d.pos is at '['.
func (d *fastDecoder) array(depth int) (any, bool) {
	if depth > fastMaxDepth {
		return nil, false
	}
	d.pos++ // '['
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == ']' {
		d.pos++
		return a, true
	}
	for {
		d.skipSpace()
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.src) {
			return nil, false
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return a, true
		default:
			return nil, false
		}
	}
}

// string decodes a string without escapes; d.pos is at '"'.
func (d *fastDecoder) string() (string, bool) {
	start := d.pos + 1
	ascii := true
	for i := start; i < len(d.src); i++ {
		switch c := d.src[i]; {
		case c == '"':
			s := d.src[start:i]
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			d.pos = i + 1
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// number decodes a number per the JSON grammar into a float64.
func (d *fastDecoder) number() (any, bool) {
	s, i := d.src, d.pos
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return nil, false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return nil, false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	f, err := strconv.ParseFloat(s[d.pos:i], 64)
	if err != nil {
		return nil, false
	}
	d.pos = i
	return f, true
}
