package eval

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// failed, as an agreement passed to scored, makes the call an error (status 500).
const failed = -1

// scored returns one result per agreement, on calls c000, c001, …: answered with
// that agreement (passing at 0.5 and over) at costUSD each, or failed.
func scored(candidate, variant string, costUSD float64, agreements ...float64) []store.EvalResult {
	out := make([]store.EvalResult, len(agreements))
	for i, a := range agreements {
		r := store.EvalResult{RunID: "run1", Candidate: candidate, Variant: variant, CallID: callID(i),
			Status: 200, Attempts: 1, Latency: 100 * time.Millisecond, CostUSD: costUSD,
			Agreement: a, Pass: a >= 0.5}
		if a == failed {
			r = store.EvalResult{RunID: "run1", Candidate: candidate, Variant: variant, CallID: callID(i),
				Status: 500, Error: "upstream 500", Attempts: 4, Latency: time.Minute}
		}
		out[i] = r
	}
	return out
}

func callID(i int) string { return fmt.Sprintf("c%03d", i) }

// repeat returns n copies of x, appended to the xs given.
func repeat(x float64, n int, xs ...float64) []float64 {
	for range n {
		xs = append(xs, x)
	}
	return xs
}

// refs returns the reference on n calls: gpt-4o, one second each, costUSD each.
func refs(n int, costUSD float64) []Reference {
	out := make([]Reference, n)
	for i := range out {
		out[i] = Reference{CallID: callID(i), Model: "gpt-4o", Stratum: "text", Latency: time.Second, CostUSD: costUSD}
	}
	return out
}

func concat(rss ...[]store.EvalResult) []store.EvalResult {
	var out []store.EvalResult
	for _, rs := range rss {
		out = append(out, rs...)
	}
	return out
}

func names(lb Leaderboard) []string {
	var out []string
	for _, r := range lb.Rows {
		out = append(out, rowName(&r))
	}
	return out
}

func TestBuildRecommends(t *testing.T) {
	// The reference costs $0.01 a call: $10.00 per 1,000.
	perfect := repeat(1, 100)
	ninety := repeat(0, 10, repeat(1, 90)...)     // mean 0.90: its interval stays under 0.95
	flaky := repeat(failed, 10, repeat(1, 90)...) // 10% errors
	nearly := repeat(0, 1, repeat(1, 99)...)      // mean 0.99: its interval clears 0.95
	tests := []struct {
		name      string
		threshold float64
		results   []store.EvalResult
		wantOrder []string
		want      Recommendation
		// wantReason, when set, replaces want.Reason with the reason built from the
		// leaderboard's own figures (bootstrap bounds are not hand-computable).
		wantReason func(lb Leaderboard) string
	}{
		{
			name: "the cheapest qualifying candidate, though a cheaper one fails",
			results: concat(
				scored("tiny", VariantZeroShot, 0.0001, ninety...),
				scored("small", VariantZeroShot, 0.001, perfect...),
				scored("medium", VariantZeroShot, 0.005, perfect...),
			),
			wantOrder: []string{"small (zero-shot)", "medium (zero-shot)", "tiny (zero-shot)"},
			want: Recommendation{Candidate: "small", Variant: VariantZeroShot,
				Reason: "small (zero-shot): quality 1.00 [0.96, 1.00] ≥ 0.95, cost $1.00 per 1,000 calls vs $10.00 (−90.0%)"},
		},
		{
			name:      "keep the reference when no candidate's quality qualifies",
			results:   concat(scored("tiny", VariantZeroShot, 0.0001, ninety...), scored("tiny", VariantInContext, 0.0002, repeat(0.5, 100)...)),
			wantOrder: []string{"tiny (zero-shot)", "tiny (in-context)"},
			want:      Recommendation{KeepReference: true},
			wantReason: func(lb Leaderboard) string {
				ci := lb.Rows[0].QualityCI
				return fmt.Sprintf("keep gpt-4o: no candidate's quality reaches 95%% of the reference with 95%% confidence; best is tiny (zero-shot) at 0.90 [%.2f, %.2f]", ci.Lo, ci.Hi)
			},
		},
		{
			name:      "a candidate that costs more than the reference is not recommended",
			results:   scored("big", VariantZeroShot, 0.02, perfect...),
			wantOrder: []string{"big (zero-shot)"},
			want: Recommendation{KeepReference: true,
				Reason: "keep gpt-4o: no eligible candidate; big (zero-shot) reaches quality 1.00 [0.96, 1.00] but costs $20.00 per 1,000 calls, not less than the reference's $10.00"},
		},
		{
			name:      "a candidate that costs the same as the reference is not recommended",
			results:   scored("same", VariantZeroShot, 0.01, perfect...),
			wantOrder: []string{"same (zero-shot)"},
			want: Recommendation{KeepReference: true,
				Reason: "keep gpt-4o: no eligible candidate; same (zero-shot) reaches quality 1.00 [0.96, 1.00] but costs $10.00 per 1,000 calls, not less than the reference's $10.00"},
		},
		{
			name:      "errors over 5% rule a candidate out even when its quality reaches the threshold",
			threshold: 0.8,
			results:   scored("flaky", VariantZeroShot, 0.0001, flaky...),
			wantOrder: []string{"flaky (zero-shot)"},
			want:      Recommendation{KeepReference: true},
			wantReason: func(lb Leaderboard) string {
				ci := lb.Rows[0].QualityCI
				return fmt.Sprintf("keep gpt-4o: no eligible candidate; flaky (zero-shot) reaches quality 0.90 [%.2f, %.2f] but errors on 10.0%% of calls (over 5%%)", ci.Lo, ci.Hi)
			},
		},
		{
			name:      "a dearer candidate is recommended over a cheaper one with too many errors, and the reason says why",
			threshold: 0.8,
			results:   concat(scored("flaky", VariantZeroShot, 0.0001, flaky...), scored("solid", VariantZeroShot, 0.003, perfect...)),
			wantOrder: []string{"solid (zero-shot)", "flaky (zero-shot)"},
			want: Recommendation{Candidate: "solid", Variant: VariantZeroShot,
				Reason: "solid (zero-shot): quality 1.00 [0.96, 1.00] ≥ 0.8, cost $3.00 per 1,000 calls vs $10.00 (−70.0%); cheaper but not eligible: flaky (zero-shot), errors on 10.0% of calls (over 5%)"},
		},
		{
			name: "on equal cost the higher quality wins",
			results: concat(
				scored("a", VariantZeroShot, 0.001, nearly...),
				scored("b", VariantZeroShot, 0.001, perfect...),
			),
			wantOrder: []string{"b (zero-shot)", "a (zero-shot)"},
			want: Recommendation{Candidate: "b", Variant: VariantZeroShot,
				Reason: "b (zero-shot): quality 1.00 [0.96, 1.00] ≥ 0.95, cost $1.00 per 1,000 calls vs $10.00 (−90.0%)"},
		},
		{
			name:      "on equal cost and quality the first by name wins",
			results:   concat(scored("b", VariantZeroShot, 0.001, perfect...), scored("a", VariantZeroShot, 0.001, perfect...)),
			wantOrder: []string{"a (zero-shot)", "b (zero-shot)"},
			want: Recommendation{Candidate: "a", Variant: VariantZeroShot,
				Reason: "a (zero-shot): quality 1.00 [0.96, 1.00] ≥ 0.95, cost $1.00 per 1,000 calls vs $10.00 (−90.0%)"},
		},
		{
			name:      "equal lower bounds rank the cheaper first",
			results:   concat(scored("a", VariantZeroShot, 0.001, perfect...), scored("c", VariantInContext, 0.0009, perfect...)),
			wantOrder: []string{"c (in-context)", "a (zero-shot)"},
			want: Recommendation{Candidate: "c", Variant: VariantInContext,
				Reason: "c (in-context): quality 1.00 [0.96, 1.00] ≥ 0.95, cost $0.90 per 1,000 calls vs $10.00 (−91.0%)"},
		},
		{
			name:      "keep the reference when no candidate was evaluated",
			wantOrder: nil,
			want:      Recommendation{KeepReference: true, Reason: "keep gpt-4o: no candidate was evaluated"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb := Build(Input{RunID: "run1", References: refs(100, 0.01), Results: tt.results, Threshold: tt.threshold, Seed: 1})
			if got := names(lb); !reflect.DeepEqual(got, tt.wantOrder) {
				t.Errorf("order = %q, want %q", got, tt.wantOrder)
			}
			want := tt.want
			if tt.wantReason != nil {
				want.Reason = tt.wantReason(lb)
			}
			if lb.Recommendation != want {
				t.Errorf("recommendation:\n got %+v\nwant %+v", lb.Recommendation, want)
			}
		})
	}
}

func TestBuildCountsErrorsAsFailures(t *testing.T) {
	rs := scored("m", VariantZeroShot, 0.002, 1, 1, 1, 1, 1, 1, 1, 0.4, failed, 1)
	// A failed call that says it agreed and passed still scores 0 and fails.
	rs[8].Agreement, rs[8].Pass = 1, true
	// A 200 with an error (an answer that could not be read) is a failure too.
	rs[9].Error = "no choices in the answer"
	rs[9].Latency = time.Hour
	lb := Build(Input{References: refs(10, 0.01), Results: rs, Threshold: 0.5})
	r := lb.Rows[0]
	if r.Calls != 10 || r.Answered != 8 || r.Errors != 2 {
		t.Errorf("calls/answered/errors = %d/%d/%d, want 10/8/2", r.Calls, r.Answered, r.Errors)
	}
	// (7·1 + 0.4) / 10
	if math.Abs(r.Quality-0.74) > 1e-12 {
		t.Errorf("quality = %g, want 0.74", r.Quality)
	}
	if r.PassRate != 0.7 || r.PassCI != Wilson(7, 10) {
		t.Errorf("pass rate = %g %v, want 0.7 %v", r.PassRate, r.PassCI, Wilson(7, 10))
	}
	// Timing and cost are over the 8 answered calls only.
	if r.LatencyP95 != 100*time.Millisecond {
		t.Errorf("p95 = %v, want 100ms: failed calls' timings are left out", r.LatencyP95)
	}
	if math.Abs(r.CostPer1K-2) > 1e-12 {
		t.Errorf("cost per 1k = %g, want 2", r.CostPer1K)
	}
	if r.Note != "errors on 20.0% of calls (over 5%)" {
		t.Errorf("note = %q", r.Note)
	}
	if !lb.Recommendation.KeepReference {
		t.Errorf("a candidate failing 20%% of calls was recommended: %+v", lb.Recommendation)
	}
}

func TestBuildRowFigures(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	references := []Reference{
		{CallID: "c000", Model: "gpt-4o", Stratum: "lookup", Latency: ms(100), TTFT: ms(40), CostUSD: 0.010},
		{CallID: "c001", Model: "gpt-4o", Stratum: "lookup", Latency: ms(200), TTFT: 0, CostUSD: 0.020},
		{CallID: "c002", Model: "gpt-4o-mini", Stratum: "json", Latency: ms(300), TTFT: ms(60), CostUSD: 0.000},
		{CallID: "c003", Model: "gpt-4o", Stratum: "text", Latency: ms(400), TTFT: ms(80), CostUSD: 0.010},
	}
	rs := scored("m", VariantInContext, 0, 1, 0.5, 0.25, failed)
	for i, c := range []struct {
		lat, ttft int
		cost      float64
	}{{50, 10, 0.001}, {150, 0, 0.002}, {250, 30, 0.003}} {
		rs[i].Latency, rs[i].TTFT, rs[i].CostUSD = ms(c.lat), ms(c.ttft), c.cost
	}
	rs[0].Score = []byte(`{"compare":{"Kind":"text"},"simulated":true,"judge":{"model":"j","score":7,"pass":true}}`)
	rs[1].Score = []byte(`{"judge":{"score":9,"pass":true}}`)
	rs[2].Score = []byte(`{"judge":{"pass":false,"error":"judge timed out"}}`)
	rs[3].Score = []byte(`not json`)

	lb := Build(Input{RunID: "r", SetID: "s", WorkloadID: "w", Workload: "refunds", References: references, Results: rs})

	wantRef := ReferenceRow{Model: "gpt-4o", Calls: 4, Quality: 1,
		LatencyP50: ms(250), LatencyP95: ms(385), // 300 + 0.85·100
		TTFTP50: ms(60), CostPer1K: 10} // mean of 40, 60, 80 (the 0 is unmeasured); $0.04 over 4 calls
	if !approxRef(lb.Reference, wantRef) {
		t.Errorf("reference = %+v\nwant        %+v", lb.Reference, wantRef)
	}

	r := lb.Rows[0]
	wantStrata := map[string]float64{"lookup": 0.75, "json": 0.25, "text": 0}
	if !reflect.DeepEqual(r.ByStratum, wantStrata) {
		t.Errorf("by stratum = %v, want %v", r.ByStratum, wantStrata)
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"quality", r.Quality, 0.4375}, // (1 + 0.5 + 0.25 + 0) / 4
		{"pass rate", r.PassRate, 0.5},
		{"latency p50", float64(r.LatencyP50), float64(ms(150))},
		{"latency p95", float64(r.LatencyP95), float64(ms(240))}, // 150 + 0.9·100
		{"ttft p50", float64(r.TTFTP50), float64(ms(20))},        // 10 and 30; the 0 is unmeasured
		{"cost per 1k", r.CostPer1K, 2},                          // $0.006 over 3 answered calls
		{"saving", r.Saving, 0.8},                                // 1 − 2/10
		{"simulated", float64(r.Simulated), 1},                   //
		{"judge calls", float64(r.JudgeCalls), 2},                // the failed grade is not one
		{"judge mean", r.JudgeMean, 8},                           // (7 + 9) / 2
		{"threshold", lb.Threshold, DefaultThreshold},            // 0 means the default
		{"errors", float64(r.Errors), 1},                         //
		{"answered", float64(r.Answered), 3},                     //
		{"calls", float64(r.Calls), 4},                           //
		{"quality lower bound in [0, mean]", math.Min(r.QualityCI.Lo, r.Quality), r.QualityCI.Lo},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
		}
	}
	if !lb.Simulated {
		t.Error("leaderboard not marked simulated, though an answer was")
	}
	if lb.RunID != "r" || lb.SetID != "s" || lb.WorkloadID != "w" || lb.Workload != "refunds" {
		t.Errorf("ids not carried over: %+v", lb)
	}
}

func approxRef(a, b ReferenceRow) bool {
	return a.Model == b.Model && a.Calls == b.Calls && a.Quality == b.Quality &&
		a.LatencyP50 == b.LatencyP50 && a.LatencyP95 == b.LatencyP95 && a.TTFTP50 == b.TTFTP50 &&
		math.Abs(a.CostPer1K-b.CostPer1K) < 1e-9
}

func TestBuildWithUnknownReferenceCost(t *testing.T) {
	lb := Build(Input{References: refs(100, 0), Results: scored("m", VariantZeroShot, 0.001, repeat(1, 100)...)})
	want := Recommendation{Candidate: "m", Variant: VariantZeroShot,
		Reason: "m (zero-shot): quality 1.00 [0.96, 1.00] ≥ 0.95, cost $1.00 per 1,000 calls; the reference's cost is unknown, so the saving is not measured"}
	if lb.Recommendation != want {
		t.Errorf("recommendation = %+v\nwant %+v", lb.Recommendation, want)
	}
	if lb.Rows[0].Saving != 0 {
		t.Errorf("saving = %g with no reference cost, want 0", lb.Rows[0].Saving)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	in := Input{References: refs(60, 0.01), Seed: 3, Results: concat(
		scored("a", VariantZeroShot, 0.001, repeat(0.3, 20, repeat(1, 40)...)...),
		scored("b", VariantInContext, 0.002, repeat(0.7, 30, repeat(1, 30)...)...),
	)}
	a, b := Build(in), Build(in)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two builds of the same input differ:\n%+v\n%+v", a, b)
	}
	if a.Rows[0].QualityCI == a.Rows[1].QualityCI {
		t.Errorf("rows share an interval %v; they should not share a random stream", a.Rows[0].QualityCI)
	}
}

func TestQualityTextShowsEnoughDecimalsToBeHonest(t *testing.T) {
	tests := []struct {
		q    float64
		ci   Interval
		bar  float64
		want string
	}{
		{0.93, Interval{0.89, 0.96}, 0.95, "0.93 [0.89, 0.96]"},
		// 0.9496 would print as 0.95, seeming to reach the bar it misses.
		{0.97, Interval{0.9496, 0.99}, 0.95, "0.9700 [0.9496, 0.9900]"},
		// 0.9512 would print as 0.95, seeming to miss a bar of 0.951 it reaches.
		{0.97, Interval{0.9512, 0.99}, 0.951, "0.970 [0.951, 0.990]"},
	}
	for _, tt := range tests {
		if got := qualityText(tt.q, tt.ci, tt.bar); got != tt.want {
			t.Errorf("qualityText(%g, %v, %g) = %q, want %q", tt.q, tt.ci, tt.bar, got, tt.want)
		}
	}
}

func TestReasonsNameTheReferenceModel(t *testing.T) {
	lb := Build(Input{Results: scored("m", VariantZeroShot, 0, 0)})
	if !strings.HasPrefix(lb.Recommendation.Reason, "keep the reference: ") {
		t.Errorf("reason with no reference model = %q", lb.Recommendation.Reason)
	}
}
