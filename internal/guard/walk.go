package guard

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// walker reads members out of JSON in one pass, skipping what it does not need
// without decoding it. It does not validate: ReadRequest is given bodies the
// gateway's scan has validated. On other input it reads nonsense or sets bad, and
// never panics or loops.
type walker struct {
	b   []byte
	i   int
	bad bool
}

func (w *walker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space; 0 (and bad) at the end.
func (w *walker) peek() byte {
	w.ws()
	if w.i < len(w.b) {
		return w.b[w.i]
	}
	w.bad = true
	return 0
}

// str reads the string at w.i (its opening quote) and returns its contents,
// escapes as they are.
func (w *walker) str() []byte {
	start := w.i + 1
	j := start
	for {
		k := bytes.IndexByte(w.b[min(j, len(w.b)):], '"')
		if k < 0 {
			w.bad, w.i = true, len(w.b)
			return nil
		}
		j += k
		n := 0 // backslashes before the quote: an odd count escapes it
		for p := j - 1; p >= start && w.b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			break
		}
		j++
	}
	w.i = j + 1
	return w.b[start:j]
}

// text reads a string value and returns it unescaped, as encoding/json decodes it
// (invalid UTF-8 replaced); ok is false when the value is not a string (it is
// skipped).
func (w *walker) text() (s []byte, ok bool) {
	if w.peek() != '"' {
		w.skip()
		return nil, false
	}
	at := w.i
	s = w.str()
	if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return s, true
	}
	var u string
	if json.Unmarshal(w.b[at:w.i], &u) != nil {
		w.bad = true
		return nil, false
	}
	return []byte(u), true
}

// skip passes over one value.
func (w *walker) skip() {
	switch w.peek() {
	case 0:
	case '"':
		w.str()
	case '{', '[':
		depth := 0
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case '"':
				w.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					w.i++
					return
				}
			}
			w.i++
		}
		w.bad = true
	default:
		start := w.i
	scan:
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				break scan
			}
			w.i++
		}
		if w.i == start {
			w.bad = true
		}
	}
}

// value passes over one value and returns its bytes.
func (w *walker) value() []byte {
	w.ws()
	start := w.i
	w.skip()
	return w.b[start:w.i]
}

// object walks the object at w.i, calling member with each key (unescaped) with w.i
// at the value, which member must pass over.
func (w *walker) object(member func(key []byte)) {
	if w.peek() != '{' {
		w.bad = true
		return
	}
	w.i++
	if w.peek() == '}' {
		w.i++
		return
	}
	for !w.bad {
		if w.peek() != '"' {
			w.bad = true
			return
		}
		key, _ := w.text()
		if w.peek() != ':' {
			w.bad = true
			return
		}
		w.i++
		member(key)
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			w.i++
			return
		default:
			w.bad = true
		}
	}
}

// array walks the array at w.i, calling elem with w.i at each element, which elem
// must pass over.
func (w *walker) array(elem func(i int)) {
	if w.peek() != '[' {
		w.bad = true
		return
	}
	w.i++
	if w.peek() == ']' {
		w.i++
		return
	}
	for i := 0; !w.bad; i++ {
		elem(i)
		switch w.peek() {
		case ',':
			w.i++
		case ']':
			w.i++
			return
		default:
			w.bad = true
		}
	}
}

// isNull reports whether the value at w.i is null, passing over it if so.
func (w *walker) isNull() bool {
	w.ws()
	if bytes.HasPrefix(w.b[w.i:], []byte("null")) {
		w.i += 4
		return true
	}
	return false
}
