package guard

import "bytes"

// refusalPhrase reports whether content holds one of g's refusal phrases within its
// first g.scan bytes (leading white space not counted).
func (g *Guards) refusalPhrase(content string) bool {
	if len(g.phrases) == 0 {
		return false
	}
	start := firstNonSpace(content)
	if start < 0 {
		return false
	}
	window := content[start:]
	if len(window) > g.scan {
		window = window[:g.scan]
	}
	var buf [128]byte
	folded := fold(buf[:0], window)
	for _, p := range g.phrases {
		if bytes.Contains(folded, p) {
			return true
		}
	}
	return false
}

// fold appends s to dst with ASCII letters lower-cased and the typographic
// apostrophes (U+2018, U+2019, U+02BC) written as '.
func fold(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0x98 || s[i+2] == 0x99):
			c, i = '\'', i+2
		case c == 0xCA && i+1 < len(s) && s[i+1] == 0xBC:
			c, i = '\'', i+1
		}
		dst = append(dst, c)
	}
	return dst
}
