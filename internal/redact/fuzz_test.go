package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzRedactCall checks that RedactCall never panics, keeps valid JSON valid (and the
// arguments of tool calls too), and leaves no detected value in the content it
// redacts. Seeds: testdata/fuzz/FuzzRedactCall.
func FuzzRedactCall(f *testing.F) {
	f.Add([]byte(callRequest), []byte(callResponse))
	f.Add([]byte(`{"messages":[{"role":"user","content":"call +1 415-555-0132 or a@b.co"}]}`), []byte(`{"error":{"message":"x@example.com"}}`))
	r := testRedactor(f)
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		var found []string
		st := &State{record: func(_ Type, v string) { found = append(found, v) }}
		req2, resp2, err := r.redactCall(req, resp, st)
		for _, p := range []struct{ in, out []byte }{{req, req2}, {resp, resp2}} {
			if json.Valid(p.in) && !json.Valid(p.out) {
				t.Fatalf("valid JSON in, invalid out (err %v):\n in %q\nout %q", err, p.in, p.out)
			}
		}
		if len(found) == 0 {
			return
		}
		texts := contentTexts(req2, true)
		texts = append(texts, contentTexts(resp2, false)...)
		for _, v := range found {
			if len(v) < 4 {
				continue
			}
			for _, s := range texts {
				if survives(s, v) {
					t.Fatalf("detected value %q survives in %q", v, s)
				}
			}
		}
	})
}

// contentTexts returns what RedactCall redacts in a payload: the content fields' texts,
// or, for those that are JSON documents, their values; or the whole payload when it is
// not JSON.
func contentTexts(doc []byte, request bool) []string {
	if !json.Valid(doc) {
		return []string{string(doc)}
	}
	var fields []field
	if request {
		fields = requestFields(string(doc))
	} else {
		fields = responseFields(string(doc))
	}
	var out []string
	for _, f := range fields {
		text := unquote(f.raw)
		if t := strings.TrimSpace(text); len(t) > 1 && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(text)) {
			var v any
			_ = json.Unmarshal([]byte(text), &v)
			out = appendValues(out, v)
			continue
		}
		out = append(out, text)
	}
	return out
}

func appendValues(out []string, v any) []string {
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case json.Number:
		out = append(out, v.String())
	case float64:
		// Numbers that held a value became strings; what is left is no longer a long
		// digit run worth checking.
	case []any:
		for _, e := range v {
			out = appendValues(out, e)
		}
	case map[string]any:
		for _, e := range v {
			out = appendValues(out, e)
		}
	}
	return out
}

// survives reports whether v occurs in s as sweep would find it: a whole word, not
// inside a placeholder.
func survives(s, v string) bool {
	protected := placeholders(s)
	for off := 0; ; {
		k := strings.Index(s[off:], v)
		if k < 0 {
			return false
		}
		a, b := off+k, off+k+len(v)
		off = a + 1
		if (a > 0 && isWord(s[a-1]) && isWord(s[a])) || (b < len(s) && isWord(s[b]) && isWord(s[b-1])) {
			continue
		}
		if overlaps(protected, span{a, b, ""}) {
			continue
		}
		return true
	}
}
