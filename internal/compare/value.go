package compare

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// mode is how strictly two values are compared.
type mode uint8

const (
	// exact: strings equal once trimmed, case-sensitive; numbers by value.
	exact mode = iota
	// lenient: strings equal under BFCL's standardisation (see lenientEqual).
	lenient
)

// parseArgs decodes a tool call's arguments string. An empty or all-space string is
// an empty object (some upstreams send "" for a function without parameters). ok is
// false when the arguments are not a JSON object.
func parseArgs(s string) (map[string]any, bool) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, true
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// equal compares two decoded JSON values. Numbers compare by value (1 == 1.0), never
// across types ("1" != 1, "true" != true); objects regardless of key order; arrays in
// order.
func equal(a, b any, m mode) bool {
	switch av := a.(type) {
	case string:
		bv, ok := b.(string)
		return ok && stringEqual(av, bv, m)
	case float64:
		bv, ok := b.(float64)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case nil:
		return b == nil
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equal(av[i], bv[i], m) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !equal(x, y, m) {
				return false
			}
		}
		return true
	}
	return false
}

func stringEqual(a, b string, m mode) bool {
	if m == exact {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	return lenientEqual(a, b)
}

// lenientEqual reports whether two strings are equal under BFCL's standardisation of
// strings (its AST checker's standardize_string): white space and the characters
// , . / - _ * ^ are dropped, letters are compared case-insensitively, and ' equals ".
// It walks both strings without allocating.
func lenientEqual(a, b string) bool {
	i, j := 0, 0
	for {
		var ra, rb rune = -1, -1
		for i < len(a) {
			r, n := utf8.DecodeRuneInString(a[i:])
			i += n
			if !ignorable(r) {
				ra = fold(r)
				break
			}
		}
		for j < len(b) {
			r, n := utf8.DecodeRuneInString(b[j:])
			j += n
			if !ignorable(r) {
				rb = fold(r)
				break
			}
		}
		if ra != rb {
			return false
		}
		if ra == -1 {
			return true
		}
	}
}

func ignorable(r rune) bool {
	switch r {
	case ',', '.', '/', '-', '_', '*', '^':
		return true
	}
	return unicode.IsSpace(r)
}

func fold(r rune) rune {
	if r == '\'' {
		return '"'
	}
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	return unicode.ToLower(r)
}

// optional reports whether allowed holds "", BFCL's mark for "may be left out".
func optional(allowed []any) bool {
	for _, v := range allowed {
		if s, ok := v.(string); ok && s == "" {
			return true
		}
	}
	return false
}

// matchAllowed reports whether a candidate's argument (present or not) is one of the
// allowed values.
func matchAllowed(v any, present bool, allowed []any, required bool, m mode) bool {
	if !present {
		return !required && optional(allowed)
	}
	for _, alt := range allowed {
		if matchPattern(v, alt, m) {
			return true
		}
	}
	return false
}

// matchPattern compares a value with one allowed value in BFCL's form: an object's
// members are themselves lists of allowed values ("" meaning the member may be left
// out); arrays are compared element by element, in order; anything else by equal.
func matchPattern(v, pat any, m mode) bool {
	switch p := pat.(type) {
	case map[string]any:
		o, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k, x := range o {
			alts, ok := p[k]
			if !ok || !matchAllowed(x, true, asList(alts), false, m) {
				return false
			}
		}
		for k, alts := range p {
			if _, ok := o[k]; !ok && !optional(asList(alts)) {
				return false
			}
		}
		return true
	case []any:
		a, ok := v.([]any)
		if !ok || len(a) != len(p) {
			return false
		}
		for i := range a {
			if !matchPattern(a[i], p[i], m) {
				return false
			}
		}
		return true
	}
	return equal(v, pat, m)
}

// asList returns a member of a nested possible answer as its list of allowed values;
// a bare value (not BFCL's form, but seen in hand-written answers) is the only one.
func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}
