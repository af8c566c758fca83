package storetest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// SavingsStore is what RunSavings tests: the savings sums over calls it inserts.
type SavingsStore interface {
	store.SavingsStore
	InsertCalls(ctx context.Context, calls []store.Call) error
	Close() error
}

// RunSavings runs the conformance suite for the savings sums against the stores open
// makes. open must return a new, empty store each time; RunSavings closes it.
func RunSavings(t *testing.T, open func(t *testing.T) SavingsStore) {
	tests := []testCase[SavingsStore]{
		{"NoCallsNoRows", testSavingsEmpty},
		{"SumsPerWorkloadKey", testSavingsSums},
		{"OnlyImportedCallsNoRows", testSavingsImportedOnly},
		{"TimeFilterIsStartedAtSinceInclusiveUntilExclusive", testSavingsTimeFilter},
		{"WorkloadFilterMatchesTheKey", testSavingsWorkloadFilter},
		{"MedianIsTheMiddleLatencyPerRoute", testSavingsMedians},
	}
	runEach(t, open, tests)
}

// savingsCall is one call of the savings fixture: started hours after base, with the
// given latency in milliseconds.
func savingsCall(hours float64, latencyMS int, c store.Call) store.Call {
	start := base.Add(time.Duration(hours * float64(time.Hour)))
	c.ID = newID(start)
	c.StartedAt = start
	c.Latency = time.Duration(latencyMS) * time.Millisecond
	c.FinishedAt = start.Add(c.Latency)
	if c.Status == 0 {
		c.Status = 200
	}
	return c
}

// savingsFixture is calls of four workload keys, every route and kind of second
// answer among them, and imported calls that must not count.
//
//	support: tagged; one call also assigned to "support" by discovery
//	wl-abc:  assigned by discovery; most also tagged "triage", which must not count
//	triage:  tagged, unassigned
//	(none):  neither
func savingsFixture() []store.Call {
	shadow := func(cost float64, compared bool, agreement float64, pass bool, errText string) *store.SecondAnswer {
		return &store.SecondAnswer{Kind: store.SecondShadow, Model: "small-8b", Status: 200, CostUSD: cost,
			Compared: compared, Agreement: agreement, Pass: pass, Error: errText}
	}
	return []store.Call{
		// support: reference only, no policy.
		savingsCall(0, 800, store.Call{Workload: "support", Route: store.RouteReference,
			CostUSD: 0.010, ReferenceCostUSD: 0.010}),
		// support: shadowed, compared, passed.
		savingsCall(1, 1000, store.Call{Workload: "support", Route: store.RouteReference,
			Mode: store.ModeShadow, PolicyVersion: 1, Candidate: "small-8b",
			CostUSD: 0.010, ReferenceCostUSD: 0.010, Second: shadow(0.001, true, 0.9, true, "")}),
		// support: shadowed, the shadow timed out: nothing compared, so its Pass (set
		// here against the rules) counts for nothing.
		savingsCall(2, 600, store.Call{Workload: "support", WorkloadID: "support", Route: store.RouteReference,
			Mode: store.ModeShadow, PolicyVersion: 1, Candidate: "small-8b",
			CostUSD: 0.010, ReferenceCostUSD: 0.010, Second: shadow(0.0005, false, 0, true, "timeout")}),
		// support: shadowed, compared, agreement 0 (a comparison all the same).
		savingsCall(2.5, 700, store.Call{Workload: "support", Route: store.RouteReference,
			Mode: store.ModeShadow, PolicyVersion: 1, Candidate: "small-8b",
			CostUSD: 0.010, ReferenceCostUSD: 0.010, Second: shadow(0.001, true, 0, false, "")}),

		// wl-abc: the candidate answered; the reference's cost estimated.
		savingsCall(3, 200, store.Call{Workload: "triage", WorkloadID: "wl-abc", Route: store.RouteCandidate,
			Mode: store.ModeCanary, PolicyVersion: 2, Candidate: "small-8b", Guard: store.GuardPass,
			CostUSD: 0.001, ReferenceCostUSD: 0.012, ReferenceCostEstimated: true}),
		// wl-abc: the candidate answered; verified by the reference (simulated), disagreeing.
		savingsCall(4, 300, store.Call{Workload: "triage", WorkloadID: "wl-abc", Route: store.RouteCandidate,
			Mode: store.ModeServe, PolicyVersion: 3, Candidate: "small-8b", Guard: store.GuardPass,
			CostUSD: 0.001, ReferenceCostUSD: 0.012,
			Second: &store.SecondAnswer{Kind: store.SecondVerify, Model: "gpt-4o", Status: 200, CostUSD: 0.012,
				Simulated: true, Compared: true, Agreement: 0.6}}),
		// wl-abc: the guards refused the candidate's answer; the reference (simulated) answered.
		savingsCall(5, 1500, store.Call{Workload: "triage", WorkloadID: "wl-abc", Route: store.RouteEscalated,
			Mode: store.ModeCanary, PolicyVersion: 2, Candidate: "small-8b", Guard: "tool_known,schema_valid",
			CostUSD: 0.012, ReferenceCostUSD: 0.012, Simulated: true,
			Second: &store.SecondAnswer{Kind: store.SecondRejected, Model: "small-8b", Status: 200, CostUSD: 0.001}}),
		// wl-abc: the candidate gave no answer, and neither did the reference.
		savingsCall(6, 2500, store.Call{Workload: "triage", WorkloadID: "wl-abc", Route: store.RouteEscalated,
			Mode: store.ModeCanary, PolicyVersion: 2, Candidate: "small-8b", Guard: store.GuardUnanswered,
			Status: 502, ErrorType: "upstream_error",
			Second: &store.SecondAnswer{Kind: store.SecondRejected, Model: "small-8b", Error: "timeout"}}),
		// wl-abc: untagged, assigned; the candidate answered, reference cost estimated.
		savingsCall(7, 400, store.Call{WorkloadID: "wl-abc", Route: store.RouteCandidate,
			Mode: store.ModeServe, PolicyVersion: 3, Candidate: "small-8b", Guard: store.GuardPass,
			CostUSD: 0.002, ReferenceCostUSD: 0.010, ReferenceCostEstimated: true}),

		// (none): neither tag nor workload id; one failed.
		savingsCall(8, 100, store.Call{Route: store.RouteReference, Status: 429, ErrorType: "rate_limit",
			CostUSD: 0, ReferenceCostUSD: 0}),
		savingsCall(9, 300, store.Call{Route: store.RouteReference, CostUSD: 0.010, ReferenceCostUSD: 0.010}),

		// triage: the tag alone, so the key is the tag.
		savingsCall(10, 500, store.Call{Workload: "triage", Route: store.RouteReference,
			CostUSD: 0.002, ReferenceCostUSD: 0.002}),

		// Imported calls: someone else paid for them; never counted.
		savingsCall(1.5, 900, store.Call{Workload: "support", Source: store.SourceOpenAI, Route: store.RouteReference,
			CostUSD: 1, ReferenceCostUSD: 1}),
		savingsCall(3.5, 900, store.Call{WorkloadID: "wl-abc", Source: store.SourceTauBench, Route: store.RouteCandidate,
			Mode: store.ModeServe, CostUSD: 1, ReferenceCostUSD: 2, Simulated: true, Status: 500}),
		savingsCall(8.5, 900, store.Call{Source: store.SourceFlywheel, Route: store.RouteReference, CostUSD: 1}),
	}
}

func hoursAfterBase(h float64) time.Time {
	return utcMicros(base.Add(time.Duration(h * float64(time.Hour))))
}

// savingsWant is what Savings returns for the whole fixture, computed by hand from
// the comments in savingsFixture.
func savingsWant() map[string]store.WorkloadSavings {
	return map[string]store.WorkloadSavings{
		store.NoWorkload: {Workload: store.NoWorkload, Calls: 2, Reference: 2,
			PaidUSD: 0.010, ReferenceUSD: 0.010, Errors: 1,
			ReferenceP50: 200 * time.Millisecond, // (100 + 300) / 2
			First:        hoursAfterBase(8), Last: hoursAfterBase(9)},
		"support": {Workload: "support", Calls: 4, Reference: 4,
			Policied: 3, Shadowed: 3, Compared: 2, Agreement: 0.45, Passed: 1,
			PaidUSD: 0.040 + 0.0025, ReferenceUSD: 0.040,
			ReferenceP50: 750 * time.Millisecond, // 600 700 | 800 1000
			First:        hoursAfterBase(0), Last: hoursAfterBase(2.5)},
		"triage": {Workload: "triage", Calls: 1, Reference: 1,
			PaidUSD: 0.002, ReferenceUSD: 0.002, ReferenceP50: 500 * time.Millisecond,
			First: hoursAfterBase(10), Last: hoursAfterBase(10)},
		"wl-abc": {Workload: "wl-abc", Calls: 5, Candidate: 3, Escalated: 2,
			Policied: 5, Verified: 1, Compared: 1, Agreement: 0.6, Passed: 0, GuardFailures: 2,
			PaidUSD:            0.001 + (0.001 + 0.012) + (0.012 + 0.001) + 0 + 0.002,
			ReferenceUSD:       0.012 + 0.012 + 0.012 + 0 + 0.010,
			ReferenceEstimated: 2, Simulated: 2, Errors: 1,
			CandidateP50: 300 * time.Millisecond,  // 200 300 400
			EscalatedP50: 2000 * time.Millisecond, // (1500 + 2500) / 2
			First:        hoursAfterBase(3), Last: hoursAfterBase(7)},
	}
}

func insertSavings(t *testing.T, s SavingsStore, calls []store.Call) {
	t.Helper()
	if err := s.InsertCalls(context.Background(), calls); err != nil {
		t.Fatalf("InsertCalls: %v", err)
	}
}

func savings(t *testing.T, s SavingsStore, f store.SavingsFilter) []store.WorkloadSavings {
	t.Helper()
	got, err := s.Savings(context.Background(), f)
	if err != nil {
		t.Fatalf("Savings(%+v): %v", f, err)
	}
	return got
}

// checkSavings fails t unless got holds exactly the entries of want, in order of key.
func checkSavings(t *testing.T, got []store.WorkloadSavings, want ...store.WorkloadSavings) {
	t.Helper()
	if len(got) != len(want) {
		keys := make([]string, len(got))
		for i := range got {
			keys[i] = got[i].Workload
		}
		t.Fatalf("%d entries %q, want %d", len(got), keys, len(want))
	}
	for i := range want {
		if d := savingsDiff(got[i], want[i]); d != "" {
			t.Errorf("entry %d (%s): %s", i, want[i].Workload, d)
		}
	}
}

// savingsDiff describes how got differs from want, or returns "". Sums of money and
// the mean agreement may differ from want in the last bits.
func savingsDiff(got, want store.WorkloadSavings) string {
	var d []string
	ints := []struct {
		name      string
		got, want int
	}{
		{"Calls", got.Calls, want.Calls}, {"Reference", got.Reference, want.Reference},
		{"Candidate", got.Candidate, want.Candidate}, {"Escalated", got.Escalated, want.Escalated},
		{"Policied", got.Policied, want.Policied}, {"Shadowed", got.Shadowed, want.Shadowed},
		{"Verified", got.Verified, want.Verified}, {"Compared", got.Compared, want.Compared},
		{"Passed", got.Passed, want.Passed}, {"GuardFailures", got.GuardFailures, want.GuardFailures},
		{"ReferenceEstimated", got.ReferenceEstimated, want.ReferenceEstimated},
		{"Simulated", got.Simulated, want.Simulated}, {"Errors", got.Errors, want.Errors},
	}
	for _, f := range ints {
		if f.got != f.want {
			d = append(d, fmt.Sprintf("%s %d, want %d", f.name, f.got, f.want))
		}
	}
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"Agreement", got.Agreement, want.Agreement}, {"PaidUSD", got.PaidUSD, want.PaidUSD},
		{"ReferenceUSD", got.ReferenceUSD, want.ReferenceUSD},
	} {
		if math.Abs(f.got-f.want) > 1e-12 {
			d = append(d, fmt.Sprintf("%s %v, want %v", f.name, f.got, f.want))
		}
	}
	for _, f := range []struct {
		name      string
		got, want time.Duration
	}{
		{"ReferenceP50", got.ReferenceP50, want.ReferenceP50}, {"CandidateP50", got.CandidateP50, want.CandidateP50},
		{"EscalatedP50", got.EscalatedP50, want.EscalatedP50},
	} {
		if f.got != f.want {
			d = append(d, fmt.Sprintf("%s %v, want %v", f.name, f.got, f.want))
		}
	}
	if got.Workload != want.Workload {
		d = append(d, fmt.Sprintf("Workload %q, want %q", got.Workload, want.Workload))
	}
	if timesDiffer(got.First, want.First) {
		d = append(d, fmt.Sprintf("First %v, want %v (UTC)", got.First, want.First))
	}
	if timesDiffer(got.Last, want.Last) {
		d = append(d, fmt.Sprintf("Last %v, want %v (UTC)", got.Last, want.Last))
	}
	return strings.Join(d, "; ")
}

func testSavingsEmpty(t *testing.T, s SavingsStore) {
	if got := savings(t, s, store.SavingsFilter{}); len(got) != 0 {
		t.Errorf("Savings on an empty store = %+v, want none", got)
	}
}

func testSavingsSums(t *testing.T, s SavingsStore) {
	calls := savingsFixture()
	insertSavings(t, s, calls)
	w := savingsWant()
	got := savings(t, s, store.SavingsFilter{})
	checkSavings(t, got, w[store.NoWorkload], w["support"], w["triage"], w["wl-abc"])

	// What was saved is what the calls say they saved, one by one.
	var saved float64
	for i := range calls {
		if calls[i].Source == store.SourceGateway {
			saved += calls[i].SavingsUSD()
		}
	}
	var sum float64
	for _, g := range got {
		sum += g.ReferenceUSD - g.PaidUSD
	}
	if math.Abs(sum-saved) > 1e-12 {
		t.Errorf("ReferenceUSD − PaidUSD sums to %v; the calls' SavingsUSD sum to %v", sum, saved)
	}
}

func testSavingsImportedOnly(t *testing.T, s SavingsStore) {
	var imported []store.Call
	for _, c := range savingsFixture() {
		if c.Source != store.SourceGateway {
			imported = append(imported, c)
		}
	}
	insertSavings(t, s, imported)
	if got := savings(t, s, store.SavingsFilter{}); len(got) != 0 {
		t.Errorf("Savings over imported calls only = %+v, want none", got)
	}
}

func testSavingsTimeFilter(t *testing.T, s SavingsStore) {
	insertSavings(t, s, savingsFixture())
	// [2h, 5h): support's calls at 2h and 2.5h, wl-abc's at 3h and 4h; the one at 5h
	// starts exactly at Until and is left out. base has nanoseconds a store drops:
	// the bounds must compare as the stored times do.
	f := store.SavingsFilter{Since: base.Add(2 * time.Hour), Until: base.Add(5 * time.Hour)}
	checkSavings(t, savings(t, s, f),
		store.WorkloadSavings{Workload: "support", Calls: 2, Reference: 2,
			Policied: 2, Shadowed: 2, Compared: 1, Agreement: 0, Passed: 0,
			PaidUSD: 0.020 + 0.0015, ReferenceUSD: 0.020,
			ReferenceP50: 650 * time.Millisecond,
			First:        hoursAfterBase(2), Last: hoursAfterBase(2.5)},
		store.WorkloadSavings{Workload: "wl-abc", Calls: 2, Candidate: 2,
			Policied: 2, Verified: 1, Compared: 1, Agreement: 0.6,
			PaidUSD: 0.001 + 0.001 + 0.012, ReferenceUSD: 0.024, ReferenceEstimated: 1, Simulated: 1,
			CandidateP50: 250 * time.Millisecond,
			First:        hoursAfterBase(3), Last: hoursAfterBase(4)})

	w := savingsWant()
	checkSavings(t, savings(t, s, store.SavingsFilter{Since: base.Add(9 * time.Hour)}),
		store.WorkloadSavings{Workload: store.NoWorkload, Calls: 1, Reference: 1,
			PaidUSD: 0.010, ReferenceUSD: 0.010, ReferenceP50: 300 * time.Millisecond,
			First: hoursAfterBase(9), Last: hoursAfterBase(9)},
		w["triage"])
	checkSavings(t, savings(t, s, store.SavingsFilter{Until: base.Add(3 * time.Hour)}), w["support"])
	if got := savings(t, s, store.SavingsFilter{Since: base.Add(11 * time.Hour)}); len(got) != 0 {
		t.Errorf("Savings after the last call = %+v, want none", got)
	}
}

func testSavingsWorkloadFilter(t *testing.T, s SavingsStore) {
	insertSavings(t, s, savingsFixture())
	w := savingsWant()
	for _, key := range []string{"wl-abc", "support", store.NoWorkload} {
		checkSavings(t, savings(t, s, store.SavingsFilter{Workload: key}), w[key])
	}
	// wl-abc's calls tagged "triage" belong to wl-abc: the tag is only the fallback.
	checkSavings(t, savings(t, s, store.SavingsFilter{Workload: "triage"}), w["triage"])
	if got := savings(t, s, store.SavingsFilter{Workload: "nope"}); len(got) != 0 {
		t.Errorf("Savings of an unknown workload = %+v, want none", got)
	}
	// Both filters at once.
	f := store.SavingsFilter{Workload: "wl-abc", Since: base.Add(5 * time.Hour), Until: base.Add(7 * time.Hour)}
	checkSavings(t, savings(t, s, f), store.WorkloadSavings{Workload: "wl-abc", Calls: 2, Escalated: 2,
		Policied: 2, GuardFailures: 2, PaidUSD: 0.013, ReferenceUSD: 0.012, Simulated: 1, Errors: 1,
		EscalatedP50: 2000 * time.Millisecond, First: hoursAfterBase(5), Last: hoursAfterBase(6)})
}

func testSavingsMedians(t *testing.T, s SavingsStore) {
	// Six candidate calls, given out of order with a tie, and five reference calls.
	var calls []store.Call
	for i, ms := range []int{60, 10, 40, 30, 30, 20} { // sorted: 10 20 30 | 30 40 60
		calls = append(calls, savingsCall(float64(i), ms, store.Call{Workload: "w", Route: store.RouteCandidate}))
	}
	for i, ms := range []int{90, 5, 70, 1, 80} { // sorted: 1 5 70 80 90
		calls = append(calls, savingsCall(float64(10+i), ms, store.Call{Workload: "w", Route: store.RouteReference}))
	}
	// Another workload's calls do not move w's medians.
	calls = append(calls, savingsCall(20, 1, store.Call{Workload: "x", Route: store.RouteCandidate}),
		savingsCall(21, 1, store.Call{Workload: "x", Route: store.RouteReference}))
	insertSavings(t, s, calls)
	got := savings(t, s, store.SavingsFilter{Workload: "w"})
	if len(got) != 1 {
		t.Fatalf("%d entries, want 1", len(got))
	}
	if got[0].CandidateP50 != 30*time.Millisecond || got[0].ReferenceP50 != 70*time.Millisecond || got[0].EscalatedP50 != 0 {
		t.Errorf("p50 candidate %v, reference %v, escalated %v; want 30ms, 70ms, 0",
			got[0].CandidateP50, got[0].ReferenceP50, got[0].EscalatedP50)
	}
	// Half microseconds are kept: the mean of 1µs and 2µs is 1.5µs.
	insertSavings(t, s, []store.Call{
		{ID: newID(base.Add(30 * time.Hour)), StartedAt: base.Add(30 * time.Hour), Workload: "y",
			Route: store.RouteEscalated, Latency: time.Microsecond},
		{ID: newID(base.Add(31 * time.Hour)), StartedAt: base.Add(31 * time.Hour), Workload: "y",
			Route: store.RouteEscalated, Latency: 2 * time.Microsecond},
	})
	got = savings(t, s, store.SavingsFilter{Workload: "y"})
	if len(got) != 1 || got[0].EscalatedP50 != 1500*time.Nanosecond {
		t.Errorf("y: %+v, want an escalated p50 of 1.5µs", got)
	}
}
