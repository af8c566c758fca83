package report

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

var day = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func at(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }

func sampleFilter() store.SavingsFilter {
	return store.SavingsFilter{Since: day, Until: day.Add(24 * time.Hour)}
}

// sampleSums are a store's sums for five workloads, in the store's order (by key).
func sampleSums() []store.WorkloadSavings {
	return []store.WorkloadSavings{
		{Workload: store.NoWorkload, Calls: 2, Reference: 2, PaidUSD: 0.01, ReferenceUSD: 0.01, Errors: 1,
			ReferenceP50: 200 * time.Millisecond, First: at(1), Last: at(2)},
		{Workload: "billing", Calls: 10, Reference: 6, Candidate: 4, Policied: 10, Verified: 4,
			Compared: 4, Agreement: 0.95, Passed: 4, PaidUSD: 0.02, ReferenceUSD: 0.10,
			ReferenceP50: 900 * time.Millisecond, CandidateP50: 300 * time.Millisecond, First: at(0), Last: at(20)},
		{Workload: "support", Calls: 4, Reference: 4, Policied: 3, Shadowed: 3, Compared: 2, Agreement: 0.45,
			Passed: 1, PaidUSD: 0.0425, ReferenceUSD: 0.040, ReferenceP50: 750 * time.Millisecond,
			First: at(3), Last: at(5)},
		{Workload: "triage", Calls: 2, Reference: 1, Candidate: 1, Policied: 1, PaidUSD: 0.001, ReferenceUSD: 0.002,
			ReferenceP50: 500 * time.Millisecond, CandidateP50: 700 * time.Millisecond, First: at(6), Last: at(7)},
		{Workload: "wl-abc", Calls: 5, Candidate: 3, Escalated: 2, Policied: 5, Verified: 1, Compared: 1,
			Agreement: 0.6, GuardFailures: 2, PaidUSD: 0.029, ReferenceUSD: 0.046, ReferenceEstimated: 2,
			Simulated: 2, Errors: 1, CandidateP50: 300 * time.Millisecond, EscalatedP50: 2 * time.Second,
			First: at(8), Last: at(23)},
	}
}

func samplePolicies() []store.Policy {
	return []store.Policy{
		{Workload: "billing", Version: 5, Mode: store.ModeCanary, Candidate: "mid-3b"},
		{Workload: "quiet", Version: 2, Mode: store.ModeCanary, Candidate: "tiny-1b"},
		{Workload: "support", Version: 1, Mode: store.ModeShadow, Candidate: "small-8b"},
		{Workload: "wl-abc", Version: 3, Mode: store.ModeServe, Candidate: "small-8b"},
	}
}

func approx(got *float64, want float64) bool {
	return got != nil && math.Abs(*got-want) < 1e-9
}

func TestBuildDerivesTheFiguresPerWorkload(t *testing.T) {
	r := Build(sampleFilter(), sampleSums(), samplePolicies())
	var names []string
	for _, w := range r.Workloads {
		names = append(names, w.Workload)
	}
	// The most calls first, ties by name; the policy without calls last.
	if want := []string{"billing", "wl-abc", "support", store.NoWorkload, "triage", "quiet"}; !slices.Equal(names, want) {
		t.Fatalf("rows %q, want %q", names, want)
	}
	row := func(name string) Row {
		i := slices.Index(names, name)
		return r.Workloads[i]
	}
	ms := func(d time.Duration) *time.Duration { return &d }
	cases := []struct {
		name                         string
		mode, candidate              string
		version                      int
		moved, escalation, agreement *float64
		saved                        float64
		savedShare                   *float64
		latency                      *time.Duration
	}{
		{"billing", store.ModeCanary, "mid-3b", 5, ptr(0.4), ptr(0.0), ptr(0.95), 0.08, ptr(0.8), ms(-600 * time.Millisecond)},
		{"wl-abc", store.ModeServe, "small-8b", 3, ptr(0.6), ptr(0.4), ptr(0.6), 0.017, ptr(0.017 / 0.046), nil},
		// Shadowing without moving a call costs money: a negative saving.
		{"support", store.ModeShadow, "small-8b", 1, ptr(0.0), nil, ptr(0.45), -0.0025, ptr(-0.0625), nil},
		{store.NoWorkload, "", "", 0, ptr(0.0), nil, nil, 0, ptr(0.0), nil},
		{"triage", "", "", 0, ptr(0.5), ptr(0.0), nil, 0.001, ptr(0.5), ms(200 * time.Millisecond)},
		{"quiet", store.ModeCanary, "tiny-1b", 2, nil, nil, nil, 0, nil, nil},
	}
	for _, c := range cases {
		g := row(c.name)
		if g.Mode != c.mode || g.Candidate != c.candidate || g.PolicyVersion != c.version {
			t.Errorf("%s: policy %q %q v%d, want %q %q v%d", c.name, g.Mode, g.Candidate, g.PolicyVersion, c.mode, c.candidate, c.version)
		}
		for _, f := range []struct {
			what      string
			got, want *float64
		}{{"moved share", g.MovedShare, c.moved}, {"escalation rate", g.EscalationRate, c.escalation},
			{"agreement", g.Agreement, c.agreement}, {"saved share", g.SavedShare, c.savedShare}} {
			if (f.want == nil) != (f.got == nil) || (f.want != nil && !approx(f.got, *f.want)) {
				t.Errorf("%s: %s %v, want %v", c.name, f.what, deref(f.got), deref(f.want))
			}
		}
		if math.Abs(g.SavedUSD-c.saved) > 1e-12 {
			t.Errorf("%s: saved %v, want %v", c.name, g.SavedUSD, c.saved)
		}
		if (c.latency == nil) != (g.LatencyChange == nil) || (c.latency != nil && *c.latency != *g.LatencyChange) {
			t.Errorf("%s: latency change %v, want %v", c.name, deref(g.LatencyChange), deref(c.latency))
		}
	}
	if w := row("wl-abc"); w.Escalated != 2 || w.GuardFailures != 2 || w.ReferenceEstimated != 2 || w.Simulated != 2 ||
		w.CandidateP50 != 300*time.Millisecond || w.EscalatedP50 != 2*time.Second || !w.Last.Equal(at(23)) {
		t.Errorf("wl-abc's counts and medians were not carried over: %+v", w)
	}
	if q := row("quiet"); q.Calls != 0 || !q.First.IsZero() || q.SavedUSD != 0 {
		t.Errorf("a workload with a policy but no calls: %+v", q)
	}
}

func TestBuildTotalAddsUpAndWeighs(t *testing.T) {
	r := Build(sampleFilter(), sampleSums(), samplePolicies())
	tot := r.Total
	if tot.Workload != TotalName || tot.Mode != "" || tot.Calls != 23 || tot.ReferenceAnswered != 13 ||
		tot.CandidateAnswered != 8 || tot.Escalated != 2 || tot.UnderPolicy != 19 || tot.Shadowed != 3 ||
		tot.Verified != 5 || tot.Compared != 7 || tot.Passed != 5 || tot.GuardFailures != 2 || tot.Errors != 2 ||
		tot.Simulated != 2 || tot.ReferenceEstimated != 2 {
		t.Errorf("total counts %+v", tot)
	}
	if !approx(tot.MovedShare, 8.0/23) || !approx(tot.EscalationRate, 0.2) {
		t.Errorf("moved %v, escalation %v; want 8/23, 2/10", deref(tot.MovedShare), deref(tot.EscalationRate))
	}
	// Agreement weighted by calls compared: (0.95×4 + 0.6×1 + 0.45×2) / 7.
	if !approx(tot.Agreement, 5.3/7) {
		t.Errorf("agreement %v, want %v", deref(tot.Agreement), 5.3/7)
	}
	if math.Abs(tot.PaidUSD-0.1025) > 1e-12 || math.Abs(tot.ReferenceUSD-0.198) > 1e-12 ||
		math.Abs(tot.SavedUSD-0.0955) > 1e-12 || !approx(tot.SavedShare, 0.0955/0.198) {
		t.Errorf("money: paid %v, reference %v, saved %v (%v)", tot.PaidUSD, tot.ReferenceUSD, tot.SavedUSD, deref(tot.SavedShare))
	}
	// Latency change weighted by calls moved: (−600ms×4 + 200ms×1) / 5; no medians.
	if tot.LatencyChange == nil || *tot.LatencyChange != -440*time.Millisecond {
		t.Errorf("latency change %v, want −440ms", deref(tot.LatencyChange))
	}
	if tot.ReferenceP50 != 0 || tot.CandidateP50 != 0 || tot.EscalatedP50 != 0 {
		t.Errorf("the total has medians: %v %v %v", tot.ReferenceP50, tot.CandidateP50, tot.EscalatedP50)
	}
	if !tot.First.Equal(at(0)) || !tot.Last.Equal(at(23)) {
		t.Errorf("total first %v last %v", tot.First, tot.Last)
	}
	if !r.Since.Equal(day) || !r.Until.Equal(day.Add(24*time.Hour)) {
		t.Errorf("period %v to %v", r.Since, r.Until)
	}
}

func TestBuildWithAWorkloadKeepsOnlyItsPolicy(t *testing.T) {
	f := store.SavingsFilter{Workload: "support"}
	r := Build(f, sampleSums()[2:3], samplePolicies())
	if len(r.Workloads) != 1 || r.Workloads[0].Workload != "support" || r.Workloads[0].Mode != store.ModeShadow {
		t.Fatalf("rows %+v, want support alone", r.Workloads)
	}
	if r.Workload != "support" || r.Total.Calls != 4 {
		t.Errorf("report %+v", r)
	}
	// A workload with a policy and no calls in the period still has its row.
	r = Build(store.SavingsFilter{Workload: "quiet"}, nil, samplePolicies())
	if len(r.Workloads) != 1 || r.Workloads[0].Workload != "quiet" || r.Total.Calls != 0 || r.Total.MovedShare != nil {
		t.Errorf("rows %+v, total %+v", r.Workloads, r.Total)
	}
}

func TestBuildWithNothingIsEmpty(t *testing.T) {
	r := Build(store.SavingsFilter{}, nil, nil)
	if len(r.Workloads) != 0 || r.Total.Calls != 0 || r.Total.Agreement != nil || r.Total.LatencyChange != nil {
		t.Errorf("%+v", r)
	}
}

func TestLoadReadsTheStore(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	calls := []store.Call{
		{ID: "01", StartedAt: at(1), Workload: "support", Route: store.RouteReference, Status: 200,
			Latency: time.Second, CostUSD: 0.01, ReferenceCostUSD: 0.01},
		{ID: "02", StartedAt: at(2), Workload: "support", Route: store.RouteCandidate, Status: 200,
			Mode: store.ModeServe, Latency: 200 * time.Millisecond, CostUSD: 0.001, ReferenceCostUSD: 0.01},
		{ID: "03", StartedAt: at(30), Workload: "support", Route: store.RouteCandidate, Status: 200}, // after Until
	}
	if err := db.InsertCalls(ctx, calls); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SavePolicy(ctx, store.Policy{Workload: "quiet", Mode: store.ModeShadow, Candidate: "tiny-1b",
		At: day, Actor: "cli"}); err != nil {
		t.Fatal(err)
	}
	r, err := Load(ctx, db, sampleFilter())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Workloads) != 2 || r.Workloads[0].Workload != "support" || r.Workloads[1].Workload != "quiet" ||
		r.Workloads[1].Mode != store.ModeShadow || r.Workloads[1].PolicyVersion != 1 {
		t.Fatalf("rows %+v", r.Workloads)
	}
	s := r.Workloads[0]
	if s.Calls != 2 || !approx(s.MovedShare, 0.5) || math.Abs(s.SavedUSD-0.009) > 1e-12 ||
		s.LatencyChange == nil || *s.LatencyChange != -800*time.Millisecond {
		t.Errorf("support %+v", s)
	}
	db.Close()
	if _, err := Load(ctx, db, sampleFilter()); err == nil {
		t.Error("Load from a closed store: no error")
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
