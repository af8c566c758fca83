package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"

	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/store"
)

// workloadRow is one workload as the workloads page lists it: what the latest
// analysis says of it, its policy, and its calls over the period.
type workloadRow struct {
	Key       string
	Label     string // the analysis's label; "" when it was not analysed
	Analysed  bool
	Readiness int // 0-100; meaningful when Analysed

	Policy *store.Policy // nil: observed, never shifted

	figures
}

// figures are a workload's calls summed over the period.
type figures struct {
	Calls          int64
	Cost           float64 // paid, second answers included
	CostShare      float64 // of every workload's cost; NaN when nothing was paid
	CandidateShare float64 // NaN without calls
	Escalations    int64
	EscalationRate float64 // NaN without calls sent to a candidate
	Agreement      float64 // mean agreement of the compared calls; NaN when none were
	Compared       int64
	GuardFailed    int64
	Saved          float64
}

func newFigures(t *totals) figures {
	return figures{
		Calls: t.all.Calls, Cost: t.all.CostUSD + t.all.SecondCostUSD, CostShare: math.NaN(),
		CandidateShare: t.candidateShare(), Escalations: t.route[store.RouteEscalated].Calls,
		EscalationRate: t.escalationRate(), Agreement: t.agreement(), Compared: t.all.Compared,
		GuardFailed: t.all.GuardFailed, Saved: t.all.SavingsUSD(),
	}
}

type workloadsView struct {
	common
	Rows      []workloadRow
	TotalCost float64
}

// workloads answers GET /ui/workloads: every workload seen in the period's rollups,
// with a policy, or in the latest analysis; busiest first.
func (u *UI) workloads(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := parsePeriod(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	v := workloadsView{common: u.common(r, s, "Workloads", "workloads")}
	win := p.at(u.now())
	v.Window = win
	byKey := map[string]*totals{}
	if u.rollups == nil {
		v.Notice = noRollups
	} else {
		rs, err := u.rollups.Rollups(ctx, store.RollupFilter{Since: win.Since, Until: win.Until, ByWorkload: true})
		if err != nil {
			return err
		}
		byKey = group(rs, func(r *store.Rollup) string { return r.Workload })
	}
	rows := map[string]*workloadRow{}
	row := func(key string) *workloadRow {
		if rows[key] == nil {
			rows[key] = &workloadRow{Key: key, figures: figures{CandidateShare: math.NaN(), CostShare: math.NaN(),
				EscalationRate: math.NaN(), Agreement: math.NaN()}}
		}
		return rows[key]
	}
	for key, t := range byKey {
		row(key).figures = newFigures(t)
		v.TotalCost += row(key).Cost
	}
	ws, err := u.store.ListWorkloads(ctx)
	if err != nil {
		return err
	}
	for _, wl := range ws {
		r := row(wl.ID)
		r.Label, r.Analysed, r.Readiness = wl.Label, true, wl.Readiness
	}
	ps, err := u.store.CurrentPolicies(ctx)
	if err != nil {
		return err
	}
	for i := range ps {
		row(ps[i].Workload).Policy = &ps[i]
	}
	for _, r := range rows {
		if v.TotalCost > 0 {
			r.CostShare = r.Cost / v.TotalCost
		}
		v.Rows = append(v.Rows, *r)
	}
	sort.Slice(v.Rows, func(i, j int) bool {
		if v.Rows[i].Calls != v.Rows[j].Calls {
			return v.Rows[i].Calls > v.Rows[j].Calls
		}
		return v.Rows[i].Key < v.Rows[j].Key
	})
	return u.render(w, http.StatusOK, "workloads", v)
}

// workloadView is one workload's page.
type workloadView struct {
	common
	formView                 // the policy change form (admins), prefilled from the current version
	Analysis *store.Workload // nil when the latest analysis did not find it
	figures
	Charts []chart

	Policy  *store.Policy  // the current version; nil: observed
	History []store.Policy // newest first, at most maxHistory
	Older   int            // versions left out of History

	Leaderboard *eval.Leaderboard // the latest finished evaluation's; nil: none
	RecentCalls []store.Call      // the newest calls, metadata only
	NoCalls     string            // why there is no list of calls, when there is none

	CanShift bool // a policy can be set for this key
}

// maxHistory and recentCalls bound the lists on a workload's page.
const (
	maxHistory  = 50
	recentCalls = 50
)

// workload answers GET /ui/workloads/{id}: the workload's trends over the period, its
// latest leaderboard, its policy and history, and its latest calls.
func (u *UI) workload(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := parsePeriod(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	key := r.PathValue("id")
	v := workloadView{common: u.common(r, s, "Workload "+key, "workloads"), CanShift: key != store.NoWorkload,
		formView: formView{Key: key, Modes: modes, Candidates: u.candidates()}}
	win := p.at(u.now())
	v.Window = win
	if n, err := strconv.Atoi(r.URL.Query().Get("saved")); err == nil && n > 0 {
		v.Notice = fmt.Sprintf("Saved version %d of the policy.", n)
	}
	if u.rollups == nil {
		v.Notice = noRollups
		v.figures = newFigures(newTotals())
	} else {
		rs, err := u.rollups.Rollups(ctx, store.RollupFilter{Since: win.Since, Until: win.Until, Step: win.Step, Workload: key})
		if err != nil {
			return err
		}
		v.figures = newFigures(sumRollups(rs))
		g := newGrid(win, rs)
		v.Charts = []chart{
			{ID: "agreement", Title: "Agreement with the reference", Unit: "mean agreement of compared calls",
				Window: win, Format: fmtPct, Max: 1, Series: []series{{Name: "agreement", Values: g.agreement()}}},
			{ID: "escalations", Title: "Escalations", Unit: "calls escalated", Window: win, Format: fmtNum,
				Series: []series{{Name: "escalated", Values: g.escalations()}}},
			{ID: "workload-calls", Title: "Calls per minute by route", Unit: "calls/min", Window: win, Format: fmtRate,
				Series: []series{
					{Name: "reference", Values: g.routeCallsPerMinute(store.RouteReference)},
					{Name: "candidate", Values: g.routeCallsPerMinute(store.RouteCandidate)},
					{Name: "escalated", Values: g.routeCallsPerMinute(store.RouteEscalated)}}},
		}
	}
	ws, err := u.store.ListWorkloads(ctx)
	if err != nil {
		return err
	}
	for i := range ws {
		if ws[i].ID == key {
			v.Analysis = &ws[i]
			v.Title = "Workload " + ws[i].Label
		}
	}
	history, err := u.store.PolicyHistory(ctx, key)
	if err != nil {
		return err
	}
	if len(history) > 0 {
		v.Policy = &history[0]
	}
	v.History = history[:min(len(history), maxHistory)]
	v.Older = len(history) - len(v.History)
	v.Form = formFor(v.Policy)
	if v.Leaderboard, err = u.latestLeaderboard(ctx, key); err != nil {
		return err
	}
	if key == store.NoWorkload {
		v.NoCalls = "Calls with neither a workload nor a tag are not listed here."
	} else if v.RecentCalls, err = u.store.ListCalls(ctx, store.Filter{WorkloadID: key, Limit: recentCalls}); err != nil {
		return err
	}
	return u.render(w, http.StatusOK, "workload", v)
}

// latestLeaderboard returns the leaderboard of the workload's latest finished
// evaluation, or nil when it has none.
func (u *UI) latestLeaderboard(ctx context.Context, key string) (*eval.Leaderboard, error) {
	runs, err := u.store.ListEvalRuns(ctx, key)
	if err != nil {
		return nil, err
	}
	for _, run := range runs {
		if run.Status != store.EvalFinished || len(run.Leaderboard) == 0 {
			continue
		}
		var lb eval.Leaderboard
		if err := json.Unmarshal(run.Leaderboard, &lb); err != nil {
			return nil, fmt.Errorf("eval run %s: leaderboard: %w", run.ID, err)
		}
		return &lb, nil
	}
	return nil, nil
}

// candidates are the catalog's candidate models, offered in the policy form.
func (u *UI) candidates() []string {
	if u.models == nil {
		return nil
	}
	var out []string
	for _, m := range u.models() {
		if m.Role == "candidate" {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}
