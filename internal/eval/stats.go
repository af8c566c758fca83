package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// z95 is the standard normal quantile for a two-sided 95% interval.
const z95 = 1.959964

// DefaultResamples is the number of bootstrap resamples BootstrapMean draws when asked
// for none: enough that the 2.5th and 97.5th percentiles move by well under 0.01
// between seeds on a few hundred calls.
const DefaultResamples = 2000

// Wilson returns the 95% Wilson score interval for a proportion of successes out of
// n. Unlike the normal approximation it stays inside [0, 1] and is not degenerate at
// 0 or n successes, which is where a good candidate's pass rate sits. With n == 0
// nothing is known and the interval is [0, 1].
func Wilson(successes, n int) Interval {
	if n <= 0 {
		return Interval{0, 1}
	}
	successes = min(max(successes, 0), n)
	iv := wilson(float64(successes)/float64(n), n)
	// At 0 and n successes one bound is exactly 0 or 1; floating point leaves 1e-17.
	if successes == 0 {
		iv.Lo = 0
	}
	if successes == n {
		iv.Hi = 1
	}
	return iv
}

// QualityInterval is the 95% interval Row.Quality carries for the mean of xs, values
// in [0, 1]: the union of the percentile bootstrap interval (BootstrapMean) and the
// Wilson interval of the mean taken as a proportion of len(xs). The bootstrap follows
// the sample's shape but collapses to a point when every call agrees (a candidate
// that matched 188 calls of 188 is not certain to match every call); the Wilson bound
// is the widest a [0, 1] variable of that mean can need (none has more variance than
// a 0/1 one with the same mean), so it keeps the interval honest at the edges.
func QualityInterval(xs []float64, resamples int, seed uint64) Interval {
	boot := BootstrapMean(xs, resamples, seed)
	if len(xs) == 0 {
		return boot
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	w := wilson(min(max(sum/float64(len(xs)), 0), 1), len(xs))
	return Interval{Lo: min(boot.Lo, w.Lo), Hi: max(boot.Hi, w.Hi)}
}

// wilson is the Wilson score interval for an observed proportion p of n trials.
func wilson(p float64, n int) Interval {
	nf := float64(n)
	z2 := z95 * z95
	den := 1 + z2/nf
	center := (p + z2/(2*nf)) / den
	half := z95 / den * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return Interval{Lo: max(0, center-half), Hi: min(1, center+half)}
}

// BootstrapMean returns a 95% percentile bootstrap interval for the mean of xs, values
// in [0, 1] such as agreement scores: it draws resamples (DefaultResamples when 0 or
// less) samples of len(xs) values with replacement and takes the 2.5th and 97.5th
// percentiles of their means (linear interpolation, as Quantile). The generator is PCG
// seeded with seed, so the same xs and seed give the same interval on every machine.
//
// With no values nothing is known and the interval is [0, 1]; with one value, or
// values all alike, it is that value: the bootstrap cannot see variance the sample
// does not show, which is why small samples also need the pass rate's Wilson interval.
func BootstrapMean(xs []float64, resamples int, seed uint64) Interval {
	n := len(xs)
	if n == 0 {
		return Interval{0, 1}
	}
	if !slices.ContainsFunc(xs, func(x float64) bool { return x != xs[0] }) {
		return Interval{xs[0], xs[0]}
	}
	if resamples <= 0 {
		resamples = DefaultResamples
	}
	// The second PCG word is fixed: one seed is all a caller needs to vary.
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	means := make([]float64, resamples)
	for r := range means {
		sum := 0.0
		for range n {
			sum += xs[rng.IntN(n)]
		}
		means[r] = sum / float64(n)
	}
	slices.Sort(means)
	return Interval{Lo: quantileSorted(means, 0.025), Hi: quantileSorted(means, 0.975)}
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of ds by linear interpolation between
// the two nearest ranks: the sorted values sit at positions 0 … n-1 and the quantile at
// q·(n-1) (Hyndman and Fan's type 7, the default of NumPy and R). So the p50 of an even
// count is the midpoint of the middle two, and the p95 of 10 values lies between the
// 9th and 10th. ds is not modified; an empty ds gives 0.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return quantileDurations(s, q)
}

// quantileDurations is Quantile on values already sorted.
func quantileDurations(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	lo, frac := rankOf(len(sorted), q)
	if frac == 0 {
		return sorted[lo]
	}
	step := float64(sorted[lo+1] - sorted[lo])
	return sorted[lo] + time.Duration(math.Round(frac*step))
}

// quantileSorted is Quantile's interpolation for sorted float64 values.
func quantileSorted(sorted []float64, q float64) float64 {
	lo, frac := rankOf(len(sorted), q)
	if frac == 0 {
		return sorted[lo]
	}
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// rankOf places quantile q among n sorted values: the index at or below it and the
// fraction of the way to the next one (0 when it falls on a value).
func rankOf(n int, q float64) (int, float64) {
	q = min(max(q, 0), 1)
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return n - 1, 0
	}
	return lo, h - float64(lo)
}
