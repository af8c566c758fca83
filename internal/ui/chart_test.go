package ui

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 1, []float64{0, 0.25, 0.5, 0.75, 1}},
		{0, 7.3, []float64{0, 2, 4, 6, 8}},
		{0, 100, []float64{0, 25, 50, 75, 100}},
		{-0.5, 2, []float64{-1, 0, 1, 2}},
		{0, 0.003, []float64{0, 0.001, 0.002, 0.003}},
		{0, 1234, []float64{0, 500, 1000, 1500}},
	} {
		got := niceTicks(c.lo, c.hi, 5)
		if len(got) != len(c.want) {
			t.Errorf("niceTicks(%v, %v) = %v; want %v", c.lo, c.hi, got, c.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-c.want[i]) > 1e-12 {
				t.Errorf("niceTicks(%v, %v) = %v; want %v", c.lo, c.hi, got, c.want)
				break
			}
		}
	}
}

func TestLinePathLiftsThePenOverGaps(t *testing.T) {
	nan := math.NaN()
	x := func(i int) float64 { return float64(10 * i) }
	y := func(v float64) float64 { return 100 - v }
	for _, c := range []struct {
		values []float64
		want   string
		dots   []point
	}{
		{nil, "", nil},
		{[]float64{nan, nan}, "", nil},
		{[]float64{1, 2, 3}, "M0.0 99.0 L10.0 98.0 L20.0 97.0", nil},
		{[]float64{1, nan, 2, 3}, "M20.0 98.0 L30.0 97.0", []point{{0, 99}}},
		{[]float64{1, 2, nan, 3, 4}, "M0.0 99.0 L10.0 98.0 M30.0 97.0 L40.0 96.0", nil},
		{[]float64{nan, 5, nan}, "", []point{{10, 95}}},
	} {
		got, dots := linePath(c.values, x, y)
		if got != c.want || !slices.Equal(dots, c.dots) {
			t.Errorf("linePath(%v) = %q, %v; want %q, %v", c.values, got, dots, c.want, c.dots)
		}
	}
}

func TestPeriodsAlignWithRollupBuckets(t *testing.T) {
	now := time.Date(2025, 6, 1, 13, 2, 30, 0, time.UTC)
	for _, c := range []struct {
		name         string
		since, until time.Time
	}{
		{"1h", time.Date(2025, 6, 1, 12, 3, 0, 0, time.UTC), time.Date(2025, 6, 1, 13, 3, 0, 0, time.UTC)},
		{"24h", time.Date(2025, 5, 31, 13, 5, 0, 0, time.UTC), time.Date(2025, 6, 1, 13, 5, 0, 0, time.UTC)},
		{"7d", time.Date(2025, 5, 25, 14, 0, 0, 0, time.UTC), time.Date(2025, 6, 1, 14, 0, 0, 0, time.UTC)},
		{"30d", time.Date(2025, 5, 2, 16, 0, 0, 0, time.UTC), time.Date(2025, 6, 1, 16, 0, 0, 0, time.UTC)},
	} {
		p, err := parsePeriod(map[string][]string{"period": {c.name}})
		if err != nil {
			t.Fatal(err)
		}
		w := p.at(now)
		if !w.Since.Equal(c.since) || !w.Until.Equal(c.until) {
			t.Errorf("%s at %v: %v to %v; want %v to %v", c.name, now, w.Since, w.Until, c.since, c.until)
		}
		if w.Points < 60 || w.Points > 300 || w.Since.Add(time.Duration(w.Points)*w.Step) != w.Until {
			t.Errorf("%s: %d points of %v", c.name, w.Points, w.Step)
		}
		if w.index(now) != w.Points-1 || w.index(w.Until) != -1 || w.index(w.Since) != 0 || w.index(w.Since.Add(-time.Second)) != -1 {
			t.Errorf("%s: now is not in the last bucket", c.name)
		}
	}
	if p, err := parsePeriod(nil); err != nil || p.Name != "24h" {
		t.Errorf("default period %v, %v; want 24h", p.Name, err)
	}
}

func TestGridSharesHaveGapsWhereThereIsNothingToShare(t *testing.T) {
	p, _ := parsePeriod(map[string][]string{"period": {"1h"}})
	w := p.at(t0)
	at := func(i int) time.Time { return w.Since.Add(time.Duration(i) * w.Step) }
	rs := []store.Rollup{
		{Start: at(0), Route: store.RouteReference, Calls: 4},
		{Start: at(0), Route: store.RouteCandidate, Calls: 3, Compared: 2, AgreementSum: 1.5},
		{Start: at(0), Route: store.RouteEscalated, Calls: 1},
		{Start: at(2), Route: store.RouteReference, Calls: 5},
		{Start: w.Until, Route: store.RouteReference, Calls: 99}, // outside
	}
	g := newGrid(w, rs)
	share, esc, agree := g.candidateShare(), g.escalationRate(), g.agreement()
	if share[0] != 3.0/8 || esc[0] != 1.0/4 || agree[0] != 0.75 {
		t.Errorf("bucket 0: share %v, escalation %v, agreement %v", share[0], esc[0], agree[0])
	}
	if !math.IsNaN(share[1]) || share[2] != 0 || !math.IsNaN(esc[2]) || !math.IsNaN(agree[2]) {
		t.Errorf("buckets 1-2: share %v %v, escalation %v, agreement %v; want gaps where nothing is shared",
			share[1], share[2], esc[2], agree[2])
	}
	if got := g.callsPerMinute(); got[0] != 8 || got[2] != 5 || slices.Contains(got, 99) {
		t.Errorf("calls per minute %v", got[:3])
	}
}

func TestChartViewDescribesItsData(t *testing.T) {
	p, _ := parsePeriod(map[string][]string{"period": {"1h"}})
	w := p.at(t0)
	vals := make([]float64, w.Points)
	for i := range vals {
		vals[i] = math.NaN()
	}
	vals[10], vals[11] = 0.25, 0.5
	c := chart{ID: "x", Title: "Share", Unit: "share", Window: w, Format: fmtPct, Max: 1,
		Series: []series{{Name: "candidate", Values: vals}, {Name: "empty", Values: make([]float64, w.Points)}}}
	v := c.view()
	if len(v.Rows) != 2 || v.Omitted != w.Points-2 {
		t.Errorf("%d table rows, %d left out; want the 2 buckets with data", len(v.Rows), v.Omitted)
	}
	for _, want := range []string{"candidate: from 25.0% to 50.0%, latest 50.0%.", "one point per minute", "empty: from 0.0% to 0.0%"} {
		if !strings.Contains(v.Summary, want) {
			t.Errorf("summary %q lacks %q", v.Summary, want)
		}
	}
	if v.YTicks[len(v.YTicks)-1].Label != "100.0%" || v.YTicks[0].Label != "0.0%" {
		t.Errorf("y ticks %v; want 0%% to 100%%", v.YTicks)
	}
	if len(v.XTicks) < 3 || len(v.XTicks) > 9 {
		t.Errorf("%d x ticks", len(v.XTicks))
	}
	if v.Lines[0].D == "" || v.Lines[0].Area != "" {
		t.Errorf("lines %+v", v.Lines)
	}
}
