package redact

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jr reads a JSON text that has already been validated, skipping what it is not asked
// to look at. It never fails: on malformed input it stops at the end of the text.
type jr struct {
	s string
	i int
}

func (p *jr) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jr) peek() byte {
	p.ws()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// str reads the string at p.i and returns the bounds of its token, quotes included.
func (p *jr) str() (a, b int) {
	a = p.i
	j := p.i + 1
	for {
		k := strings.IndexByte(p.s[j:], '"')
		if k < 0 {
			p.i = len(p.s)
			return a, p.i
		}
		j += k
		// The quote ends the string unless an odd number of backslashes escapes it.
		n := 0
		for m := j - 1; m > a && p.s[m] == '\\'; m-- {
			n++
		}
		j++
		if n%2 == 0 {
			p.i = j
			return a, j
		}
	}
}

func (p *jr) skipValue() {
	switch p.peek() {
	case '"':
		p.str()
	case '{':
		p.object(func(string) { p.skipValue() })
	case '[':
		p.array(p.skipValue)
	default:
		for p.i < len(p.s) && strings.IndexByte(",}] \t\n\r", p.s[p.i]) < 0 {
			p.i++
		}
	}
}

// object calls fn with each key, p.i at its value; fn must read the value.
func (p *jr) object(fn func(key string)) {
	if p.peek() != '{' {
		p.skipValue()
		return
	}
	p.i++
	for {
		switch p.peek() {
		case '}':
			p.i++
			return
		case ',':
			p.i++
			continue
		case '"':
			a, b := p.str()
			key := unquote(p.s[a:b])
			if p.peek() == ':' {
				p.i++
			}
			p.ws()
			start := p.i
			fn(key)
			if p.i == start { // fn read nothing: do not loop forever
				p.skipValue()
			}
		default:
			p.i = len(p.s)
			return
		}
	}
}

// array calls fn for each element, p.i at it; fn must read the element.
func (p *jr) array(fn func()) {
	if p.peek() != '[' {
		p.skipValue()
		return
	}
	p.i++
	for {
		switch p.peek() {
		case ']':
			p.i++
			return
		case ',':
			p.i++
			continue
		case 0:
			return
		}
		start := p.i
		fn()
		if p.i == start {
			p.skipValue()
			if p.i == start {
				p.i = len(p.s)
				return
			}
		}
	}
}

// unquote returns the text of a JSON string token (valid JSON, so every escape is
// well formed; a lone surrogate becomes U+FFFD, as encoding/json decodes it).
func unquote(tok string) string {
	if len(tok) < 2 {
		return ""
	}
	body := tok[1 : len(tok)-1]
	k := strings.IndexByte(body, '\\')
	if k < 0 {
		return body
	}
	b := make([]byte, 0, len(body))
	b = append(b, body[:k]...)
	for i := k; i < len(body); {
		c := body[i]
		if c != '\\' || i+1 >= len(body) {
			b = append(b, c)
			i++
			continue
		}
		switch e := body[i+1]; e {
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case 'r':
			b = append(b, '\r')
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'u':
			r, n := hex4(body, i+2)
			i += 2 + n
			if utf16.IsSurrogate(r) {
				r2, n2 := rune(-1), 0
				if i+1 < len(body) && body[i] == '\\' && body[i+1] == 'u' {
					r2, n2 = hex4(body, i+2)
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 2 + n2
				} else {
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
			continue
		default: // '"', '\\', '/'
			b = append(b, e)
		}
		i += 2
	}
	return string(b)
}

// hex4 reads the four hex digits of a \u escape at i; n is how many it read.
func hex4(s string, i int) (r rune, n int) {
	for n < 4 && i+n < len(s) {
		c := s[i+n]
		var v byte
		switch {
		case isDigit(c):
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return utf8.RuneError, n
		}
		r = r<<4 | rune(v)
		n++
	}
	if n < 4 {
		return utf8.RuneError, n
	}
	return r, n
}

// appendQuoted appends s as a JSON string. Only what JSON requires is escaped, so text
// that was not changed keeps its bytes.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		i++
	}
	return append(dst, '"')
}
