package redact

import (
	"encoding/json"
	"strings"
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
	p.i++
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '\\':
			p.i += 2
			continue
		case '"':
			p.i++
			return a, min(p.i, len(p.s))
		}
		p.i++
	}
	p.i = len(p.s)
	return a, p.i
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

// unquote returns the text of a JSON string token.
func unquote(tok string) string {
	if len(tok) < 2 {
		return ""
	}
	if strings.IndexByte(tok, '\\') < 0 {
		return tok[1 : len(tok)-1]
	}
	var s string
	if err := json.Unmarshal([]byte(tok), &s); err != nil {
		return tok[1 : len(tok)-1]
	}
	return s
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
