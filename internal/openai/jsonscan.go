package openai

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonScanner validates JSON and reports, in the same pass, the spans of the members
// the hot path reads. Written here because the libraries checked (encoding/json,
// gjson, go-json-experiment/jsontext) either decode everything or take several passes:
// on a 21 KB tau-bench request gjson's validate-then-walk cost ~75µs, this one pass ~30µs
// (BenchmarkScanChatRequest). It accepts exactly RFC 8259 JSON with UTF-8 strings;
// FuzzScanMatchesDecode holds it to encoding/json's verdict.
type jsonScanner struct {
	b   []byte
	i   int
	bad bool
	// escaped is set by str when the last string held a backslash escape.
	escaped bool
	// keyEscaped is set by object when the current member's key held an escape.
	keyEscaped bool
	depth      int
}

// maxDepth bounds nesting, as encoding/json does, so hostile input cannot exhaust the
// stack.
const maxDepth = 10000

func (s *jsonScanner) fail() { s.bad = true }

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// atEnd reports whether only space is left.
func (s *jsonScanner) atEnd() bool {
	s.ws()
	return s.i >= len(s.b)
}

// expect consumes c after optional space.
func (s *jsonScanner) expect(c byte) bool {
	if s.peek() != c {
		s.fail()
		return false
	}
	s.i++
	return true
}

// stringSpecial marks bytes that end the fast run inside a string.
var stringSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	return t
}()

// str consumes a string at s.i (which must be '"') and returns the span of its raw
// contents, without the quotes.
func (s *jsonScanner) str() (start, end int) {
	if s.peek() != '"' {
		s.fail()
		return 0, 0
	}
	s.i++
	start = s.i
	s.escaped = false
	b := s.b
	for s.i < len(b) {
		// Skip eight plain ASCII bytes at a time: most of a request is long strings.
		for s.i+8 <= len(b) && !specialIn(binary.LittleEndian.Uint64(b[s.i:])) {
			s.i += 8
		}
		if s.i >= len(b) {
			break
		}
		c := b[s.i]
		if !stringSpecial[c] {
			s.i++
			continue
		}
		switch {
		case c == '"':
			end = s.i
			s.i++
			return start, end
		case c == '\\':
			s.escaped = true
			if s.i+1 >= len(b) {
				s.fail()
				return 0, 0
			}
			switch b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(b) || !isHex4(b[s.i+2:s.i+6]) {
					s.fail()
					return 0, 0
				}
				s.i += 6
			default:
				s.fail()
				return 0, 0
			}
		case c < 0x20:
			s.fail()
			return 0, 0
		default: // a multi-byte UTF-8 sequence
			r, size := utf8.DecodeRune(b[s.i:])
			if r == utf8.RuneError && size <= 1 {
				s.fail()
				return 0, 0
			}
			s.i += size
		}
	}
	s.fail()
	return 0, 0
}

// specialIn reports whether any byte of w needs a closer look inside a string: a
// quote, a backslash, a control byte or a non-ASCII byte (bit tricks on eight bytes).
func specialIn(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zeroIn := func(x uint64) uint64 { return (x - ones) & ^x & highs }
	below20 := (w - ones*0x20) & ^w & highs
	return below20|zeroIn(w^(ones*'"'))|zeroIn(w^(ones*'\\'))|(w&highs) != 0
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// value consumes any value and returns its span and first byte.
func (s *jsonScanner) value() (start, end int, kind byte) {
	kind = s.peek()
	start = s.i
	switch kind {
	case '"':
		s.str()
	case '{':
		s.object(func(int, int) { s.value() })
	case '[':
		s.array(func() { s.value() })
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		s.number()
	}
	return start, s.i, kind
}

func (s *jsonScanner) literal(lit string) {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		s.fail()
		return
	}
	s.i += len(lit)
}

func (s *jsonScanner) number() {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		s.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			s.fail()
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			s.fail()
			return
		}
	}
	s.i = i
}

// object consumes an object, calling member for each key with s.i at the value; member
// must consume the value.
func (s *jsonScanner) object(member func(keyStart, keyEnd int)) {
	if !s.expect('{') || !s.enter() {
		return
	}
	defer s.leave()
	if s.peek() == '}' {
		s.i++
		return
	}
	for !s.bad {
		ks, ke := s.str()
		s.keyEscaped = s.escaped
		if s.bad || !s.expect(':') {
			return
		}
		s.ws()
		member(ks, ke)
		if s.bad {
			return
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// array consumes an array, calling elem with s.i at each element; elem must consume it.
func (s *jsonScanner) array(elem func()) {
	if !s.expect('[') || !s.enter() {
		return
	}
	defer s.leave()
	if s.peek() == ']' {
		s.i++
		return
	}
	for !s.bad {
		s.ws()
		elem()
		if s.bad {
			return
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

func (s *jsonScanner) enter() bool {
	s.depth++
	if s.depth > maxDepth {
		s.fail()
		return false
	}
	return true
}

func (s *jsonScanner) leave() { s.depth-- }

// stringValue reads a string value into dst; any other value fails the scan.
func (s *jsonScanner) stringValue(dst *string) {
	vs, ve, kind := s.value()
	if kind != '"' {
		s.fail()
		return
	}
	text, ok := s.text(vs+1, ve-1, s.escaped)
	if !ok {
		s.fail()
	}
	*dst = text
}

// boolValue reads true, false or null (false) into dst; any other value fails the scan.
func (s *jsonScanner) boolValue(dst *bool) {
	switch _, _, kind := s.value(); kind {
	case 't':
		*dst = true
	case 'f', 'n':
	default:
		s.fail()
	}
}

// objectOnly consumes an object with member; any other value fails the scan.
func (s *jsonScanner) objectOnly(member func(keyStart, keyEnd int)) {
	if s.peek() != '{' {
		s.fail()
		return
	}
	s.object(member)
}

// objectOrNull consumes an object with member, or null; any other value fails the scan.
func (s *jsonScanner) objectOrNull(member func(keyStart, keyEnd int)) {
	if s.peek() == 'n' {
		s.value()
		return
	}
	s.objectOnly(member)
}

// arrayOrNull consumes an array with elem, or null; any other value fails the scan.
func (s *jsonScanner) arrayOrNull(elem func()) {
	switch s.peek() {
	case 'n':
		s.value()
	case '[':
		s.array(elem)
	default:
		s.fail()
	}
}

// key reports whether the raw key span equals name. Escaped keys never match (the
// caller then takes the slow path, which unescapes).
func (s *jsonScanner) key(ks, ke int, name string) bool {
	return ke-ks == len(name) && string(s.b[ks:ke]) == name
}

// text returns the string value whose contents span start..end, unescaped.
func (s *jsonScanner) text(start, end int, escaped bool) (string, bool) {
	if s.bad || start < 1 || end < start || end >= len(s.b) {
		return "", false
	}
	if !escaped {
		return string(s.b[start:end]), true
	}
	return unescape(s.b[start:end])
}

// unescape decodes the contents of a JSON string that str has already validated.
// encoding/json would validate the string again, which cost as much as the whole scan.
func unescape(b []byte) (string, bool) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
		case '"', '\\', '/':
			out = append(out, b[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(b[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					r2 = hex4(b[i+3 : i+7])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return string(out), true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
