package eval

import (
	"math"
	"testing"
	"time"
)

func TestWilsonMatchesPublishedIntervals(t *testing.T) {
	// Newcombe (1998), "Two-sided confidence intervals for the single proportion",
	// table I, method 3 (score interval without continuity correction), to four places.
	// The rest are the usual worked examples; 0/n's upper bound is z²/(n+z²) exactly
	// (0.27753 for n = 10).
	tests := []struct {
		s, n   int
		lo, hi float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{1, 29, 0.0061, 0.1718},
		{0, 10, 0, 0.2775},
		{5, 10, 0.2366, 0.7634},
		{10, 10, 0.7225, 1},
		{95, 100, 0.8882, 0.9785},
	}
	for _, tt := range tests {
		got := Wilson(tt.s, tt.n)
		if math.Abs(got.Lo-tt.lo) > 1e-4 || math.Abs(got.Hi-tt.hi) > 1e-4 {
			t.Errorf("Wilson(%d, %d) = [%.5f, %.5f], want [%.4f, %.4f]", tt.s, tt.n, got.Lo, got.Hi, tt.lo, tt.hi)
		}
	}
}

func TestWilsonWithNoTrialsKnowsNothing(t *testing.T) {
	if got := Wilson(0, 0); got != (Interval{0, 1}) {
		t.Errorf("Wilson(0, 0) = %v, want [0, 1]", got)
	}
}

func TestWilsonBoundsAreExactAtTheEnds(t *testing.T) {
	for n := 1; n <= 200; n++ {
		if got := Wilson(0, n); got.Lo != 0 {
			t.Errorf("Wilson(0, %d).Lo = %g, want 0", n, got.Lo)
		}
		if got := Wilson(n, n); got.Hi != 1 {
			t.Errorf("Wilson(%d, %d).Hi = %g, want 1", n, n, got.Hi)
		}
	}
}

// agreementSample returns n values in [0, 1] with a mean near 0.8: a mix of exact answers,
// partial ones and failures, the shape agreement scores have.
func agreementSample(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		switch i % 10 {
		case 0:
			xs[i] = 0
		case 1, 2:
			xs[i] = 0.5
		default:
			xs[i] = 1
		}
	}
	return xs
}

func TestBootstrapMeanIsDeterministicForASeed(t *testing.T) {
	xs := agreementSample(120)
	a, b := BootstrapMean(xs, 0, 7), BootstrapMean(xs, 0, 7)
	if a != b {
		t.Fatalf("same seed, different intervals: %v and %v", a, b)
	}
	if c := BootstrapMean(xs, 0, 8); c == a {
		t.Errorf("seeds 7 and 8 gave the same interval %v; the seed is not used", a)
	}
}

func TestBootstrapMeanContainsTheMeanAndNarrowsWithN(t *testing.T) {
	prev := math.Inf(1)
	for _, n := range []int{20, 80, 320, 1280} {
		xs := agreementSample(n)
		m := meanOf(xs)
		iv := BootstrapMean(xs, 2000, 1)
		if iv.Lo > m || iv.Hi < m {
			t.Errorf("n=%d: interval %v does not contain the mean %.4f", n, iv, m)
		}
		if iv.Lo < 0 || iv.Hi > 1 {
			t.Errorf("n=%d: interval %v leaves [0, 1]", n, iv)
		}
		w := iv.Hi - iv.Lo
		if w >= prev {
			t.Errorf("n=%d: width %.4f, not narrower than %.4f at a quarter the calls", n, w, prev)
		}
		// The standard error of the mean shrinks as 1/sqrt(n): quadrupling n about
		// halves the width. Check the width is near 2·1.96·sd/sqrt(n).
		sd := 0.0
		for _, x := range xs {
			sd += (x - m) * (x - m)
		}
		sd = math.Sqrt(sd / float64(n))
		want := 2 * z95 * sd / math.Sqrt(float64(n))
		if math.Abs(w-want) > 0.2*want {
			t.Errorf("n=%d: width %.4f, want about %.4f (normal approximation)", n, w, want)
		}
		prev = w
	}
}

func TestBootstrapMeanDegenerateSamples(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want Interval
	}{
		{"none", nil, Interval{0, 1}},
		{"one", []float64{0.4}, Interval{0.4, 0.4}},
		{"all perfect", []float64{1, 1, 1, 1}, Interval{1, 1}},
		{"all failed", []float64{0, 0, 0}, Interval{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BootstrapMean(tt.xs, 100, 1); got != tt.want {
				t.Errorf("BootstrapMean(%v) = %v, want %v", tt.xs, got, tt.want)
			}
		})
	}
}

func TestQuantileInterpolatesBetweenRanks(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tens := ms(100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)
	tests := []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(42), 0.95, 42 * time.Millisecond},
		{"odd median", ms(30, 10, 20), 0.5, 20 * time.Millisecond},
		{"even median is the midpoint", ms(40, 10, 30, 20), 0.5, 25 * time.Millisecond},
		// position 0.95·9 = 8.55: 900 + 0.55·100
		{"p95 of ten", tens, 0.95, 955 * time.Millisecond},
		{"min", tens, 0, 100 * time.Millisecond},
		{"max", tens, 1, 1000 * time.Millisecond},
		{"q above 1 is the max", tens, 1.5, 1000 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quantile(tt.ds, tt.q); got != tt.want {
				t.Errorf("Quantile(%v, %g) = %v, want %v", tt.ds, tt.q, got, tt.want)
			}
		})
	}
}

func TestQuantileLeavesItsInputAlone(t *testing.T) {
	ds := []time.Duration{3, 1, 2}
	Quantile(ds, 0.5)
	if ds[0] != 3 || ds[1] != 1 || ds[2] != 2 {
		t.Errorf("Quantile sorted its input: %v", ds)
	}
}

func TestQualityIntervalNeverCollapses(t *testing.T) {
	ones := make([]float64, 188)
	for i := range ones {
		ones[i] = 1
	}
	iv := QualityInterval(ones, 0, 1)
	if w := Wilson(188, 188); math.Abs(iv.Lo-w.Lo) > 1e-12 || iv.Hi != 1 {
		t.Errorf("all agree: %+v, want Wilson's %+v", iv, w)
	}
	// Mixed scores: the union of the bootstrap and Wilson intervals.
	xs := []float64{1, 1, 0.5, 1, 0, 1, 1, 0.8, 1, 1, 1, 0, 1, 1, 1, 1, 0.9, 1, 1, 1}
	boot, got := BootstrapMean(xs, 0, 3), QualityInterval(xs, 0, 3)
	if got.Lo > boot.Lo || got.Hi < boot.Hi {
		t.Errorf("%+v does not contain the bootstrap interval %+v", got, boot)
	}
	if QualityInterval(nil, 0, 1) != (Interval{0, 1}) {
		t.Error("no scores: want [0, 1]")
	}
}
