package report

import (
	"hash/fnv"
	"slices"
	"strings"
	"unicode"
)

// Diversity measures how different a workload's prompts are from each other: the mean,
// over every pair of prompts, of the Jaccard distance between their sets of words
// (1 - shared words / all words of the two). 0 means every prompt uses the same words,
// 1 that no two share one. Fewer than two prompts give 0.
//
// Why this measure: what makes a workload easy for a small model is that its calls are
// alike, so the measure compares calls with each other. A type-token ratio would
// measure variety inside each prompt instead, and falls as prompts grow longer
// whatever the workload. Word sets ignore order and repetition, so one long prompt does
// not weigh more than a short one; words are lowercased runs of two or more letters,
// so the numbers, ids and dates that differ in every call of even the most regular
// workload do not count as different words. It needs no model or vocabulary, and on
// DiversitySample prompts costs about 5,000 sorted-set comparisons.
func Diversity(prompts []string) float64 {
	if len(prompts) < 2 {
		return 0
	}
	sets := make([][]uint64, len(prompts))
	for i, p := range prompts {
		sets[i] = wordSet(p)
	}
	var sum float64
	pairs := 0
	for i := range sets {
		for j := i + 1; j < len(sets); j++ {
			sum += 1 - jaccard(sets[i], sets[j])
			pairs++
		}
	}
	return sum / float64(pairs)
}

// wordSet returns the sorted, distinct hashes of the words of s.
func wordSet(s string) []uint64 {
	var set []uint64
	h := fnv.New64a()
	var word strings.Builder
	runes := 0
	flush := func() {
		if runes >= 2 {
			h.Reset()
			h.Write([]byte(word.String()))
			set = append(set, h.Sum64())
		}
		word.Reset()
		runes = 0
	}
	for _, r := range s {
		if unicode.IsLetter(r) {
			word.WriteRune(unicode.ToLower(r))
			runes++
			continue
		}
		flush()
	}
	flush()
	slices.Sort(set)
	return slices.Compact(set)
}

// jaccard returns |a ∩ b| / |a ∪ b| of two sorted sets; two empty sets are alike (1).
func jaccard(a, b []uint64) float64 {
	if len(a) == 0 && len(b) == 0 {
		return 1
	}
	shared := 0
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			shared++
			i++
			j++
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return float64(shared) / float64(len(a)+len(b)-shared)
}
