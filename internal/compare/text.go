package compare

import (
	"strings"
	"unicode"
)

// TextScore is how well a candidate's text agrees with a reference text. Tokens are
// runs of letters and digits, lower-cased; punctuation and spacing do not count.
type TextScore struct {
	// Exact is whether the texts are equal once trimmed (case and inner spacing count).
	Exact bool
	// TokenF1 is the F1 of the two bags of tokens (SQuAD's measure, without dropping
	// articles).
	TokenF1 float64
	// RougeL is the ROUGE-L F-measure (β = 1): the longest common token subsequence
	// over the candidate's and the reference's lengths.
	RougeL float64
}

// Text scores a candidate's text against the reference's.
func Text(reference, candidate string) TextScore {
	s := TextScore{Exact: strings.TrimSpace(reference) == strings.TrimSpace(candidate)}
	ref, cand := tokens(reference), tokens(candidate)
	if len(ref) == 0 && len(cand) == 0 {
		s.TokenF1, s.RougeL = 1, 1
		return s
	}
	counts := make(map[string]int, len(ref))
	for _, t := range ref {
		counts[t]++
	}
	common := 0
	for _, t := range cand {
		if counts[t] > 0 {
			counts[t]--
			common++
		}
	}
	_, _, s.TokenF1 = prf(common, len(cand), len(ref))
	_, _, s.RougeL = prf(lcs(ref, cand), len(cand), len(ref))
	return s
}

func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// lcs returns the length of the longest common subsequence of a and b, in two rows.
func lcs(a, b []string) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
