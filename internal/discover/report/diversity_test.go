package report

import (
	"math"
	"testing"
)

func TestDiversity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prompts []string
		want    float64
	}{
		{"none", nil, 0},
		{"one", []string{"book a flight"}, 0},
		{"identical", []string{"book a flight to Boston", "book a flight to Boston", "book a flight to Boston"}, 0},
		{"case, punctuation and numbers do not count", []string{"Book flight 12 to BOSTON!", "book, flight #9000 to boston"}, 0},
		{"nothing shared", []string{"refund my ticket", "weather in paris"}, 1},
		// {book, flight, to, boston} vs {book, flight, to, denver}: 3 shared of 5.
		{"one word differs", []string{"book flight to Boston", "book flight to Denver"}, 1 - 3.0/5},
		// Pairs: (a,b) 0.4, (a,c) 1, (b,c) 1 -> mean 0.8.
		{"mean over pairs", []string{"book flight to Boston", "book flight to Denver", "weather paris"}, (0.4 + 1 + 1) / 3},
		{"one-letter words are ignored", []string{"a b c deal", "x y z deal"}, 0},
		{"letters beyond ASCII", []string{"réserver un vol", "RÉSERVER UN VOL"}, 0},
		{"two empty prompts are alike", []string{"", "42"}, 0},
	} {
		if got := Diversity(tc.prompts); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: Diversity = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSamplePromptsSpreadsOverTheWorkload(t *testing.T) {
	calls := make([]Call, 1000)
	idx := make([]int, len(calls))
	for i := range calls {
		idx[i] = i
		if i%2 == 0 {
			calls[i].Prompt = string(rune('a'+i%26)) + "x"
		}
	}
	got := samplePrompts(idx, calls, 100)
	if len(got) != 100 {
		t.Fatalf("%d prompts, want 100", len(got))
	}
	// 500 calls have a prompt; every fifth of them is taken: calls 0, 10, 20, ...
	for k, p := range got {
		if want := string(rune('a'+(k*10)%26)) + "x"; p != want {
			t.Fatalf("prompt %d = %q, want %q", k, p, want)
		}
	}
	if got := samplePrompts(idx[:7], calls, 100); len(got) != 4 {
		t.Errorf("7 calls, 4 with prompts: sampled %d", len(got))
	}
}
