package redact

import (
	"bytes"
	"strings"
	"testing"
)

func TestCacheGivesTheSameAnswers(t *testing.T) {
	cached, err := New(Options{NoGitleaks: true, CacheBytes: 64 << 10}) // small: evicts often
	if err != nil {
		t.Fatal(err)
	}
	plain, err := New(Options{NoGitleaks: true, CacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	calls := loadTau(t)
	planted := 0
	for _, c := range calls[:600] {
		// Plant a value in the last user turn so that outputs differ from inputs.
		req := bytes.Replace(c.req, []byte(`"role":"user","content":"`), []byte(`"role":"user","content":"mail x@example.com `), 1)
		if !bytes.Equal(req, c.req) {
			planted++
		}
		a1, b1, s1, _ := cached.RedactCall(req, c.resp)
		a2, b2, s2, _ := plain.RedactCall(req, c.resp)
		if !bytes.Equal(a1, a2) || !bytes.Equal(b1, b2) || s1.Total() != s2.Total() {
			t.Fatalf("%s: cached and uncached redaction differ", c.id)
		}
	}
	if planted < 500 {
		t.Fatalf("planted a value in only %d of 600 calls", planted)
	}
	c := cached.cache
	if n := c.curBytes; n > c.half {
		t.Errorf("cache holds %d bytes in its current generation, budget %d", n, c.half)
	}
}

func TestCacheDoesNotConfuseTexts(t *testing.T) {
	r, err := New(Options{NoGitleaks: true})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("filler text without values. ", 20)
	if got := r.RedactText(long+"a@example.com", nil); !strings.HasSuffix(got, "<EMAIL_1>") {
		t.Fatalf("got %q", got)
	}
	if got := r.RedactText(long+"nothing here", nil); strings.Contains(got, "<") {
		t.Fatalf("second text got the first one's spans: %q", got)
	}
}
