package store

import (
	"context"
	"math"
	"time"
)

// Rollups are the gateway's calls summed per minute, workload, route and served model,
// kept up to date as calls are written, so that dashboards read a few thousand rows
// rather than millions of calls.

// RollupStep is the finest bucket a rollup has: one minute.
const RollupStep = time.Minute

// Rollup is the sum of the gateway's calls (Source "") that started in one bucket,
// for one workload key, route and served model. Which of those it is split by depends
// on the RollupFilter that read it: a dimension not asked for is "" and summed over.
type Rollup struct {
	Start    time.Time // the bucket's start, UTC, a multiple of the filter's Step since the Unix epoch
	Workload string    // workload key: WorkloadID, else the client tag, else NoWorkload
	Route    Route
	Model    string // the served model; "" for calls no model answered

	Calls            int64
	Errors           int64 // Status >= 400
	PromptTokens     int64
	CompletionTokens int64
	CostUSD          float64 // Call.CostUSD
	SecondCostUSD    float64 // Call.Second.CostUSD
	ReferenceCostUSD float64 // Call.ReferenceCostUSD
	Compared         int64   // calls whose second answer was compared
	Passed           int64   // of those, compare passed
	AgreementSum     float64 // sum of the compared agreements
	GuardChecked     int64   // calls with a guard verdict (Call.Guard != "")
	GuardFailed      int64   // of those, not GuardPass
	Latency          LatencyHistogram
}

// SavingsUSD is what the bucket's calls saved against the reference answering them
// alone (see Call.SavingsUSD).
func (r *Rollup) SavingsUSD() float64 { return r.ReferenceCostUSD - r.CostUSD - r.SecondCostUSD }

// Add sums o into r (bucket and dimensions are left as they are).
func (r *Rollup) Add(o *Rollup) {
	r.Calls += o.Calls
	r.Errors += o.Errors
	r.PromptTokens += o.PromptTokens
	r.CompletionTokens += o.CompletionTokens
	r.CostUSD += o.CostUSD
	r.SecondCostUSD += o.SecondCostUSD
	r.ReferenceCostUSD += o.ReferenceCostUSD
	r.Compared += o.Compared
	r.Passed += o.Passed
	r.AgreementSum += o.AgreementSum
	r.GuardChecked += o.GuardChecked
	r.GuardFailed += o.GuardFailed
	r.Latency.Merge(&o.Latency)
}

// AddCall sums one call into r.
func (r *Rollup) AddCall(c *Call) {
	r.Calls++
	if c.Status >= 400 {
		r.Errors++
	}
	r.PromptTokens += int64(c.PromptTokens)
	r.CompletionTokens += int64(c.CompletionTokens)
	r.CostUSD += c.CostUSD
	r.ReferenceCostUSD += c.ReferenceCostUSD
	if s := c.Second; s != nil {
		r.SecondCostUSD += s.CostUSD
		if s.Compared {
			r.Compared++
			r.AgreementSum += s.Agreement
			if s.Pass {
				r.Passed++
			}
		}
	}
	if c.Guard != "" {
		r.GuardChecked++
		if c.Guard != GuardPass {
			r.GuardFailed++
		}
	}
	r.Latency.Add(c.Latency)
}

// RollupKey returns the workload key a call is rolled up (and reported) under.
func RollupKey(c *Call) string {
	switch {
	case c.WorkloadID != "":
		return c.WorkloadID
	case c.Workload != "":
		return c.Workload
	}
	return NoWorkload
}

// RollupFilter selects rollups and says how to sum them.
type RollupFilter struct {
	Since, Until time.Time // buckets starting in [Since, Until); zero: unbounded
	// Step is the bucket size of the result, a whole number of minutes; 0 sums the
	// whole period into one bucket (Start is then Since, or the first call's bucket).
	Step     time.Duration
	Workload string // only this workload key; "" for all
	// ByWorkload and ByModel split the result by workload key and by served model;
	// every result is split by route.
	ByWorkload, ByModel bool
}

// RollupStore reads rollups. Stores keep them in the same transaction as the calls
// they sum (InsertCalls, and the calls ImportCalls adds), for gateway calls only.
type RollupStore interface {
	// Rollups returns the sums selected by f, ordered by Start, then workload, route
	// and model.
	Rollups(ctx context.Context, f RollupFilter) ([]Rollup, error)
}

// LatencyHistogram counts latencies in LatencyBuckets log-spaced buckets: bucket 0
// holds latencies up to 1 ms, bucket i up to 1 ms × 1.25^i, and the last everything
// above. A quantile read from it is within one bucket's width (25%) of the true one.
type LatencyHistogram [LatencyBuckets]uint32

// LatencyBuckets is how many buckets a LatencyHistogram has: up to ~10 minutes.
const LatencyBuckets = 64

// latencyGrowth is the ratio between consecutive bucket bounds.
const latencyGrowth = 1.25

// LatencyBucket returns the bucket a latency falls in.
func LatencyBucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= 1 {
		return 0
	}
	i := int(math.Ceil(math.Log(ms) / math.Log(latencyGrowth)))
	return min(i, LatencyBuckets-1)
}

// LatencyBucketBound returns bucket i's upper bound.
func LatencyBucketBound(i int) time.Duration {
	return time.Duration(math.Pow(latencyGrowth, float64(i)) * float64(time.Millisecond))
}

// Add counts one latency.
func (h *LatencyHistogram) Add(d time.Duration) { h[LatencyBucket(d)]++ }

// Merge adds o's counts to h.
func (h *LatencyHistogram) Merge(o *LatencyHistogram) {
	for i := range h {
		h[i] += o[i]
	}
}

// Count returns how many latencies h holds.
func (h *LatencyHistogram) Count() int64 {
	var n int64
	for _, c := range h {
		n += int64(c)
	}
	return n
}

// Quantile returns the q-quantile (0..1) of the latencies, interpolated within its
// bucket on a log scale; 0 when h is empty.
func (h *LatencyHistogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var seen float64
	for i, c := range h {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := 0.0, math.Log(float64(LatencyBucketBound(i)))
			if i > 0 {
				lo = math.Log(float64(LatencyBucketBound(i - 1)))
			} else {
				lo = hi - math.Log(latencyGrowth)
			}
			f := (rank - seen) / float64(c)
			return time.Duration(math.Exp(lo + f*(hi-lo)))
		}
		seen += float64(c)
	}
	return LatencyBucketBound(LatencyBuckets - 1)
}
