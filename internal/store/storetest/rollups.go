package storetest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// RollupStore is what RunRollups tests: the rollups of the calls it writes.
type RollupStore interface {
	store.RollupStore
	InsertCalls(ctx context.Context, calls []store.Call) error
	ImportCalls(ctx context.Context, calls []store.Call) (int, error)
	Close() error
}

// RunRollups runs the conformance suite for rollups against the stores open makes.
// open must return a new, empty store each time; RunRollups closes it.
func RunRollups(t *testing.T, open func(t *testing.T) RollupStore) {
	tests := []testCase[RollupStore]{
		{"NoCallsNoRollups", testRollupsEmpty},
		{"MinuteStepSplitByEverything", testRollupsPerMinute},
		{"StepSumsMinutesIntoBuckets", testRollupsStep},
		{"StepZeroSumsThePeriodFromSinceOrTheFirstCall", testRollupsWholePeriod},
		{"SinceAndUntilSelectBucketStarts", testRollupsTimeFilter},
		{"WorkloadFilterMatchesTheKey", testRollupsWorkloadFilter},
		{"OnlyImportedCallsNoRollups", testRollupsImportedOnly},
		{"FailedBatchAddsNothing", testRollupsFailedBatch},
		{"StepMustBeWholeMinutes", testRollupsInvalidStep},
		{"SumsEqualTheCallsForEveryFilter", testRollupsMatchTheCalls},
	}
	runEach(t, open, tests)
}

// rollupBase is the minute the rollup fixture starts at.
var rollupBase = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// rollupCall is one call of the rollup fixture: started at offset after rollupBase.
func rollupCall(offset, latency time.Duration, c store.Call) store.Call {
	c.StartedAt = rollupBase.Add(offset)
	c.ID = newID(c.StartedAt)
	c.Latency = latency
	c.FinishedAt = c.StartedAt.Add(latency)
	if c.Status == 0 {
		c.Status = 200
	}
	return c
}

func minSec(m, s int) time.Duration {
	return time.Duration(m)*time.Minute + time.Duration(s)*time.Second
}

// rollupFixture is the calls the rollup tests write, in batches: keys that span
// batches must be added to, not replaced. Minutes are counted from rollupBase.
//
//	support: tagged (one call also assigned "support" by discovery)
//	wl-abc:  assigned by discovery, mostly also tagged "triage", which must not count
//	triage:  tagged only
//	(none):  neither
//
// Imported calls must not count, and a gateway call imported twice counts once.
func rollupFixture() (batches [][]store.Call, imports [][]store.Call) {
	gpt, small := "gpt-4o", "small-8b"
	dup := rollupCall(minSec(3, 30), 400*msec, store.Call{Workload: "triage", Route: store.RouteReference,
		ServedModel: gpt, PromptTokens: 40, CompletionTokens: 4, CostUSD: 0.004, ReferenceCostUSD: 0.004})
	batches = [][]store.Call{{
		// Minute 0.
		rollupCall(minSec(0, 5), 800*msec, store.Call{Workload: "support", Route: store.RouteReference,
			ServedModel: gpt, PromptTokens: 100, CompletionTokens: 20, CostUSD: 0.010, ReferenceCostUSD: 0.010}),
		// Its last microsecond: the nanoseconds are dropped, so still minute 0.
		rollupCall(minSec(0, 59)+999_999_999, 200*msec, store.Call{Workload: "triage", WorkloadID: "wl-abc",
			Route: store.RouteCandidate, ServedModel: small, Mode: store.ModeCanary, Guard: store.GuardPass,
			PromptTokens: 50, CompletionTokens: 10, CostUSD: 0.001, ReferenceCostUSD: 0.012}),
		// Imported by InsertCalls: someone else paid for it.
		rollupCall(minSec(0, 30), 900*msec, store.Call{Workload: "support", Source: store.SourceOpenAI,
			Route: store.RouteReference, ServedModel: gpt, PromptTokens: 1000, CostUSD: 1, ReferenceCostUSD: 1}),
	}, {
		// Minute 0 again, in a later batch: added to the row the first batch wrote.
		rollupCall(minSec(0, 40), 1000*msec, store.Call{Workload: "support", Route: store.RouteReference,
			ServedModel: gpt, Mode: store.ModeShadow, PromptTokens: 200, CompletionTokens: 30,
			CostUSD: 0.010, ReferenceCostUSD: 0.010,
			Second: &store.SecondAnswer{Kind: store.SecondShadow, Model: small, Status: 200, CostUSD: 0.001,
				Compared: true, Agreement: 0.9, Pass: true}}),
		// Minute 1.
		rollupCall(minSec(1, 0), 300*msec, store.Call{Workload: "triage", WorkloadID: "wl-abc",
			Route: store.RouteCandidate, ServedModel: small, Mode: store.ModeServe, Guard: store.GuardPass,
			PromptTokens: 60, CompletionTokens: 10, CostUSD: 0.001, ReferenceCostUSD: 0.012,
			Second: &store.SecondAnswer{Kind: store.SecondVerify, Model: gpt, Status: 200, CostUSD: 0.012,
				Compared: true, Agreement: 0.6}}),
		rollupCall(minSec(1, 30), 1500*msec, store.Call{WorkloadID: "wl-abc", Route: store.RouteEscalated,
			ServedModel: gpt, Mode: store.ModeCanary, Guard: "tool_known,schema_valid",
			PromptTokens: 70, CompletionTokens: 15, CostUSD: 0.012, ReferenceCostUSD: 0.012,
			Second: &store.SecondAnswer{Kind: store.SecondRejected, Model: small, Status: 200, CostUSD: 0.001}}),
		// 1 ms and half a microsecond: 1 ms as stored, the first bucket, not the second.
		rollupCall(minSec(1, 45), time.Millisecond+500, store.Call{Route: store.RouteReference, ServedModel: gpt,
			Status: 429, ErrorType: "rate_limit"}),
		// Minute 3.
		rollupCall(minSec(3, 10), 2500*msec, store.Call{Workload: "triage", WorkloadID: "wl-abc",
			Route: store.RouteEscalated, Mode: store.ModeCanary, Guard: store.GuardUnanswered,
			Status: 502, ErrorType: "upstream_error",
			Second: &store.SecondAnswer{Kind: store.SecondRejected, Model: small, Error: "timeout"}}),
		// Shadow that timed out: nothing compared, so its Pass counts for nothing.
		rollupCall(minSec(3, 20), 600*msec, store.Call{Workload: "support", WorkloadID: "support",
			Route: store.RouteReference, ServedModel: gpt, Mode: store.ModeShadow, PromptTokens: 100,
			CostUSD: 0.010, ReferenceCostUSD: 0.010,
			Second: &store.SecondAnswer{Kind: store.SecondShadow, Model: small, CostUSD: 0.0005,
				Pass: true, Error: "timeout"}}),
		// Minute 7.
		rollupCall(minSec(7, 0), 500*msec, store.Call{Workload: "triage", Route: store.RouteReference,
			ServedModel: gpt, PromptTokens: 10, CompletionTokens: 5, CostUSD: 0.002, ReferenceCostUSD: 0.002}),
		rollupCall(minSec(7, 30), 300*msec, store.Call{Route: store.RouteReference, ServedModel: gpt,
			PromptTokens: 30, CompletionTokens: 3, CostUSD: 0.010, ReferenceCostUSD: 0.010}),
	}}
	imported := rollupCall(minSec(1, 10), 900*msec, store.Call{WorkloadID: "wl-abc", Source: store.SourceTauBench,
		Route: store.RouteCandidate, ServedModel: small, PromptTokens: 1000, CostUSD: 1, ReferenceCostUSD: 2})
	imports = [][]store.Call{{dup, imported, dup}, {dup}}
	return batches, imports
}

// writeRollupFixture writes the fixture and returns its calls as stored, each once.
func writeRollupFixture(t *testing.T, s RollupStore) []store.Call {
	t.Helper()
	ctx := context.Background()
	batches, imports := rollupFixture()
	var all []store.Call
	for _, b := range batches {
		if err := s.InsertCalls(ctx, b); err != nil {
			t.Fatalf("InsertCalls: %v", err)
		}
		all = append(all, b...)
	}
	for _, b := range imports {
		if _, err := s.ImportCalls(ctx, b); err != nil {
			t.Fatalf("ImportCalls: %v", err)
		}
	}
	all = append(all, imports[0][:2]...)
	for i := range all {
		all[i] = stored(all[i])
	}
	return all
}

func hist(ds ...time.Duration) store.LatencyHistogram {
	var h store.LatencyHistogram
	for _, d := range ds {
		h.Add(d)
	}
	return h
}

func minuteAt(m int) time.Time { return rollupBase.Add(time.Duration(m) * time.Minute) }

// msec shortens the fixture's latencies.
const msec = time.Millisecond

// The fixture's sums per minute, workload key, route and model, by hand.
var (
	m0Support = store.Rollup{Start: minuteAt(0), Workload: "support", Route: store.RouteReference, Model: "gpt-4o",
		Calls: 2, PromptTokens: 300, CompletionTokens: 50, CostUSD: 0.020, SecondCostUSD: 0.001,
		ReferenceCostUSD: 0.020, Compared: 1, Passed: 1, AgreementSum: 0.9, Latency: hist(800*msec, 1000*msec)}
	m0Abc = store.Rollup{Start: minuteAt(0), Workload: "wl-abc", Route: store.RouteCandidate, Model: "small-8b",
		Calls: 1, PromptTokens: 50, CompletionTokens: 10, CostUSD: 0.001, ReferenceCostUSD: 0.012,
		GuardChecked: 1, Latency: hist(200 * msec)}
	m1None = store.Rollup{Start: minuteAt(1), Workload: store.NoWorkload, Route: store.RouteReference, Model: "gpt-4o",
		Calls: 1, Errors: 1, Latency: hist(time.Millisecond)}
	m1AbcCandidate = store.Rollup{Start: minuteAt(1), Workload: "wl-abc", Route: store.RouteCandidate, Model: "small-8b",
		Calls: 1, PromptTokens: 60, CompletionTokens: 10, CostUSD: 0.001, SecondCostUSD: 0.012,
		ReferenceCostUSD: 0.012, Compared: 1, AgreementSum: 0.6, GuardChecked: 1, Latency: hist(300 * msec)}
	m1AbcEscalated = store.Rollup{Start: minuteAt(1), Workload: "wl-abc", Route: store.RouteEscalated, Model: "gpt-4o",
		Calls: 1, PromptTokens: 70, CompletionTokens: 15, CostUSD: 0.012, SecondCostUSD: 0.001,
		ReferenceCostUSD: 0.012, GuardChecked: 1, GuardFailed: 1, Latency: hist(1500 * msec)}
	m3Support = store.Rollup{Start: minuteAt(3), Workload: "support", Route: store.RouteReference, Model: "gpt-4o",
		Calls: 1, PromptTokens: 100, CostUSD: 0.010, SecondCostUSD: 0.0005, ReferenceCostUSD: 0.010,
		Latency: hist(600 * msec)}
	m3Triage = store.Rollup{Start: minuteAt(3), Workload: "triage", Route: store.RouteReference, Model: "gpt-4o",
		Calls: 1, PromptTokens: 40, CompletionTokens: 4, CostUSD: 0.004, ReferenceCostUSD: 0.004,
		Latency: hist(400 * msec)}
	m3Abc = store.Rollup{Start: minuteAt(3), Workload: "wl-abc", Route: store.RouteEscalated, Model: "",
		Calls: 1, Errors: 1, GuardChecked: 1, GuardFailed: 1, Latency: hist(2500 * msec)}
	m7None = store.Rollup{Start: minuteAt(7), Workload: store.NoWorkload, Route: store.RouteReference, Model: "gpt-4o",
		Calls: 1, PromptTokens: 30, CompletionTokens: 3, CostUSD: 0.010, ReferenceCostUSD: 0.010,
		Latency: hist(300 * msec)}
	m7Triage = store.Rollup{Start: minuteAt(7), Workload: "triage", Route: store.RouteReference, Model: "gpt-4o",
		Calls: 1, PromptTokens: 10, CompletionTokens: 5, CostUSD: 0.002, ReferenceCostUSD: 0.002,
		Latency: hist(500 * msec)}
)

// sumRollups sums rs into one rollup with the given bucket and dimensions.
func sumRollups(start time.Time, workload string, route store.Route, model string, rs ...store.Rollup) store.Rollup {
	out := store.Rollup{Start: start, Workload: workload, Route: route, Model: model}
	for i := range rs {
		out.Add(&rs[i])
	}
	return out
}

func rollups(t *testing.T, s RollupStore, f store.RollupFilter) []store.Rollup {
	t.Helper()
	got, err := s.Rollups(context.Background(), f)
	if err != nil {
		t.Fatalf("Rollups(%+v): %v", f, err)
	}
	return got
}

// checkRollups fails t unless got is want, in order.
func checkRollups(t *testing.T, f store.RollupFilter, got []store.Rollup, want ...store.Rollup) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Rollups(%+v): %d rows, want %d:\n%s", f, len(got), len(want), rollupList(got))
	}
	for i := range want {
		if d := rollupDiff(got[i], want[i]); d != "" {
			t.Errorf("Rollups(%+v) row %d (%v %s %s %s): %s", f, i, want[i].Start, want[i].Workload,
				want[i].Route, want[i].Model, d)
		}
	}
}

func rollupList(rs []store.Rollup) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "\t%v %q %q %q: %d calls\n", r.Start, r.Workload, r.Route, r.Model, r.Calls)
	}
	return b.String()
}

// rollupDiff describes how got differs from want, or returns "". Sums of money and
// agreement may differ in the last bits.
func rollupDiff(got, want store.Rollup) string {
	var d []string
	if !got.Start.Equal(want.Start) || got.Start.Location() != time.UTC {
		d = append(d, fmt.Sprintf("Start %v, want %v (UTC)", got.Start, want.Start))
	}
	for _, f := range []struct {
		name      string
		got, want string
	}{
		{"Workload", got.Workload, want.Workload}, {"Route", string(got.Route), string(want.Route)},
		{"Model", got.Model, want.Model},
	} {
		if f.got != f.want {
			d = append(d, fmt.Sprintf("%s %q, want %q", f.name, f.got, f.want))
		}
	}
	for _, f := range []struct {
		name      string
		got, want int64
	}{
		{"Calls", got.Calls, want.Calls}, {"Errors", got.Errors, want.Errors},
		{"PromptTokens", got.PromptTokens, want.PromptTokens},
		{"CompletionTokens", got.CompletionTokens, want.CompletionTokens},
		{"Compared", got.Compared, want.Compared}, {"Passed", got.Passed, want.Passed},
		{"GuardChecked", got.GuardChecked, want.GuardChecked}, {"GuardFailed", got.GuardFailed, want.GuardFailed},
	} {
		if f.got != f.want {
			d = append(d, fmt.Sprintf("%s %d, want %d", f.name, f.got, f.want))
		}
	}
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"CostUSD", got.CostUSD, want.CostUSD}, {"SecondCostUSD", got.SecondCostUSD, want.SecondCostUSD},
		{"ReferenceCostUSD", got.ReferenceCostUSD, want.ReferenceCostUSD},
		{"AgreementSum", got.AgreementSum, want.AgreementSum},
	} {
		if math.Abs(f.got-f.want) > 1e-9 {
			d = append(d, fmt.Sprintf("%s %v, want %v", f.name, f.got, f.want))
		}
	}
	if got.Latency != want.Latency {
		d = append(d, fmt.Sprintf("Latency %v, want %v", nonZero(got.Latency), nonZero(want.Latency)))
	}
	return strings.Join(d, "; ")
}

// nonZero lists a histogram's non-empty buckets, bucket:count.
func nonZero(h store.LatencyHistogram) string {
	var s []string
	for i, n := range h {
		if n != 0 {
			s = append(s, fmt.Sprintf("%d:%d", i, n))
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}

func testRollupsEmpty(t *testing.T, s RollupStore) {
	for _, f := range []store.RollupFilter{{}, {Step: time.Minute}, {Step: time.Hour, ByWorkload: true, ByModel: true},
		{Since: rollupBase, Workload: "support"}} {
		if got := rollups(t, s, f); len(got) != 0 {
			t.Errorf("Rollups(%+v) on an empty store: %s", f, rollupList(got))
		}
	}
}

func testRollupsPerMinute(t *testing.T, s RollupStore) {
	writeRollupFixture(t, s)
	f := store.RollupFilter{Step: time.Minute, ByWorkload: true, ByModel: true}
	checkRollups(t, f, rollups(t, s, f),
		m0Support, m0Abc,
		m1None, m1AbcCandidate, m1AbcEscalated,
		m3Support, m3Triage, m3Abc,
		m7None, m7Triage)
}

// Step 5m, by route only: minutes 0, 1 and 3 sum into 12:00, minute 7 into 12:05.
func testRollupsStep(t *testing.T, s RollupStore) {
	writeRollupFixture(t, s)
	f := store.RollupFilter{Step: 5 * time.Minute}
	checkRollups(t, f, rollups(t, s, f),
		sumRollups(minuteAt(0), "", store.RouteCandidate, "", m0Abc, m1AbcCandidate),
		sumRollups(minuteAt(0), "", store.RouteEscalated, "", m1AbcEscalated, m3Abc),
		sumRollups(minuteAt(0), "", store.RouteReference, "", m0Support, m1None, m3Support, m3Triage),
		sumRollups(minuteAt(5), "", store.RouteReference, "", m7None, m7Triage))

	// The hand sums of one bucket, to check sumRollups too.
	got := rollups(t, s, f)[2]
	if got.Calls != 5 || got.Errors != 1 || got.PromptTokens != 440 || got.CompletionTokens != 54 ||
		math.Abs(got.CostUSD-0.034) > 1e-9 || math.Abs(got.SecondCostUSD-0.0015) > 1e-9 ||
		got.Latency != hist(800*msec, 1000*msec, time.Millisecond, 600*msec, 400*msec) {
		t.Errorf("reference calls of 12:00-12:05: %+v", got)
	}

	// A step of a day puts every call in the day's bucket.
	f = store.RollupFilter{Step: 24 * time.Hour, ByWorkload: true}
	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	checkRollups(t, f, rollups(t, s, f),
		sumRollups(day, store.NoWorkload, store.RouteReference, "", m1None, m7None),
		sumRollups(day, "support", store.RouteReference, "", m0Support, m3Support),
		sumRollups(day, "triage", store.RouteReference, "", m3Triage, m7Triage),
		sumRollups(day, "wl-abc", store.RouteCandidate, "", m0Abc, m1AbcCandidate),
		sumRollups(day, "wl-abc", store.RouteEscalated, "", m1AbcEscalated, m3Abc))
}

func testRollupsWholePeriod(t *testing.T, s RollupStore) {
	writeRollupFixture(t, s)
	all := func(start time.Time, from int) []store.Rollup {
		var cand, esc, ref []store.Rollup
		for _, r := range []store.Rollup{m0Support, m0Abc, m1None, m1AbcCandidate, m1AbcEscalated,
			m3Support, m3Triage, m3Abc, m7None, m7Triage} {
			if r.Start.Before(minuteAt(from)) {
				continue
			}
			switch r.Route {
			case store.RouteCandidate:
				cand = append(cand, r)
			case store.RouteEscalated:
				esc = append(esc, r)
			default:
				ref = append(ref, r)
			}
		}
		return []store.Rollup{
			sumRollups(start, "", store.RouteCandidate, "", cand...),
			sumRollups(start, "", store.RouteEscalated, "", esc...),
			sumRollups(start, "", store.RouteReference, "", ref...),
		}
	}
	// No Since: the period starts at the first call's minute.
	f := store.RollupFilter{}
	checkRollups(t, f, rollups(t, s, f), all(minuteAt(0), 0)...)
	// Since: the period starts there, even between minutes, and holds the minutes that
	// start in it: 12:00 starts before 12:00:30, and before 12:00:00.000001.
	for _, since := range []time.Time{minuteAt(1), rollupBase.Add(30 * time.Second), rollupBase.Add(time.Microsecond)} {
		f := store.RollupFilter{Since: since}
		checkRollups(t, f, rollups(t, s, f), all(since, 1)...)
	}
	// Stores keep times to the microsecond: 12:00:00.000000001 is 12:00.
	f = store.RollupFilter{Since: rollupBase.Add(time.Nanosecond)}
	checkRollups(t, f, rollups(t, s, f), all(rollupBase, 0)...)
	f = store.RollupFilter{Since: minuteAt(-3 * 24 * 60)}
	checkRollups(t, f, rollups(t, s, f), all(minuteAt(-3*24*60), 0)...)
	// Until: minutes starting before it.
	f = store.RollupFilter{Until: minuteAt(1)}
	checkRollups(t, f, rollups(t, s, f),
		sumRollups(minuteAt(0), "", store.RouteCandidate, "", m0Abc),
		sumRollups(minuteAt(0), "", store.RouteReference, "", m0Support))
	f = store.RollupFilter{Since: minuteAt(8)}
	if got := rollups(t, s, f); len(got) != 0 {
		t.Errorf("Rollups(%+v) after the last call: %s", f, rollupList(got))
	}
}

func testRollupsTimeFilter(t *testing.T, s RollupStore) {
	writeRollupFixture(t, s)
	step := store.RollupFilter{Step: time.Minute, ByWorkload: true, ByModel: true}
	for _, tc := range []struct {
		since, until time.Time
		want         []store.Rollup
	}{
		// 12:00 starts before 12:00:30; 12:03 starts at Until, which is left out.
		{rollupBase.Add(30 * time.Second), minuteAt(3), []store.Rollup{m1None, m1AbcCandidate, m1AbcEscalated}},
		{rollupBase.Add(30 * time.Second), minuteAt(3).Add(time.Microsecond),
			[]store.Rollup{m1None, m1AbcCandidate, m1AbcEscalated, m3Support, m3Triage, m3Abc}},
		{minuteAt(3), time.Time{}, []store.Rollup{m3Support, m3Triage, m3Abc, m7None, m7Triage}},
		{time.Time{}, minuteAt(1), []store.Rollup{m0Support, m0Abc}},
		{minuteAt(4), minuteAt(7), nil},
		{minuteAt(7), minuteAt(3), nil},
	} {
		f := step
		f.Since, f.Until = tc.since, tc.until
		checkRollups(t, f, rollups(t, s, f), tc.want...)
	}

	// Buckets of 5 minutes: the one at 12:00 starts before 12:01, so is left out whole;
	// the one at 12:05 starts before 12:06, so is in whole.
	f := store.RollupFilter{Step: 5 * time.Minute, Since: minuteAt(1)}
	checkRollups(t, f, rollups(t, s, f), sumRollups(minuteAt(5), "", store.RouteReference, "", m7None, m7Triage))
	f = store.RollupFilter{Step: 5 * time.Minute, Until: minuteAt(6), ByWorkload: true}
	checkRollups(t, f, rollups(t, s, f),
		sumRollups(minuteAt(0), store.NoWorkload, store.RouteReference, "", m1None),
		sumRollups(minuteAt(0), "support", store.RouteReference, "", m0Support, m3Support),
		sumRollups(minuteAt(0), "triage", store.RouteReference, "", m3Triage),
		sumRollups(minuteAt(0), "wl-abc", store.RouteCandidate, "", m0Abc, m1AbcCandidate),
		sumRollups(minuteAt(0), "wl-abc", store.RouteEscalated, "", m1AbcEscalated, m3Abc),
		sumRollups(minuteAt(5), store.NoWorkload, store.RouteReference, "", m7None),
		sumRollups(minuteAt(5), "triage", store.RouteReference, "", m7Triage))
	f = store.RollupFilter{Step: 5 * time.Minute, Until: minuteAt(5)}
	if got := rollups(t, s, f); len(got) != 3 || !got[0].Start.Equal(minuteAt(0)) {
		t.Errorf("Rollups(%+v): %s, want the three routes of 12:00", f, rollupList(got))
	}
}

func testRollupsWorkloadFilter(t *testing.T, s RollupStore) {
	writeRollupFixture(t, s)
	// wl-abc's calls tagged "triage" are wl-abc's; ByWorkload is false, so Workload is "".
	f := store.RollupFilter{Workload: "wl-abc", ByModel: true}
	checkRollups(t, f, rollups(t, s, f),
		sumRollups(minuteAt(0), "", store.RouteCandidate, "small-8b", m0Abc, m1AbcCandidate),
		sumRollups(minuteAt(0), "", store.RouteEscalated, "", m3Abc),
		sumRollups(minuteAt(0), "", store.RouteEscalated, "gpt-4o", m1AbcEscalated))
	// The period starts at the workload's first call.
	f = store.RollupFilter{Workload: "triage", ByWorkload: true}
	checkRollups(t, f, rollups(t, s, f), sumRollups(minuteAt(3), "triage", store.RouteReference, "", m3Triage, m7Triage))
	f = store.RollupFilter{Workload: store.NoWorkload, Step: time.Minute, ByWorkload: true, ByModel: true}
	checkRollups(t, f, rollups(t, s, f), m1None, m7None)
	f = store.RollupFilter{Workload: "support", Step: time.Hour, Since: minuteAt(1)}
	checkRollups(t, f, rollups(t, s, f))
	f = store.RollupFilter{Workload: "support", Step: time.Minute, Since: minuteAt(1)}
	checkRollups(t, f, rollups(t, s, f), sumRollups(minuteAt(3), "", store.RouteReference, "", m3Support))
	f = store.RollupFilter{Workload: "nope"}
	checkRollups(t, f, rollups(t, s, f))
}

func testRollupsImportedOnly(t *testing.T, s RollupStore) {
	batches, imports := rollupFixture()
	var imported []store.Call
	for _, c := range slices.Concat(slices.Concat(batches...), slices.Concat(imports...)) {
		if c.Source != store.SourceGateway {
			imported = append(imported, c)
		}
	}
	if err := s.InsertCalls(context.Background(), imported[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportCalls(context.Background(), imported[1:]); err != nil {
		t.Fatal(err)
	}
	if got := rollups(t, s, store.RollupFilter{}); len(got) != 0 {
		t.Errorf("Rollups over imported calls only: %s", rollupList(got))
	}
}

func testRollupsFailedBatch(t *testing.T, s RollupStore) {
	ctx := context.Background()
	c := rollupCall(0, msec, store.Call{Workload: "w", Route: store.RouteReference})
	if err := s.InsertCalls(ctx, []store.Call{c}); err != nil {
		t.Fatal(err)
	}
	before := rollups(t, s, store.RollupFilter{Step: time.Minute})
	// The second call's id is taken: neither call is written, nor summed.
	other := rollupCall(time.Second, msec, store.Call{Workload: "w", Route: store.RouteReference})
	if err := s.InsertCalls(ctx, []store.Call{other, c}); err == nil {
		t.Fatal("InsertCalls of a stored id succeeded")
	}
	// A call without an id fails an import: nothing is written.
	if _, err := s.ImportCalls(ctx, []store.Call{other, {}}); err == nil {
		t.Fatal("ImportCalls of a call without an id succeeded")
	}
	f := store.RollupFilter{Step: time.Minute}
	checkRollups(t, f, rollups(t, s, f), before...)
	if len(before) != 1 || before[0].Calls != 1 {
		t.Errorf("one call: %s", rollupList(before))
	}
}

func testRollupsInvalidStep(t *testing.T, s RollupStore) {
	for _, step := range []time.Duration{-time.Minute, time.Second, 90 * time.Second} {
		if got, err := s.Rollups(context.Background(), store.RollupFilter{Step: step}); err == nil {
			t.Errorf("Rollups with Step %v = %v, nil; want an error", step, got)
		}
	}
}

// testRollupsMatchTheCalls checks every kind of filter against sums of the calls
// themselves, over calls that span three days at random microseconds, so that
// buckets and periods of hours and days, aligned and not, are read whichever way
// the store keeps them.
func testRollupsMatchTheCalls(t *testing.T, s RollupStore) {
	ctx := context.Background()
	calls := writeRollupFixture(t, s)
	rng := rand.New(rand.NewPCG(8, 1))
	workloads := []store.Call{{Workload: "a"}, {WorkloadID: "b"}, {Workload: "a", WorkloadID: "c"}, {}}
	routes := []store.Route{store.RouteReference, store.RouteCandidate, store.RouteEscalated}
	models := []string{"gpt-4o", "small-8b", ""}
	var batch []store.Call
	for range 1000 {
		c := workloads[rng.IntN(len(workloads))]
		c.Route, c.ServedModel = routes[rng.IntN(len(routes))], models[rng.IntN(len(models))]
		c.PromptTokens, c.CompletionTokens = rng.IntN(1000), rng.IntN(100)
		c.CostUSD, c.ReferenceCostUSD = float64(rng.IntN(100))/1000, float64(rng.IntN(100))/1000
		if rng.IntN(10) == 0 {
			c.Status = 500
		}
		if rng.IntN(3) == 0 {
			c.Guard = []string{store.GuardPass, "tool_known"}[rng.IntN(2)]
			c.Second = &store.SecondAnswer{Kind: store.SecondVerify, CostUSD: float64(rng.IntN(10)) / 1000,
				Compared: rng.IntN(2) == 0, Agreement: float64(rng.IntN(11)) / 10, Pass: rng.IntN(2) == 0}
		}
		offset := time.Duration(rng.Int64N(int64(72*time.Hour))) - 24*time.Hour
		c = rollupCall(offset, time.Duration(rng.ExpFloat64()*float64(300*time.Millisecond)), c)
		batch = append(batch, c)
		calls = append(calls, stored(c))
		if len(batch) == 100 {
			if err := s.InsertCalls(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.InsertCalls(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var gateway []store.Call
	for _, c := range calls {
		if c.Source == store.SourceGateway {
			gateway = append(gateway, c)
		}
	}

	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	times := []time.Time{{}, day, day.Add(-13*time.Hour - 7*time.Minute - 12345*time.Nanosecond),
		day.Add(36*time.Hour + 30*time.Second), day.Add(11 * time.Hour), rollupBase.Add(2 * time.Minute)}
	// Every step with every period; the workload filter and splits take turns.
	workloadKeys, i := []string{"", "a", store.NoWorkload}, 0
	for _, step := range []time.Duration{0, time.Minute, 7 * time.Minute, time.Hour, 90 * time.Minute,
		6 * time.Hour, 24 * time.Hour, 48 * time.Hour} {
		for _, since := range times {
			for _, until := range times {
				if !until.IsZero() && !until.After(since) {
					continue
				}
				i++
				f := store.RollupFilter{Since: since, Until: until, Step: step, Workload: workloadKeys[i%3],
					ByWorkload: i/3%2 != 0, ByModel: i/6%2 != 0}
				checkRollups(t, f, rollups(t, s, f), sumCalls(gateway, f)...)
				if t.Failed() {
					return
				}
			}
		}
	}

	// Over everything, the rollups hold every gateway call once, and save what the
	// calls say they saved.
	var calls64 int64
	var saved, rolledUp float64
	for i := range gateway {
		saved += gateway[i].SavingsUSD()
	}
	for _, r := range rollups(t, s, store.RollupFilter{ByWorkload: true, ByModel: true}) {
		calls64 += r.Calls
		rolledUp += r.SavingsUSD()
	}
	if calls64 != int64(len(gateway)) || math.Abs(saved-rolledUp) > 1e-9 {
		t.Errorf("rollups hold %d calls saving %v; the gateway's calls are %d saving %v",
			calls64, rolledUp, len(gateway), saved)
	}
}

// sumCalls is what Rollups(f) must return for calls (gateway calls, as stored), summed
// one call at a time.
func sumCalls(calls []store.Call, f store.RollupFilter) []store.Rollup {
	step := int64(f.Step / time.Minute)
	since, until := utcMicros(f.Since), utcMicros(f.Until)
	type dims struct {
		start           time.Time
		workload, model string
		route           store.Route
	}
	sums := make(map[dims]*store.Rollup)
	var first time.Time
	for i := range calls {
		c := &calls[i]
		minute := c.StartedAt.Truncate(time.Minute)
		start := minute
		if step > 0 { // a multiple of Step since the Unix epoch, which Truncate is not
			sec, width := c.StartedAt.Unix(), int64(f.Step/time.Second)
			start = time.Unix(sec-((sec%width)+width)%width, 0).UTC()
		}
		if (!f.Since.IsZero() && start.Before(since)) || (!f.Until.IsZero() && !start.Before(until)) {
			continue
		}
		wk := store.RollupKey(c)
		if f.Workload != "" && wk != f.Workload {
			continue
		}
		if step == 0 && (first.IsZero() || minute.Before(first)) {
			first = minute
		}
		d := dims{route: c.Route}
		if step > 0 {
			d.start = start
		}
		if f.ByWorkload {
			d.workload = wk
		}
		if f.ByModel {
			d.model = c.ServedModel
		}
		if sums[d] == nil {
			sums[d] = &store.Rollup{Start: start, Workload: d.workload, Route: d.route, Model: d.model}
		}
		sums[d].AddCall(c)
	}
	var out []store.Rollup
	for _, r := range sums {
		if step == 0 {
			r.Start = first
			if !f.Since.IsZero() {
				r.Start = since
			}
		}
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b store.Rollup) int {
		return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.Workload, b.Workload),
			strings.Compare(string(a.Route), string(b.Route)), strings.Compare(a.Model, b.Model))
	})
	return out
}
