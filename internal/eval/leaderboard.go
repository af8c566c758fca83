package eval

// Build turns a run's stored results into the leaderboard. It reads the EvalResult
// fields the runner fills (Status, Error, Agreement, Pass, Latency, TTFT, CostUSD) and
// two optional members of the result's Score JSON (the runner's Verdict), next to
// whatever else is kept there:
//
//	{"simulated": true, "judge": {"score": 7, "pass": true}, ...}
//
//   - "simulated": true marks an answer the candidate's server said it invented or
//     degraded (the HeaderSimulated response header, set by package sim). Such
//     answers are counted per row and flag the whole leaderboard, because they say
//     nothing about the model named.
//   - "judge" is the LLM judge's verdict when one was asked (JudgeVerdict); its
//     "score" (1-10) is averaged into Row.JudgeMean over the calls that have one and
//     no "error". Its "pass" is not read: EvalResult.Pass is already the verdict
//     that counts.
//
// A Score that is missing, not JSON, or without these members is read as a real
// answer with no judge verdict.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/textfmt"
)

// DefaultThreshold is the share of the reference's quality a candidate's quality
// interval must reach when Input.Threshold is 0.
const DefaultThreshold = 0.95

// maxErrorShare is the largest share of calls a candidate may fail and still be
// recommended: a model that fails one call in twenty would send those calls back to
// the reference, or to the user as errors.
const maxErrorShare = 0.05

// Input is what Build ranks: one run's results on one eval set's test calls.
type Input struct {
	RunID      string
	SetID      string
	WorkloadID string
	Workload   string    // the workload's label
	At         time.Time // when the run finished; shown on the leaderboard
	// References are the reference model's recorded figures, one per test call. They
	// give the reference row, and each call's stratum for Row.ByStratum.
	References []Reference
	// Results are the run's results, one per (candidate, variant, test call), in any
	// order. Build ranks what it is given: a call without a result is not counted, so
	// a leaderboard of an unfinished run is a leaderboard of the calls done so far.
	Results []store.EvalResult
	// Threshold is the share of the reference's quality a candidate's quality
	// interval must reach to be recommended; 0 means DefaultThreshold.
	Threshold float64
	// Seed seeds the quality bootstraps; each row mixes in its candidate and variant,
	// so rows do not share a random stream. Zero is a seed like any other.
	Seed uint64
	// Resamples is the number of bootstrap resamples per row; 0 means
	// DefaultResamples.
	Resamples int
}

// Build computes the leaderboard: one row per (candidate, variant) with its figures,
// the reference's own figures, the ranking and the recommendation.
//
// A call counts as answered when Status is 200 and Error is empty; any other result is
// an error, which scores agreement 0 and does not pass, whatever the result says.
// Latency, TTFT and cost are taken over answered calls only (a failed call's timing
// says how long the retries took, not how fast the model is); a TTFT of 0 means not
// measured and is left out. Row.ByStratum joins results to References by CallID; a
// call with no reference, or none with a stratum, is in no stratum.
//
// Rows are ranked by the lower bound of their quality interval, highest first (the
// quality we are confident of, so a lucky small sample does not lead), then by cost
// per 1,000 calls, cheapest first, then by mean quality, then by name and variant.
//
// The recommendation is the cheapest row that is eligible: its quality interval's
// lower bound reaches Threshold times the reference's quality (1), it failed no more
// than 5% of its calls, and it costs less than the reference. Rows that tie on cost
// go to the higher mean quality. When the reference's cost is unknown (zero) cost
// cannot rule a row out, and the reason says so. When no row is eligible the advice
// is to keep the reference, with the best row's figures or, when rows reach the
// quality but fail another test, which test.
func Build(in Input) Leaderboard {
	threshold := in.Threshold
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	lb := Leaderboard{
		RunID: in.RunID, SetID: in.SetID, WorkloadID: in.WorkloadID, Workload: in.Workload,
		At: in.At, Threshold: threshold,
		Reference: referenceRow(in.References),
	}

	strata := make(map[string]string, len(in.References))
	for _, r := range in.References {
		strata[r.CallID] = r.Stratum
	}
	type key struct{ candidate, variant string }
	groups := map[key][]store.EvalResult{}
	var keys []key
	for _, r := range in.Results {
		k := key{r.Candidate, r.Variant}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range keys {
		seed := in.Seed ^ rowSeed(k.candidate, k.variant)
		row := buildRow(k.candidate, k.variant, groups[k], strata, seed, in.Resamples)
		if ref := lb.Reference.CostPer1K; ref > 0 {
			row.Saving = 1 - row.CostPer1K/ref
		}
		lb.Simulated = lb.Simulated || row.Simulated > 0
		lb.Rows = append(lb.Rows, row)
	}
	slices.SortFunc(lb.Rows, rankOrder)

	bar := threshold * lb.Reference.Quality
	for i := range lb.Rows {
		lb.Rows[i].Note = strings.Join(ineligible(&lb.Rows[i], lb.Reference), "; ")
	}
	lb.Recommendation = recommend(lb.Rows, lb.Reference, threshold, bar)
	return lb
}

// rankOrder orders rows best first; see Build.
func rankOrder(a, b Row) int {
	return cmp.Or(
		cmp.Compare(b.QualityCI.Lo, a.QualityCI.Lo),
		cmp.Compare(a.CostPer1K, b.CostPer1K),
		cmp.Compare(b.Quality, a.Quality),
		cmp.Compare(a.Candidate, b.Candidate),
		cmp.Compare(a.Variant, b.Variant),
	)
}

// rowSeed hashes a row's name into its bootstrap seed.
func rowSeed(candidate, variant string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(candidate))
	h.Write([]byte{0})
	h.Write([]byte(variant))
	return h.Sum64()
}

// scoreMarks are the members of EvalResult.Score the leaderboard reads; see the top
// of this file.
type scoreMarks struct {
	Simulated bool `json:"simulated"`
	Judge     *struct {
		Score *float64 `json:"score"`
		Error string   `json:"error"`
	} `json:"judge"`
}

func readMarks(raw json.RawMessage) scoreMarks {
	var m scoreMarks
	if len(raw) > 0 && json.Unmarshal(raw, &m) != nil {
		return scoreMarks{}
	}
	return m
}

func resultAnswered(r *store.EvalResult) bool { return r.Status == 200 && r.Error == "" }

func buildRow(candidate, variant string, rs []store.EvalResult, strata map[string]string, seed uint64, resamples int) Row {
	row := Row{Candidate: candidate, Variant: variant, Calls: len(rs)}
	scores := make([]float64, len(rs))
	passes := 0
	var latencies, ttfts []time.Duration
	cost, judgeSum := 0.0, 0.0
	type tally struct {
		sum float64
		n   int
	}
	byStratum := map[string]*tally{}

	for i := range rs {
		r := &rs[i]
		m := readMarks(r.Score)
		if m.Simulated {
			row.Simulated++
		}
		if m.Judge != nil && m.Judge.Score != nil && m.Judge.Error == "" {
			judgeSum += *m.Judge.Score
			row.JudgeCalls++
		}
		score := 0.0
		if resultAnswered(r) {
			row.Answered++
			score = clamp01(r.Agreement)
			if r.Pass {
				passes++
			}
			latencies = append(latencies, r.Latency)
			if r.TTFT > 0 {
				ttfts = append(ttfts, r.TTFT)
			}
			cost += r.CostUSD
		}
		scores[i] = score
		if s := strata[r.CallID]; s != "" {
			t := byStratum[s]
			if t == nil {
				t = &tally{}
				byStratum[s] = t
			}
			t.sum += score
			t.n++
		}
	}
	row.Errors = row.Calls - row.Answered

	row.Quality = meanOf(scores)
	row.QualityCI = QualityInterval(scores, resamples, seed)
	row.PassRate = float64(passes) / float64(max(row.Calls, 1))
	row.PassCI = Wilson(passes, row.Calls)
	if len(byStratum) > 0 {
		row.ByStratum = make(map[string]float64, len(byStratum))
		for s, t := range byStratum {
			row.ByStratum[s] = t.sum / float64(t.n)
		}
	}
	slices.Sort(latencies)
	slices.Sort(ttfts)
	row.LatencyP50 = quantileDurations(latencies, 0.5)
	row.LatencyP95 = quantileDurations(latencies, 0.95)
	row.TTFTP50 = quantileDurations(ttfts, 0.5)
	if row.Answered > 0 {
		row.CostPer1K = 1000 * cost / float64(row.Answered)
	}
	if row.JudgeCalls > 0 {
		row.JudgeMean = judgeSum / float64(row.JudgeCalls)
	}
	return row
}

// referenceRow is the reference's figures from its recorded calls. Its model is the
// one that answered most of them (the first by name on a tie): fallbacks may have
// answered a few.
func referenceRow(refs []Reference) ReferenceRow {
	rr := ReferenceRow{Calls: len(refs), Quality: 1}
	if len(refs) == 0 {
		return rr
	}
	models := map[string]int{}
	latencies := make([]time.Duration, 0, len(refs))
	var ttfts []time.Duration
	cost := 0.0
	for _, r := range refs {
		models[r.Model]++
		latencies = append(latencies, r.Latency)
		if r.TTFT > 0 {
			ttfts = append(ttfts, r.TTFT)
		}
		cost += r.CostUSD
	}
	for m, n := range models {
		if n > models[rr.Model] || (n == models[rr.Model] && m < rr.Model) {
			rr.Model = m
		}
	}
	slices.Sort(latencies)
	slices.Sort(ttfts)
	rr.LatencyP50 = quantileDurations(latencies, 0.5)
	rr.LatencyP95 = quantileDurations(latencies, 0.95)
	rr.TTFTP50 = quantileDurations(ttfts, 0.5)
	rr.CostPer1K = 1000 * cost / float64(len(refs))
	return rr
}

// ineligible lists why row may not be recommended whatever its quality: too many
// errors, or a cost no lower than the reference's.
func ineligible(row *Row, ref ReferenceRow) []string {
	var why []string
	if share := errorShare(row); share > maxErrorShare {
		why = append(why, fmt.Sprintf("errors on %s of calls (over %s)", textfmt.Pct1(share), pctTrim(maxErrorShare)))
	}
	if ref.CostPer1K > 0 && row.CostPer1K >= ref.CostPer1K {
		why = append(why, fmt.Sprintf("costs %s per 1,000 calls, not less than the reference's %s",
			usd(row.CostPer1K), usd(ref.CostPer1K)))
	}
	return why
}

func errorShare(row *Row) float64 {
	if row.Calls == 0 {
		return 0
	}
	return float64(row.Errors) / float64(row.Calls)
}

// recommend picks the cheapest eligible row; rows are in rank order.
func recommend(rows []Row, ref ReferenceRow, threshold, bar float64) Recommendation {
	refName := ref.Model
	if refName == "" {
		refName = "the reference"
	}
	var best *Row
	var reaching []*Row // rows whose quality reaches the bar, eligible or not
	for i := range rows {
		r := &rows[i]
		if r.QualityCI.Lo < bar {
			continue
		}
		reaching = append(reaching, r)
		if r.Note != "" {
			continue
		}
		if best == nil || cmp.Or(
			cmp.Compare(r.CostPer1K, best.CostPer1K),
			cmp.Compare(best.Quality, r.Quality),
			cmp.Compare(best.QualityCI.Lo, r.QualityCI.Lo),
		) < 0 {
			best = r
		}
	}

	if best != nil {
		reason := fmt.Sprintf("%s: quality %s ≥ %s, ", rowName(best), qualityText(best.Quality, best.QualityCI, bar), trimFloat(bar, 4))
		if ref.CostPer1K > 0 {
			reason += fmt.Sprintf("cost %s per 1,000 calls vs %s (%s)", usd(best.CostPer1K), usd(ref.CostPer1K), signedPct(-best.Saving))
		} else {
			reason += fmt.Sprintf("cost %s per 1,000 calls; the reference's cost is unknown, so the saving is not measured", usd(best.CostPer1K))
		}
		// Say which cheaper rows reached the quality but were ruled out.
		var passed []string
		for _, r := range reaching {
			if r != best && r.Note != "" && r.CostPer1K < best.CostPer1K {
				passed = append(passed, rowName(r)+", "+r.Note)
			}
		}
		if len(passed) > 0 {
			reason += "; cheaper but not eligible: " + strings.Join(passed, "; ")
		}
		return Recommendation{Candidate: best.Candidate, Variant: best.Variant, Reason: reason}
	}

	keep := Recommendation{KeepReference: true}
	switch {
	case len(rows) == 0:
		keep.Reason = fmt.Sprintf("keep %s: no candidate was evaluated", refName)
	case len(reaching) == 0:
		top := &rows[0]
		keep.Reason = fmt.Sprintf("keep %s: no candidate's quality reaches %s of the reference with 95%% confidence; best is %s at %s",
			refName, pctTrim(threshold), rowName(top), qualityText(top.Quality, top.QualityCI, bar))
	default:
		var why []string
		for _, r := range reaching {
			why = append(why, fmt.Sprintf("%s reaches quality %s but %s", rowName(r), qualityText(r.Quality, r.QualityCI, bar), r.Note))
		}
		keep.Reason = fmt.Sprintf("keep %s: no eligible candidate; %s", refName, strings.Join(why, "; "))
	}
	return keep
}

// rowName names a row as people say it: "llama-3.1-8b (in-context)".
func rowName(r *Row) string { return fmt.Sprintf("%s (%s)", r.Candidate, r.Variant) }

// qualityText formats a quality and its interval, "0.93 [0.89, 0.96]", with two
// decimals, or more when two would round the lower bound onto the wrong side of bar.
func qualityText(q float64, ci Interval, bar float64) string {
	d := 2
	for d < 5 {
		shown := math.Round(ci.Lo*math.Pow10(d)) / math.Pow10(d)
		if (shown >= bar) == (ci.Lo >= bar) {
			break
		}
		d++
	}
	return fmt.Sprintf("%.*f [%.*f, %.*f]", d, q, d, ci.Lo, d, ci.Hi)
}

func meanOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// clamp01 keeps a score in [0, 1]; NaN, which no scorer should give, scores 0.
func clamp01(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return min(max(x, 0), 1)
}
