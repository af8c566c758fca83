package redact

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestUnquoteMatchesEncodingJSON(t *testing.T) {
	for _, tok := range []string{
		`""`, `"plain"`, `"a\"b\\c\/d"`, `"line\nbreak\ttab\r\b\f"`, `"\u00e9\u4e2d"`, `"\ud83d\ude00 smile"`,
		`"lone \ud83d surrogate"`, `"lone \ude00 low"`, `"é raw utf-8"`, `"\u0000nul"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(tok), &want); err != nil {
			t.Fatalf("%s: %v", tok, err)
		}
		if got := unquote(tok); got != want {
			t.Errorf("unquote(%s) = %q, want %q", tok, got, want)
		}
		if back := string(appendQuoted(nil, want)); !json.Valid([]byte(back)) {
			t.Errorf("appendQuoted(%q) = %s is not JSON", want, back)
		}
	}
}

func FuzzUnquote(f *testing.F) {
	f.Add(`"a\"b\u00e9\ud83d\ude00"`)
	f.Fuzz(func(t *testing.T, tok string) {
		var want string
		if json.Unmarshal([]byte(tok), &want) != nil {
			return
		}
		// Raw invalid UTF-8 is kept as it is; encoding/json makes it U+FFFD. Either is
		// fine for finding values in it.
		if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' || !utf8.ValidString(tok) {
			return
		}
		if got := unquote(tok); got != want {
			t.Errorf("unquote(%s) = %q, want %q", tok, got, want)
		}
	})
}
