package filesink

// appendCompact appends src to dst with the insignificant whitespace
// removed, as json.Compact does, and reports whether src is valid JSON (if
// not, dst is returned unchanged). It exists because it runs once per line
// written: a single pass without encoding/json's per-byte state functions.
// FuzzCompact holds it to json.Compact.
func appendCompact(dst, src []byte) ([]byte, bool) {
	c := compactor{src: src, dst: dst}
	c.space()
	if !c.value(0) {
		return dst, false
	}
	c.space()
	if c.i != len(c.src) {
		return dst, false
	}
	return c.dst, true
}

// maxDepth is encoding/json's nesting limit: deeper input is invalid there,
// so it is here.
const maxDepth = 10000

type compactor struct {
	src []byte
	i   int
	dst []byte
}

func (c *compactor) space() {
	for c.i < len(c.src) {
		switch c.src[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// peek returns the next byte, or 0 at the end.
func (c *compactor) peek() byte {
	if c.i < len(c.src) {
		return c.src[c.i]
	}
	return 0
}

func (c *compactor) value(depth int) bool {
	switch b := c.peek(); {
	case b == '{':
		return c.object(depth + 1)
	case b == '[':
		return c.array(depth + 1)
	case b == '"':
		return c.string()
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '-' || b >= '0' && b <= '9':
		return c.number()
	}
	return false
}

func (c *compactor) object(depth int) bool { return c.container(depth, '}', c.member) }

func (c *compactor) array(depth int) bool { return c.container(depth, ']', c.value) }

// container copies an object or an array: the opening byte at c.i, then
// elements separated by commas up to end.
func (c *compactor) container(depth int, end byte, element func(depth int) bool) bool {
	if depth > maxDepth {
		return false
	}
	c.dst = append(c.dst, c.src[c.i])
	c.i++
	c.space()
	if c.peek() == end {
		c.dst = append(c.dst, end)
		c.i++
		return true
	}
	for {
		if !element(depth) {
			return false
		}
		c.space()
		switch c.peek() {
		case ',':
			c.dst = append(c.dst, ',')
			c.i++
			c.space()
		case end:
			c.dst = append(c.dst, end)
			c.i++
			return true
		default:
			return false
		}
	}
}

// member copies "name": value.
func (c *compactor) member(depth int) bool {
	if c.peek() != '"' || !c.string() {
		return false
	}
	c.space()
	if c.peek() != ':' {
		return false
	}
	c.dst = append(c.dst, ':')
	c.i++
	c.space()
	return c.value(depth)
}

// string copies a string, escapes included, after checking them; like
// encoding/json it accepts any byte from 0x20 up, valid UTF-8 or not.
func (c *compactor) string() bool {
	start := c.i
	c.i++ // the opening quote
	for c.i < len(c.src) {
		switch b := c.src[c.i]; {
		case b == '"':
			c.i++
			c.dst = append(c.dst, c.src[start:c.i]...)
			return true
		case b == '\\':
			if c.i+1 >= len(c.src) {
				return false
			}
			switch c.src[c.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				c.i += 2
			case 'u':
				if c.i+6 > len(c.src) {
					return false
				}
				for _, h := range c.src[c.i+2 : c.i+6] {
					if !isHex(h) {
						return false
					}
				}
				c.i += 6
			default:
				return false
			}
		case b < 0x20:
			return false
		default:
			c.i++
		}
	}
	return false
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func (c *compactor) literal(word string) bool {
	if len(c.src)-c.i < len(word) || string(c.src[c.i:c.i+len(word)]) != word {
		return false
	}
	c.dst = append(c.dst, word...)
	c.i += len(word)
	return true
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and copies it.
func (c *compactor) number() bool {
	start := c.i
	if c.peek() == '-' {
		c.i++
	}
	switch b := c.peek(); {
	case b == '0':
		c.i++
	case b >= '1' && b <= '9':
		c.digits()
	default:
		return false
	}
	if c.peek() == '.' {
		c.i++
		if !c.digits() {
			return false
		}
	}
	if b := c.peek(); b == 'e' || b == 'E' {
		c.i++
		if b := c.peek(); b == '+' || b == '-' {
			c.i++
		}
		if !c.digits() {
			return false
		}
	}
	c.dst = append(c.dst, c.src[start:c.i]...)
	return true
}

// digits consumes [0-9]+ and reports whether there was at least one.
func (c *compactor) digits() bool {
	start := c.i
	for c.i < len(c.src) && c.src[c.i] >= '0' && c.src[c.i] <= '9' {
		c.i++
	}
	return c.i > start
}
