package ui

import (
	"math"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// routes are the routes the pages show, in order.
var routes = []store.Route{store.RouteReference, store.RouteCandidate, store.RouteEscalated}

// grid holds rollups placed in a window's buckets: summed over everything but route
// (total) and per route. A bucket with no calls is a zero Rollup.
type grid struct {
	w     window
	total []store.Rollup
	route map[store.Route][]store.Rollup
}

// newGrid sums rs into w's buckets; rollups outside w are left out.
func newGrid(w window, rs []store.Rollup) *grid {
	g := &grid{w: w, total: make([]store.Rollup, w.Points), route: map[store.Route][]store.Rollup{}}
	for _, r := range routes {
		g.route[r] = make([]store.Rollup, w.Points)
	}
	for i := range rs {
		r := &rs[i]
		j := w.index(r.Start)
		if j < 0 {
			continue
		}
		g.total[j].Add(r)
		if byRoute, ok := g.route[r.Route]; ok {
			byRoute[j].Add(r)
		}
	}
	return g
}

// series maps each bucket to a value; NaN leaves a gap in the chart.
func (g *grid) series(f func(i int) float64) []float64 {
	out := make([]float64, g.w.Points)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// callsPerMinute is the call rate in each bucket.
func (g *grid) callsPerMinute() []float64 {
	minutes := g.w.Step.Minutes()
	return g.series(func(i int) float64 { return float64(g.total[i].Calls) / minutes })
}

// routeCallsPerMinute is one route's call rate in each bucket.
func (g *grid) routeCallsPerMinute(r store.Route) []float64 {
	minutes := g.w.Step.Minutes()
	return g.series(func(i int) float64 { return float64(g.route[r][i].Calls) / minutes })
}

// candidateShare is the share of each bucket's calls the candidate answered; a gap
// where there were none.
func (g *grid) candidateShare() []float64 {
	return g.series(func(i int) float64 {
		return ratio(g.route[store.RouteCandidate][i].Calls, g.total[i].Calls)
	})
}

// escalationRate is, in each bucket, the share of the calls sent to a candidate that
// the reference answered in the end; a gap where none were sent to one.
func (g *grid) escalationRate() []float64 {
	return g.series(func(i int) float64 {
		esc := g.route[store.RouteEscalated][i].Calls
		return ratio(esc, g.route[store.RouteCandidate][i].Calls+esc)
	})
}

// savedCumulative is what had been saved by the end of each bucket, starting from
// before, what was saved before the window.
func (g *grid) savedCumulative(before float64) []float64 {
	sum := before
	return g.series(func(i int) float64 {
		sum += g.total[i].SavingsUSD()
		return sum
	})
}

// latency is a route's q-quantile latency in each bucket, in milliseconds; a gap
// where the route had no calls.
func (g *grid) latency(r store.Route, q float64) []float64 {
	return g.series(func(i int) float64 {
		h := &g.route[r][i].Latency
		if h.Count() == 0 {
			return math.NaN()
		}
		return ms(h.Quantile(q))
	})
}

// agreement is the mean agreement of each bucket's compared calls; a gap where none
// were compared.
func (g *grid) agreement() []float64 {
	return g.series(func(i int) float64 {
		t := &g.total[i]
		if t.Compared == 0 {
			return math.NaN()
		}
		return t.AgreementSum / float64(t.Compared)
	})
}

// escalations is how many calls each bucket escalated.
func (g *grid) escalations() []float64 {
	return g.series(func(i int) float64 { return float64(g.route[store.RouteEscalated][i].Calls) })
}

// totals are rollups summed over a period: in all and per route.
type totals struct {
	all   store.Rollup
	route map[store.Route]*store.Rollup
}

func newTotals() *totals {
	t := &totals{route: map[store.Route]*store.Rollup{}}
	for _, r := range routes {
		t.route[r] = &store.Rollup{Route: r}
	}
	return t
}

func (t *totals) add(r *store.Rollup) {
	t.all.Add(r)
	if rr, ok := t.route[r.Route]; ok {
		rr.Add(r)
	}
}

// sumRollups sums rollups over everything but route.
func sumRollups(rs []store.Rollup) *totals {
	t := newTotals()
	for i := range rs {
		t.add(&rs[i])
	}
	return t
}

// candidateShare is the share of the calls the candidate answered; NaN with none.
func (t *totals) candidateShare() float64 {
	return ratio(t.route[store.RouteCandidate].Calls, t.all.Calls)
}

// escalationRate is the share of calls sent to a candidate that the reference
// answered in the end: escalated / (candidate + escalated); NaN with none.
func (t *totals) escalationRate() float64 {
	esc := t.route[store.RouteEscalated].Calls
	return ratio(esc, t.route[store.RouteCandidate].Calls+esc)
}

// agreement is the mean agreement of the compared calls; NaN with none.
func (t *totals) agreement() float64 {
	if t.all.Compared == 0 {
		return math.NaN()
	}
	return t.all.AgreementSum / float64(t.all.Compared)
}

// group sums rollups by a key of each (its workload, its model), per route too.
func group(rs []store.Rollup, key func(*store.Rollup) string) map[string]*totals {
	out := map[string]*totals{}
	for i := range rs {
		k := key(&rs[i])
		t := out[k]
		if t == nil {
			t = newTotals()
			out[k] = t
		}
		t.add(&rs[i])
	}
	return out
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
