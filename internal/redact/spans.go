package redact

import (
	"slices"
	"sort"
	"strings"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
)

// span is a detected value: s[start:end] is of type typ.
type span struct {
	start, end int
	typ        Type
}

// hint is what the JSON key a value sits under says about it.
type hint struct {
	key    string // the key, as written; empty for free text
	phone  bool   // bare digits are a phone number
	ssn    bool   // bare digits are an SSN
	secret bool   // the whole value is a secret
}

func hintFor(key string) hint {
	if key == "" {
		return hint{}
	}
	low := strings.ToLower(key)
	return hint{
		key:    key,
		phone:  strings.Contains(low, "phone") || strings.Contains(low, "mobile") || low == "tel" || strings.Contains(low, "fax"),
		ssn:    strings.Contains(low, "ssn") || strings.Contains(low, "social_security"),
		secret: isSecretKey(key),
	}
}

// findText returns the spans to replace in a free text, sorted and not overlapping.
func (r *Redactor) findText(s string) []span {
	if len(s) < 4 {
		return nil
	}
	if sp, ok := r.cache.get(cacheText, s); ok {
		return sp
	}
	out := r.scanText(s)
	r.cache.put(cacheText, s, out)
	return out
}

// scanText is findText without the cache.
func (r *Redactor) scanText(s string) []span {
	if len(s) < 4 {
		return nil
	}
	out := r.scanBuiltin(s, hint{}, nil)
	if r.secrets != nil {
		out = addOccurrences(s, r.secrets.secretsIn(s), SECRET, out)
	}
	out = r.scanUser(s, out)
	return resolve(s, out)
}

// findValue returns the spans to replace in one string value of a JSON document, given
// the key it sits under and the secrets gitleaks found in the whole document.
func (r *Redactor) findValue(s string, h hint, secrets []string) []span {
	if len(s) < 4 && !h.secret {
		return nil
	}
	out := r.scanBuiltin(s, h, nil)
	out = addOccurrences(s, secrets, SECRET, out)
	out = r.scanUser(s, out)
	return resolve(s, out)
}

// scanUser appends the spans of the operator's rules and deny-lists.
func (r *Redactor) scanUser(s string, out []span) []span {
	for _, u := range r.rules {
		if u.prefix != "" && !strings.Contains(s, u.prefix) {
			continue
		}
		for _, m := range u.re.FindAllStringSubmatchIndex(s, -1) {
			a, b := m[0], m[1]
			for g := 2; g+1 < len(m); g += 2 {
				if m[g] >= 0 && m[g+1] > m[g] {
					a, b = m[g], m[g+1]
					break
				}
			}
			if b > a {
				out = append(out, span{a, b, u.typ})
			}
		}
	}
	if r.deny != nil {
		out = r.deny.scan(s, out)
	}
	return out
}

// resolve picks, among overlapping spans, the longest (then the most specific type,
// then the first); drops spans that touch a placeholder already in the text; and adds
// every other whole-word occurrence of a chosen value, so that a value found once in a
// text (a phone number after "call me at") is replaced everywhere in it. The result is
// sorted by start.
func resolve(s string, in []span) []span {
	if len(in) == 0 {
		return nil
	}
	protected := placeholders(s)
	slices.SortFunc(in, func(x, y span) int {
		if d := (y.end - y.start) - (x.end - x.start); d != 0 {
			return d
		}
		if d := int(rank(y.typ)) - int(rank(x.typ)); d != 0 {
			return d
		}
		return x.start - y.start
	})
	var chosen []span
	for _, sp := range in {
		if sp.start < 0 || sp.end > len(s) || sp.end <= sp.start {
			continue
		}
		if overlaps(protected, sp) {
			continue
		}
		chosen = insertIfFree(chosen, sp)
	}
	if len(chosen) == 0 {
		return nil
	}
	return sweep(s, chosen, protected, nil)
}

// placeholders returns the spans of placeholders already in s, sorted.
func placeholders(s string) []span {
	var out []span
	off := 0
	for {
		k := strings.IndexByte(s[off:], '<')
		if k < 0 {
			return out
		}
		a := off + k
		if n := placeholderLen(s[a:]); n > 0 {
			out = append(out, span{a, a + n, ""})
			off = a + n
			continue
		}
		off = a + 1
	}
}

// overlaps reports whether sp overlaps one of sorted.
func overlaps(sorted []span, sp span) bool {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i].end > sp.start })
	return i < len(sorted) && sorted[i].start < sp.end
}

// insertIfFree inserts sp into sorted when it overlaps none of it.
func insertIfFree(sorted []span, sp span) []span {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i].end > sp.start })
	if i < len(sorted) && sorted[i].start < sp.end {
		return sorted
	}
	return slices.Insert(sorted, i, sp)
}

// typedValue is a detected value and its type.
type typedValue struct {
	t Type
	v string
}

// sweep adds to spans (sorted, not overlapping) every free whole-word occurrence in s
// of the values spans cover and of extra. It returns a new slice when it adds any.
func sweep(s string, spans, protected []span, extra []typedValue) []span {
	var values []typedValue
	for _, sp := range spans {
		values = append(values, typedValue{sp.typ, s[sp.start:sp.end]})
	}
	values = append(values, extra...)
	out := spans
	copied := false
	for i, tv := range values {
		if len(tv.v) < 4 || slices.ContainsFunc(values[:i], func(o typedValue) bool { return o.v == tv.v }) {
			continue
		}
		off := 0
		for {
			k := strings.Index(s[off:], tv.v)
			if k < 0 {
				break
			}
			a, b := off+k, off+k+len(tv.v)
			off = a + 1
			if (a > 0 && isWord(s[a-1]) && isWord(s[a])) || (b < len(s) && isWord(s[b]) && isWord(s[b-1])) {
				continue
			}
			sp := span{a, b, tv.t}
			if overlaps(out, sp) || overlaps(protected, sp) {
				continue
			}
			if !copied {
				out = slices.Clone(out)
				copied = true
			}
			out = insertIfFree(out, sp)
			off = b
		}
	}
	return out
}

// denyList finds deny-listed values as whole words, without regard to case.
type denyList struct {
	trie  *ahocorasick.Trie
	types []Type // per pattern
}

func newDenyList(deny []Deny) *denyList {
	d := &denyList{}
	seen := map[string]bool{}
	b := ahocorasick.NewTrieBuilder()
	for _, dl := range deny {
		for _, v := range dl.Values {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			for _, form := range []string{v, strings.ToLower(v), strings.ToUpper(v)} {
				p := string(asciiLower(nil, form))
				if seen[p] {
					continue
				}
				seen[p] = true
				b.AddString(p)
				d.types = append(d.types, dl.Type)
			}
		}
	}
	if len(d.types) == 0 {
		return nil
	}
	d.trie = b.Build()
	return d
}

func (d *denyList) scan(s string, out []span) []span {
	lower := asciiLower(make([]byte, 0, len(s)), s)
	d.trie.Walk(lower, func(end, n, pattern int64) bool {
		b := int(end) + 1
		a := b - int(n)
		if (a > 0 && isWord(s[a-1]) && isWord(s[a])) || (b < len(s) && isWord(s[b]) && isWord(s[b-1])) {
			return true
		}
		out = append(out, span{a, b, d.types[pattern]})
		return true
	})
	return out
}
