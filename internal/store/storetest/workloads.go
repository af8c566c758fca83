package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// RunWorkloads runs the conformance suite for workloads, their runs and the
// assignment of calls to them against the stores open makes. open must return a new,
// empty store each time; RunWorkloads closes it.
func RunWorkloads(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []testCase[store.Store]{
		{"NoRunYetIsNotFoundAndEmpty", testNoRun},
		{"WorkloadsRoundTripEveryField", testWorkloadsRoundTrip},
		{"SaveReplacesCurrentSetLastSavedWins", testSaveReplaces},
		{"InvalidSaveSavesNothing", testInvalidSave},
		{"ConcurrentReadersSeeOneWholeSet", testSaveAtomicForReaders},
		{"AssignSetsAndClearsOnlyNamedCalls", testAssign},
		{"AssignIsAllOrNothing", testAssignAtomic},
		{"AssignEmptyIsNoop", testAssignEmpty},
	}
	runEach(t, open, tests)
}

// fullWorkload returns a workload with every field set.
func fullWorkload(id string) store.Workload {
	return store.Workload{
		ID: id, Label: "réserver un vol — 予約 " + id,
		Terms:          []string{"reservation", "cabin", "baggage"},
		Tools:          []string{"book_reservation", "get_user_details"},
		OutputTypes:    map[string]float64{"tool_call": 0.7, "json": 0.1, "text": 0.2},
		Representative: "01J0000000000000000000000A",
		Calls:          1234,
		Stats:          json.RawMessage(`{"calls":1234,"cost_usd":1.5,"tools":["a","b"]}`),
		Readiness:      87,
		Model:          []byte{0, 1, 2, 0xff, 0xfe, 0},
		UpdatedAt:      base.Add(-time.Hour), // replaced by the run's time
	}
}

func listWorkloads(t *testing.T, s store.Store) []store.Workload {
	t.Helper()
	ws, err := s.ListWorkloads(context.Background())
	if err != nil {
		t.Fatalf("ListWorkloads: %v", err)
	}
	return ws
}

func workloadIDs(ws []store.Workload) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

func latestRun(t *testing.T, s store.Store) store.WorkloadRun {
	t.Helper()
	r, err := s.LatestRun(context.Background())
	if err != nil {
		t.Fatalf("LatestRun: %v", err)
	}
	return r
}

func save(t *testing.T, s store.Store, run store.WorkloadRun, ws ...store.Workload) {
	t.Helper()
	if err := s.SaveWorkloads(context.Background(), run, ws); err != nil {
		t.Fatalf("SaveWorkloads %s: %v", run.ID, err)
	}
}

func testNoRun(t *testing.T, s store.Store) {
	if _, err := s.LatestRun(context.Background()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LatestRun on a new store: err = %v, want ErrNotFound", err)
	}
	if ws := listWorkloads(t, s); len(ws) != 0 {
		t.Errorf("new store lists %d workloads", len(ws))
	}
}

func testWorkloadsRoundTrip(t *testing.T, s store.Store) {
	at := base.In(time.FixedZone("UTC+5:30", 5*3600+1800)) // sub-µs digits and a zone
	run := store.WorkloadRun{ID: "run-1", At: at,
		Params: json.RawMessage(`{"k": 8, "seed": 1}`), Model: []byte{0, 0xff, 7}}
	full := fullWorkload("w2")
	bare := store.Workload{ID: "w1"}
	empty := store.Workload{ID: "w3", Terms: []string{}, Tools: []string{},
		OutputTypes: map[string]float64{}, Stats: json.RawMessage{}, Model: []byte{}}
	save(t, s, run, full, bare, empty)

	wantAt := at.Truncate(time.Microsecond).UTC()
	got := latestRun(t, s)
	if got.ID != run.ID || !got.At.Equal(wantAt) || got.At.Location() != time.UTC ||
		!bytes.Equal(got.Params, run.Params) || !bytes.Equal(got.Model, run.Model) {
		t.Errorf("LatestRun = %+v, want %+v at %v UTC", got, run, wantAt)
	}

	full.UpdatedAt, bare.UpdatedAt = wantAt, wantAt
	empty = store.Workload{ID: "w3", UpdatedAt: wantAt} // empty comes back as nil
	ws := listWorkloads(t, s)
	want := []store.Workload{bare, full, empty}
	if len(ws) != len(want) {
		t.Fatalf("ListWorkloads = %v, want ids w1 w2 w3", workloadIDs(ws))
	}
	for i := range want {
		if d := workloadDiff(ws[i], want[i]); d != "" {
			t.Errorf("workload %s: %s", want[i].ID, d)
		}
	}

	// A run with no params or model comes back with nil ones.
	save(t, s, store.WorkloadRun{ID: "run-2", At: base})
	if r := latestRun(t, s); r.ID != "run-2" || r.Params != nil || r.Model != nil {
		t.Errorf("bare run came back as %+v", r)
	}
}

func workloadDiff(got, want store.Workload) string {
	if !got.UpdatedAt.Equal(want.UpdatedAt) || (!got.UpdatedAt.IsZero() && got.UpdatedAt.Location() != time.UTC) {
		return fmt.Sprintf("UpdatedAt %v, want %v (UTC)", got.UpdatedAt, want.UpdatedAt)
	}
	if (got.Stats == nil) != (want.Stats == nil) || !bytes.Equal(got.Stats, want.Stats) {
		return fmt.Sprintf("Stats %q, want %q", got.Stats, want.Stats)
	}
	got.UpdatedAt, got.Stats = want.UpdatedAt, want.Stats
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("\n got %+v\nwant %+v", got, want)
	}
	return ""
}

func testSaveReplaces(t *testing.T, s store.Store) {
	a, b, c := fullWorkload("a"), fullWorkload("b"), fullWorkload("c")
	save(t, s, store.WorkloadRun{ID: "run-1", At: base}, c, a, b)
	if got := workloadIDs(listWorkloads(t, s)); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("after run-1: %v, want [a b c]", got)
	}

	// The second run says its time is earlier: still, the run saved last is current.
	b2 := fullWorkload("b")
	b2.Label, b2.Calls, b2.Readiness = "b again", 7, 12
	save(t, s, store.WorkloadRun{ID: "run-2", At: base.Add(-time.Hour)}, b2, fullWorkload("d"))
	ws := listWorkloads(t, s)
	if got := workloadIDs(ws); !reflect.DeepEqual(got, []string{"b", "d"}) {
		t.Fatalf("after run-2: %v, want [b d]", got)
	}
	if ws[0].Label != "b again" || ws[0].Calls != 7 || ws[0].Readiness != 12 {
		t.Errorf("b after run-2 = %+v, want run-2's values", ws[0])
	}
	if !ws[0].UpdatedAt.Equal(base.Add(-time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("b UpdatedAt = %v, want run-2's time", ws[0].UpdatedAt)
	}
	if r := latestRun(t, s); r.ID != "run-2" {
		t.Errorf("LatestRun = %s, want run-2", r.ID)
	}

	// A run that found nothing empties the current set.
	save(t, s, store.WorkloadRun{ID: "run-3", At: base.Add(time.Hour)})
	if ws := listWorkloads(t, s); len(ws) != 0 {
		t.Errorf("after an empty run: %v, want none", workloadIDs(ws))
	}
	if r := latestRun(t, s); r.ID != "run-3" {
		t.Errorf("LatestRun = %s, want run-3", r.ID)
	}
}

func testInvalidSave(t *testing.T, s store.Store) {
	ctx := context.Background()
	good := store.WorkloadRun{ID: "run-good", At: base, Params: json.RawMessage(`{"k":2}`)}
	save(t, s, good, fullWorkload("a"), fullWorkload("b"))

	badStats := fullWorkload("x")
	badStats.Stats = json.RawMessage(`{"calls":`)
	nanShare := fullWorkload("x")
	nanShare.OutputTypes = map[string]float64{"text": zero / zero}
	for name, tc := range map[string]struct {
		run store.WorkloadRun
		ws  []store.Workload
	}{
		"run without id":        {store.WorkloadRun{At: base}, []store.Workload{fullWorkload("x")}},
		"run without time":      {store.WorkloadRun{ID: "run-x"}, []store.Workload{fullWorkload("x")}},
		"params not JSON":       {store.WorkloadRun{ID: "run-x", At: base, Params: json.RawMessage(`{`)}, nil},
		"workload without id":   {store.WorkloadRun{ID: "run-x", At: base}, []store.Workload{fullWorkload("x"), {}}},
		"workload twice":        {store.WorkloadRun{ID: "run-x", At: base}, []store.Workload{fullWorkload("x"), fullWorkload("x")}},
		"stats not JSON":        {store.WorkloadRun{ID: "run-x", At: base}, []store.Workload{fullWorkload("y"), badStats}},
		"share not a number":    {store.WorkloadRun{ID: "run-x", At: base}, []store.Workload{fullWorkload("y"), nanShare}},
		"run id already stored": {store.WorkloadRun{ID: "run-good", At: base.Add(time.Hour)}, []store.Workload{fullWorkload("x")}},
	} {
		if err := s.SaveWorkloads(ctx, tc.run, tc.ws); err == nil {
			t.Errorf("%s: SaveWorkloads succeeded", name)
		} else if name == "run id already stored" && !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", name, err)
		}
	}
	if r := latestRun(t, s); r.ID != good.ID || !bytes.Equal(r.Params, good.Params) || !r.At.Equal(base.Truncate(time.Microsecond)) {
		t.Errorf("LatestRun after refused saves = %+v, want %+v", r, good)
	}
	if got := workloadIDs(listWorkloads(t, s)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("workloads after refused saves: %v, want [a b]", got)
	}
}

// zero keeps the NaN above from being a constant expression, which Go refuses.
var zero float64

func testSaveAtomicForReaders(t *testing.T, s store.Store) {
	ctx := context.Background()
	const runs = 20
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for r := range runs {
			// Run r has r%5+1 workloads, all named after it.
			ws := make([]store.Workload, r%5+1)
			for i := range ws {
				ws[i] = fullWorkload(fmt.Sprintf("r%02d-w%d", r, i))
			}
			if err := s.SaveWorkloads(ctx, store.WorkloadRun{ID: fmt.Sprintf("run-%02d", r), At: base}, ws); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				ws, err := s.ListWorkloads(ctx)
				if err != nil {
					errs <- err
					return
				}
				if len(ws) == 0 {
					continue
				}
				prefix, _, _ := strings.Cut(ws[0].ID, "-")
				var r int
				fmt.Sscanf(prefix, "r%d", &r)
				if len(ws) != r%5+1 {
					errs <- fmt.Errorf("read %d workloads of run %d, which saved %d: %v", len(ws), r, r%5+1, workloadIDs(ws))
					return
				}
				for _, w := range ws {
					if !strings.HasPrefix(w.ID, prefix+"-") {
						errs <- fmt.Errorf("read a mix of runs: %v", workloadIDs(ws))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r := latestRun(t, s); r.ID != fmt.Sprintf("run-%02d", runs-1) {
		t.Errorf("LatestRun = %s after %d runs", r.ID, runs)
	}
}

// assignFixture stores n calls and returns them.
func assignFixture(t *testing.T, s store.Store, n int) []store.Call {
	t.Helper()
	calls := make([]store.Call, n)
	for i := range calls {
		start := base.Add(time.Duration(i) * time.Millisecond)
		calls[i] = store.Call{ID: newID(start), StartedAt: start, FinishedAt: start, Status: 200}
	}
	insert(t, s, calls...)
	return calls
}

// workloadOf returns the workload id stored for each call id.
func workloadOf(t *testing.T, s store.Store, calls []store.Call) map[string]string {
	t.Helper()
	got, err := s.ListCalls(context.Background(), store.Filter{Limit: len(calls) + 1, Ascending: true})
	if err != nil {
		t.Fatalf("ListCalls: %v", err)
	}
	out := make(map[string]string, len(got))
	for _, c := range got {
		out[c.ID] = c.WorkloadID
	}
	return out
}

func testAssign(t *testing.T, s store.Store) {
	ctx := context.Background()
	// More calls than one statement's batch, so that batching is exercised.
	calls := assignFixture(t, s, 1234)
	want := make(map[string]string, len(calls))
	assign := make(map[string]string)
	for i, c := range calls {
		want[c.ID] = ""
		if i%10 != 9 { // every tenth call is left out
			w := fmt.Sprintf("wl-%d", i%3)
			assign[c.ID], want[c.ID] = w, w
		}
	}
	if err := s.AssignWorkloads(ctx, assign); err != nil {
		t.Fatalf("AssignWorkloads: %v", err)
	}
	if got := workloadOf(t, s, calls); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the first assignment: %d calls differ", countDiff(got, want))
	}
	// GetCall carries it too.
	if c, err := s.GetCall(ctx, calls[0].ID); err != nil || c.WorkloadID != "wl-0" {
		t.Errorf("GetCall(%s).WorkloadID = %q, %v; want wl-0", calls[0].ID, c.WorkloadID, err)
	}

	// A second assignment moves some calls, clears one, and leaves the rest alone.
	second := map[string]string{calls[0].ID: "wl-9", calls[1].ID: "", calls[9].ID: "wl-new"}
	for id, w := range second {
		want[id] = w
	}
	if err := s.AssignWorkloads(ctx, second); err != nil {
		t.Fatalf("AssignWorkloads (second): %v", err)
	}
	if got := workloadOf(t, s, calls); !reflect.DeepEqual(got, want) {
		t.Errorf("after the second assignment: %d calls differ", countDiff(got, want))
	}
	if n, err := s.CountCalls(ctx, store.Filter{WorkloadID: "wl-9"}); err != nil || n != 1 {
		t.Errorf("CountCalls(WorkloadID wl-9) = %d, %v; want 1", n, err)
	}
	rollupsFollowAssignment(t, s)
}

// rollupsFollowAssignment checks that the rollups by workload sum the gateway's calls
// under their workload keys as they are now, after (re)assignment.
func rollupsFollowAssignment(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	calls, err := s.ListCalls(ctx, store.Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for i := range calls {
		if calls[i].Source == store.SourceGateway {
			want[store.RollupKey(&calls[i])]++
		}
	}
	rs, err := s.Rollups(ctx, store.RollupFilter{ByWorkload: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range rs {
		got[r.Workload] += r.Calls
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rollups by workload after assignment: %v, want %v", got, want)
	}
}

func countDiff(got, want map[string]string) int {
	n := 0
	for id, w := range want {
		if got[id] != w {
			n++
		}
	}
	return n + max(len(got)-len(want), 0)
}

func testAssignAtomic(t *testing.T, s store.Store) {
	calls := assignFixture(t, s, 700)
	assign := make(map[string]string, len(calls)+1)
	for _, c := range calls {
		assign[c.ID] = "wl"
	}
	missing := newID(base.Add(time.Hour))
	assign[missing] = "wl"
	err := s.AssignWorkloads(context.Background(), assign)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AssignWorkloads with an unknown call: err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name the unknown call %s", err, missing)
	}
	for id, w := range workloadOf(t, s, calls) {
		if w != "" {
			t.Fatalf("call %s got workload %q from a failed batch", id, w)
		}
	}
}

func testAssignEmpty(t *testing.T, s store.Store) {
	if err := s.AssignWorkloads(context.Background(), nil); err != nil {
		t.Errorf("AssignWorkloads(nil) = %v", err)
	}
	if err := s.AssignWorkloads(context.Background(), map[string]string{}); err != nil {
		t.Errorf("AssignWorkloads(empty) = %v", err)
	}
}
