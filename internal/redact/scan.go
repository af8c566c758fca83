package redact

import (
	"strings"
)

// The built-in scanners are hand-written rather than regular expressions: Go's regexp
// has no DFA, and a dozen patterns over a 20 KB call would cost milliseconds. Each
// scanner is driven by a cheap trigger (a word that starts with a digit or an
// upper-case letter, '+', '(', '@', "://", ':') and checks the value's structure and
// checksum before it reports a span.

const numBuiltin = 9

func builtinIndex(t Type) int {
	for i, b := range BuiltinTypes {
		if b == t {
			return i
		}
	}
	return -1
}

func (r *Redactor) on(t Type) bool { return r.enabled[builtinIndex(t)] }

// rank orders types for overlaps of equal length: the higher, the more specific.
func rank(t Type) int8 {
	switch t {
	case SECRET:
		return 8
	case URLCredentials:
		return 7
	case CARD:
		return 6
	case IBAN:
		return 5
	case SSN:
		return 4
	case EMAIL:
		return 3
	case IPV6:
		return 2
	case IPV4:
		return 1
	case PHONE:
		return 0
	}
	return 9 // the operator's own rules and deny-lists
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isWord reports whether c continues a word: a detected value must not start or end
// next to one.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func isHex(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }

// scanBuiltin appends the spans of the enabled built-in PII types and of our own secret
// rules found in s.
func (r *Redactor) scanBuiltin(s string, h hint, out []span) []span {
	phone, card, ssn, ip4, iban := r.on(PHONE), r.on(CARD), r.on(SSN), r.on(IPV4), r.on(IBAN)
	secrets := r.secrets != nil
	n := len(s)
	for i := 0; i < n; {
		c := s[i]
		if !isWord(c) {
			switch {
			case (c == '+' || c == '(') && phone && i+1 < n && isDigit(s[i+1]) && (i == 0 || !isWord(s[i-1])):
				if e := matchPhone(s, i, h); e > 0 {
					out = append(out, span{i, e, PHONE})
					i = e
					continue
				}
			case (c == ':' || c == '=') && secrets:
				if a, b := matchAssignment(s, i); b > a {
					out = append(out, span{a, b, SECRET})
					i = b
					continue
				}
			}
			i++
			continue
		}
		// i starts a word.
		end := i + 1
		for end < n && isWord(s[end]) {
			end++
		}
		best := 0
		add := func(t Type, e int) {
			if e > 0 {
				out = append(out, span{i, e, t})
				best = max(best, e)
			}
		}
		if isDigit(c) && digitLeftOK(s, i) {
			if ip4 {
				add(IPV4, matchIPv4(s, i))
			}
			if ssn {
				add(SSN, matchSSN(s, i, h))
			}
			if card {
				add(CARD, matchCard(s, i))
			}
			if phone {
				add(PHONE, matchPhone(s, i, h))
			}
		}
		if iban && isUpper(c) {
			add(IBAN, matchIBAN(s, i))
		}
		if secrets {
			add(SECRET, matchToken(s, i))
		}
		i = max(end, best)
	}
	if r.on(EMAIL) {
		out = scanEmails(s, out)
	}
	if r.on(URLCredentials) {
		out = scanURLCredentials(s, out)
	}
	if r.on(IPV6) {
		out = scanIPv6(s, out)
	}
	if secrets {
		out = scanPEM(s, out)
	}
	if len(h.key) > 0 {
		out = r.scanByKey(s, h, out)
	}
	return out
}

// digitLeftOK reports whether a number may start at i: not glued to a longer dotted or
// dashed number (version 1.2.3.4.5, a date's tail), not a price or an order reference.
func digitLeftOK(s string, i int) bool {
	if i == 0 {
		return true
	}
	switch p := s[i-1]; p {
	case '.', '-', ',', '/', ':':
		return i < 2 || !isAlnum(s[i-2])
	case '$', '#', '%', '&', '@':
		return false
	}
	return !strings.HasSuffix(s[:i], "€") && !strings.HasSuffix(s[:i], "£")
}

// rightOK reports whether a number may end at e: not followed by a word, nor by a
// separator that glues on more digits.
func rightOK(s string, e int) bool {
	if e >= len(s) {
		return true
	}
	c := s[e]
	if isWord(c) {
		return false
	}
	if (c == '-' || c == '.' || c == '/' || c == ',') && e+1 < len(s) && isDigit(s[e+1]) {
		return false
	}
	return true
}

// contextBefore reports whether one of words appears (ASCII case-insensitively) in the
// 32 bytes before i.
func contextBefore(s string, i int, words ...string) bool {
	var buf [32]byte
	w := buf[:0]
	for j := max(0, i-32); j < i; j++ {
		c := s[j]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		w = append(w, c)
	}
	for _, word := range words {
		if strings.Contains(string(w), word) {
			return true
		}
	}
	return false
}

// wordBefore returns the word before i, across spaces.
func wordBefore(s string, i int) string {
	j := i
	for j > 0 && s[j-1] == ' ' {
		j--
	}
	e := j
	for j > 0 && isAlpha(s[j-1]) && e-j < 16 {
		j--
	}
	return s[j:e]
}

// clauseBefore is contextBefore limited to the clause the number is in: the words must
// not be separated from it by punctuation or another number.
func clauseBefore(s string, i int, words ...string) bool {
	a := max(0, i-32)
	for j := i - 1; j >= a; j-- {
		if c := s[j]; c == '.' || c == ';' || c == ',' || c == '\n' || isDigit(c) {
			a = j + 1
			break
		}
	}
	return contextBefore(s[a:i], i-a, words...)
}
