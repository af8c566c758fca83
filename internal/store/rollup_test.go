package store

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestLatencyHistogramQuantileIsWithinABucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h LatencyHistogram
	var all []time.Duration
	for range 20000 {
		d := time.Duration(rng.ExpFloat64() * float64(80*time.Millisecond))
		h.Add(d)
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for _, q := range []float64{0.5, 0.9, 0.95, 0.99} {
		want := all[int(q*float64(len(all)))]
		got := h.Quantile(q)
		if r := float64(got) / float64(want); r < 1/latencyGrowth || r > latencyGrowth {
			t.Errorf("q%.2f = %v, true %v: off by more than a bucket", q, got, want)
		}
	}
	if h.Count() != 20000 {
		t.Errorf("count %d", h.Count())
	}
}

func TestLatencyBucketBounds(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, time.Millisecond, 1001 * time.Microsecond, 37 * time.Millisecond, 2 * time.Second, time.Hour} {
		i := LatencyBucket(d)
		if d > LatencyBucketBound(i) && i < LatencyBuckets-1 {
			t.Errorf("%v in bucket %d with bound %v", d, i, LatencyBucketBound(i))
		}
		if i > 0 && d <= LatencyBucketBound(i-1) {
			t.Errorf("%v in bucket %d, but fits bucket %d (bound %v)", d, i, i-1, LatencyBucketBound(i-1))
		}
	}
	var empty LatencyHistogram
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
}

func TestRollupAddCallSumsWhatTheReportSums(t *testing.T) {
	var r Rollup
	calls := []Call{
		{Status: 200, PromptTokens: 10, CompletionTokens: 2, CostUSD: 1, ReferenceCostUSD: 1, Latency: 5 * time.Millisecond},
		{Status: 200, CostUSD: 0.1, ReferenceCostUSD: 1, Guard: GuardPass,
			Second: &SecondAnswer{Kind: SecondVerify, CostUSD: 1, Compared: true, Agreement: 0.5, Pass: false}},
		{Status: 502, Guard: "tool_known", Second: &SecondAnswer{Kind: SecondRejected, CostUSD: 0.2}},
	}
	for i := range calls {
		r.AddCall(&calls[i])
	}
	var sum float64
	for i := range calls {
		sum += calls[i].SavingsUSD()
	}
	if r.Calls != 3 || r.Errors != 1 || r.Compared != 1 || r.Passed != 0 || r.AgreementSum != 0.5 ||
		r.GuardChecked != 2 || r.GuardFailed != 1 || r.Latency.Count() != 3 || r.PromptTokens != 10 {
		t.Errorf("rollup %+v", r)
	}
	if d := r.SavingsUSD() - sum; d > 1e-12 || d < -1e-12 {
		t.Errorf("rollup savings %g, calls' %g", r.SavingsUSD(), sum)
	}
	var twice Rollup
	twice.Add(&r)
	twice.Add(&r)
	if twice.Calls != 6 || twice.Latency.Count() != 6 {
		t.Errorf("Add: %+v", twice)
	}
}
