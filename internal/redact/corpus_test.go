package redact

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// corpusSize is the number of generated samples; each plants one to three values.
const corpusSize = 4000

// typeScore is the quality of one type over the corpus.
type typeScore struct {
	tp, fn, fp int
	fnExamples []string
	fpExamples []string
}

func (s *typeScore) recall() float64 {
	if s.tp+s.fn == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fn)
}

func (s *typeScore) precision() float64 {
	if s.tp+s.fp == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fp)
}

// scoreCorpus redacts every sample as a call and compares what was replaced with what
// was planted, occurrence by occurrence: a planted value replaced under its type is a
// true positive, one left or replaced under another type a false negative, and a
// replaced value that was not planted (a near-miss, or part of one) a false positive.
func scoreCorpus(t *testing.T, r *Redactor, samples []sample) map[Type]*typeScore {
	t.Helper()
	scores := map[Type]*typeScore{}
	for _, ty := range BuiltinTypes {
		scores[ty] = &typeScore{}
	}
	for i, s := range samples {
		var got []label
		st := &State{record: func(t Type, v string) { got = append(got, label{t, v}) }}
		if _, _, err := r.redactCall(requestFor(s), nil, st); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		want := map[label]int{}
		for _, l := range s.labels {
			want[l]++
		}
		have := map[label]int{}
		for _, l := range got {
			have[l]++
		}
		for l, n := range want {
			tp := min(n, have[l])
			sc := scores[l.t]
			sc.tp += tp
			if n > tp {
				sc.fn += n - tp
				if len(sc.fnExamples) < 8 {
					sc.fnExamples = append(sc.fnExamples, fmt.Sprintf("%q in %q (found %v)", l.v, s.text, got))
				}
			}
		}
		for l, n := range have {
			fp := n - min(n, want[l])
			if fp == 0 {
				continue
			}
			sc, ok := scores[l.t]
			if !ok {
				continue
			}
			sc.fp += fp
			if len(sc.fpExamples) < 8 {
				sc.fpExamples = append(sc.fpExamples, fmt.Sprintf("%q in %q", l.v, s.text))
			}
		}
	}
	return scores
}

func buildCorpus(seed uint64, n int) []sample {
	g := newGen(seed)
	out := make([]sample, n)
	for i := range out {
		out[i] = g.sample()
	}
	return out
}

// TestCorpusQuality is the acceptance test of the detectors: recall >= 0.99 and
// precision >= 0.98 for every structured type over a generated, labelled corpus of
// agent messages with near-misses. Run with -v for the table; REDACT_CORPUS_SEED picks
// another corpus from the same generator.
func TestCorpusQuality(t *testing.T) {
	seed := uint64(20260315)
	if v := os.Getenv("REDACT_CORPUS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("REDACT_CORPUS_SEED: %v", err)
		}
		seed = n
	}
	samples := buildCorpus(seed, corpusSize)
	planted, chars := 0, 0
	for _, s := range samples {
		planted += len(s.labels)
		chars += len(s.text)
	}
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"gitleaks", Options{}},
		{"own secret rules only", Options{NoGitleaks: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			scores := scoreCorpus(t, r, samples)
			var b strings.Builder
			fmt.Fprintf(&b, "corpus: %d samples, %d planted values, %d bytes of text (%s)\n\n", len(samples), planted, chars, tc.name)
			fmt.Fprintf(&b, "| type | planted | found | missed | false pos. | recall | precision |\n|---|---:|---:|---:|---:|---:|---:|\n")
			for _, ty := range BuiltinTypes {
				s := scores[ty]
				fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.4f | %.4f |\n", ty, s.tp+s.fn, s.tp, s.fn, s.fp, s.recall(), s.precision())
			}
			t.Log("\n" + b.String())
			if path := os.Getenv("REDACT_CORPUS_TABLE"); path != "" {
				f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err == nil {
					fmt.Fprintln(f, b.String())
					f.Close()
				}
			}
			for _, ty := range BuiltinTypes {
				s := scores[ty]
				for _, ex := range s.fpExamples {
					t.Logf("%s false positive: %s", ty, ex)
				}
				for _, ex := range s.fnExamples {
					t.Logf("%s missed: %s", ty, ex)
				}
			}
			for _, ty := range BuiltinTypes {
				s := scores[ty]
				if s.tp+s.fn < 100 {
					t.Errorf("%s: only %d planted values; the corpus is too small to judge", ty, s.tp+s.fn)
				}
				if s.recall() < 0.99 {
					t.Errorf("%s recall %.4f < 0.99; missed e.g.:\n  %s", ty, s.recall(), strings.Join(s.fnExamples, "\n  "))
				}
				if s.precision() < 0.98 {
					t.Errorf("%s precision %.4f < 0.98; false positives e.g.:\n  %s", ty, s.precision(), strings.Join(s.fpExamples, "\n  "))
				}
			}
		})
	}
}
