package ui

import (
	"context"
	"net/http"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// overviewView is the overview page: the period's tiles, latency by route, charts.
type overviewView struct {
	common
	Calls          int64
	CandidateShare float64 // NaN without calls
	SavedPeriod    float64
	SavedTotal     float64 // since the first call
	EscalationRate float64 // NaN without calls sent to a candidate
	CostPeriod     float64
	Latency        []routeLatency
	Charts         []chart
}

// routeLatency is one route's calls and latency quantiles over the period.
type routeLatency struct {
	Route    store.Route
	Calls    int64
	P50, P95 time.Duration
}

// overview answers GET /ui/: the gateway's traffic over the period.
func (u *UI) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := parsePeriod(r.URL.Query())
	if err != nil {
		return err
	}
	v := overviewView{common: u.common(r, s, "Overview", "overview")}
	win := p.at(u.now())
	v.Window = win
	if u.rollups == nil {
		v.Notice = noRollups
		return u.render(w, http.StatusOK, "overview", v)
	}
	ctx := r.Context()
	rs, err := u.rollups.Rollups(ctx, store.RollupFilter{Since: win.Since, Until: win.Until, Step: win.Step})
	if err != nil {
		return err
	}
	all, err := u.allTime(ctx)
	if err != nil {
		return err
	}
	t := sumRollups(rs)
	g := newGrid(win, rs)
	v.Calls = t.all.Calls
	v.CandidateShare = t.candidateShare()
	v.EscalationRate = t.escalationRate()
	v.SavedPeriod = t.all.SavingsUSD()
	v.SavedTotal = all.SavingsUSD()
	v.CostPeriod = t.all.CostUSD + t.all.SecondCostUSD
	for _, route := range routes {
		rr := t.route[route]
		v.Latency = append(v.Latency, routeLatency{Route: route, Calls: rr.Calls,
			P50: rr.Latency.Quantile(0.5), P95: rr.Latency.Quantile(0.95)})
	}
	perRoute := func(f func(store.Route) []float64) []series {
		var out []series
		for _, route := range routes {
			out = append(out, series{Name: string(route), Values: f(route)})
		}
		return out
	}
	v.Charts = []chart{
		{ID: "calls", Title: "Calls per minute", Unit: "calls/min", Window: win, Format: fmtRate, Fill: true,
			Series: append([]series{{Name: "all", Values: g.callsPerMinute()}}, perRoute(g.routeCallsPerMinute)...)},
		{ID: "candidate-share", Title: "Share of calls answered by small models", Unit: "share of calls",
			Window: win, Format: fmtPct, Max: 1, Series: []series{{Name: "candidate", Values: g.candidateShare()}}},
		{ID: "saved", Title: "Money saved, cumulative", Unit: "US dollars", Window: win, Format: fmtUSD,
			Series: []series{{Name: "saved since the first call", Values: g.savedCumulative(v.SavedTotal - v.SavedPeriod)},
				{Name: "saved in this period", Values: g.savedCumulative(0)}}},
		{ID: "escalation-rate", Title: "Escalation rate", Unit: "share of calls sent to a candidate",
			Window: win, Format: fmtPct, Max: 1, Series: []series{{Name: "escalated", Values: g.escalationRate()}}},
		{ID: "latency-p50", Title: "Median latency (p50) by route", Unit: "ms", Window: win, Format: fmtMS,
			Series: perRoute(func(r store.Route) []float64 { return g.latency(r, 0.5) })},
		{ID: "latency-p95", Title: "95th percentile latency (p95) by route", Unit: "ms", Window: win, Format: fmtMS,
			Series: perRoute(func(r store.Route) []float64 { return g.latency(r, 0.95) })},
	}
	return u.render(w, http.StatusOK, "overview", v)
}

// allTime sums every rollup the store has: what was saved since the first call.
func (u *UI) allTime(ctx context.Context) (store.Rollup, error) {
	rs, err := u.rollups.Rollups(ctx, store.RollupFilter{})
	if err != nil {
		return store.Rollup{}, err
	}
	return sumRollups(rs).all, nil
}
