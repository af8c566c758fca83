package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// EvalStore is what RunEvals tests: eval sets, runs and results.
type EvalStore interface {
	store.EvalStore
	Close() error
}

// RunEvals runs the conformance suite for eval sets, eval runs and their results
// against the stores open makes. open must return a new, empty store each time;
// RunEvals closes it.
func RunEvals(t *testing.T, open func(t *testing.T) EvalStore) {
	tests := []testCase[EvalStore]{
		{"NothingSavedIsNotFoundAndEmpty", testEvalsEmpty},
		{"EvalSetRoundTripMembersOrdered", testEvalSetRoundTrip},
		{"InvalidEvalSetSavesNothing", testInvalidEvalSet},
		{"LatestEvalSetIsTheWorkloadsNewest", testLatestEvalSet},
		{"EvalRunRoundTripAndUpdate", testEvalRunRoundTrip},
		{"InvalidEvalRunIsRefused", testInvalidEvalRun},
		{"ListEvalRunsNewestFirstFiltered", testListEvalRuns},
		{"EvalResultsRoundTripOrdered", testEvalResultsRoundTrip},
		{"SaveEvalResultsReplacesSameKey", testEvalResultsReplace},
		{"SaveEvalResultsIsAllOrNothing", testEvalResultsAtomic},
		{"SaveEvalResultsEmptyBatchIsNoop", testEvalResultsEmpty},
		{"ConcurrentResultBatchesAllLand", testEvalResultsConcurrent},
	}
	runEach(t, open, tests)
}

// inZone is base in a zone other than UTC, with sub-microsecond digits stores drop.
var inZone = base.In(time.FixedZone("UTC+5:30", 5*3600+1800))

// utcMicros is what a store gives back for t.
func utcMicros(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

// timesDiffer reports whether got is not want's stored form, zone included.
func timesDiffer(got, want time.Time) bool {
	return !got.Equal(utcMicros(want)) || got.Location() != time.UTC
}

// rawEqual compares JSON or bytes as stored: the same bytes, and nil only for nil.
func rawEqual(got, want []byte) bool {
	return bytes.Equal(got, want) && (got == nil) == (want == nil)
}

// evalSet returns a set of n members of workload wl, created at, given out of order.
func evalSet(id, wl string, at time.Time, n int) store.EvalSet {
	splits := []string{store.SplitValidation, store.SplitTest, store.SplitTrain}
	set := store.EvalSet{ID: id, WorkloadID: wl, CreatedAt: at,
		Params: json.RawMessage(`{"seed": 7, "size": ` + fmt.Sprint(n) + `, "dedup":["exact"]}`)}
	for i := n - 1; i >= 0; i-- {
		set.Members = append(set.Members, store.EvalMember{
			CallID:  fmt.Sprintf("01J%023d", i),
			Split:   splits[i%3],
			Stratum: []string{"book_reservation", "get_user+search", "json", "text"}[i%4],
		})
	}
	return set
}

// sortedMembers returns ms ordered as stores return them: by (Split, CallID).
func sortedMembers(ms []store.EvalMember) []store.EvalMember {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b store.EvalMember) int {
		if c := strings.Compare(a.Split, b.Split); c != 0 {
			return c
		}
		return strings.Compare(a.CallID, b.CallID)
	})
	return out
}

// setDiff describes how got differs from what a store gives back for want.
func setDiff(got, want store.EvalSet) string {
	var d []string
	if timesDiffer(got.CreatedAt, want.CreatedAt) {
		d = append(d, fmt.Sprintf("CreatedAt %v, want %v (UTC)", got.CreatedAt, utcMicros(want.CreatedAt)))
	}
	wantParams := want.Params
	if len(wantParams) == 0 {
		wantParams = nil
	}
	if !rawEqual(got.Params, wantParams) {
		d = append(d, fmt.Sprintf("Params %q (nil %t), want %q", got.Params, got.Params == nil, wantParams))
	}
	wantMembers := sortedMembers(want.Members)
	if len(wantMembers) == 0 {
		wantMembers = nil
	}
	if !reflect.DeepEqual(got.Members, wantMembers) {
		d = append(d, fmt.Sprintf("Members\n got %+v\nwant %+v", got.Members, wantMembers))
	}
	if got.ID != want.ID || got.WorkloadID != want.WorkloadID {
		d = append(d, fmt.Sprintf("ID, WorkloadID = %s, %s; want %s, %s", got.ID, got.WorkloadID, want.ID, want.WorkloadID))
	}
	return strings.Join(d, "; ")
}

func saveSet(t *testing.T, s EvalStore, set store.EvalSet) {
	t.Helper()
	if err := s.SaveEvalSet(context.Background(), set); err != nil {
		t.Fatalf("SaveEvalSet %s: %v", set.ID, err)
	}
}

func getSet(t *testing.T, s EvalStore, id string) store.EvalSet {
	t.Helper()
	set, err := s.GetEvalSet(context.Background(), id)
	if err != nil {
		t.Fatalf("GetEvalSet %s: %v", id, err)
	}
	return set
}

func testEvalsEmpty(t *testing.T, s EvalStore) {
	ctx := context.Background()
	if _, err := s.GetEvalSet(ctx, "set-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEvalSet: err = %v, want ErrNotFound", err)
	}
	if _, err := s.LatestEvalSet(ctx, "wl-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LatestEvalSet: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetEvalRun(ctx, "run-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEvalRun: err = %v, want ErrNotFound", err)
	}
	if runs, err := s.ListEvalRuns(ctx, ""); err != nil || len(runs) != 0 {
		t.Errorf("ListEvalRuns = %v, %v; want none", runs, err)
	}
	if rs, err := s.ListEvalResults(ctx, "run-1"); err != nil || len(rs) != 0 {
		t.Errorf("ListEvalResults = %v, %v; want none", rs, err)
	}
}

func testEvalSetRoundTrip(t *testing.T, s EvalStore) {
	full := evalSet("set-full", "wl-1", inZone, 30)
	full.Members[3].Stratum = "" // a member without a stratum
	bare := store.EvalSet{ID: "set-bare", WorkloadID: "wl-1", CreatedAt: base}
	empty := store.EvalSet{ID: "set-empty", WorkloadID: "wl-2", CreatedAt: base,
		Params: json.RawMessage{}, Members: []store.EvalMember{}}
	for _, set := range []store.EvalSet{full, bare, empty} {
		saveSet(t, s, set)
	}
	for _, want := range []store.EvalSet{full, bare, empty} {
		if d := setDiff(getSet(t, s, want.ID), want); d != "" {
			t.Errorf("set %s: %s", want.ID, d)
		}
	}
	// The test split alone, as evaluation reads it, is in call order.
	var test []string
	for _, m := range getSet(t, s, full.ID).Members {
		if m.Split == store.SplitTest {
			test = append(test, m.CallID)
		}
	}
	if len(test) != 10 || !slices.IsSorted(test) {
		t.Errorf("test split = %v, want 10 calls in order", test)
	}
}

func testInvalidEvalSet(t *testing.T, s EvalStore) {
	ctx := context.Background()
	good := evalSet("set-good", "wl-1", base, 6)
	saveSet(t, s, good)

	withMember := func(id string, m store.EvalMember) store.EvalSet {
		set := evalSet(id, "wl-1", base.Add(time.Hour), 6)
		set.Members = append(set.Members, m)
		return set
	}
	dupCall := evalSet("set-dup", "wl-1", base.Add(time.Hour), 6)
	dupCall.Members = append(dupCall.Members, store.EvalMember{CallID: dupCall.Members[2].CallID, Split: store.SplitTrain})
	badParams := evalSet("set-params", "wl-1", base.Add(time.Hour), 3)
	badParams.Params = json.RawMessage(`{"seed":`)
	again := evalSet("set-good", "wl-1", base.Add(time.Hour), 2) // the id of a saved set

	for name, set := range map[string]store.EvalSet{
		"no id":                    evalSet("", "wl-1", base.Add(time.Hour), 3),
		"bad split":                withMember("set-split", store.EvalMember{CallID: "01JX", Split: "holdout"}),
		"empty split":              withMember("set-nosplit", store.EvalMember{CallID: "01JX"}),
		"split in another case":    withMember("set-case", store.EvalMember{CallID: "01JX", Split: "Test"}),
		"member without a call id": withMember("set-nocall", store.EvalMember{Split: store.SplitTest}),
		"duplicate member call":    dupCall,
		"params not JSON":          badParams,
		"duplicate set id":         again,
	} {
		err := s.SaveEvalSet(ctx, set)
		if err == nil {
			t.Errorf("%s: SaveEvalSet succeeded", name)
			continue
		}
		if name == "duplicate set id" && !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", name, err)
		}
		if set.ID != "" && set.ID != good.ID {
			if _, err := s.GetEvalSet(ctx, set.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: set %s after a refused save: err = %v, want ErrNotFound", name, set.ID, err)
			}
		}
	}
	if d := setDiff(getSet(t, s, good.ID), good); d != "" {
		t.Errorf("set %s after refused saves: %s", good.ID, d)
	}
	if latest, err := s.LatestEvalSet(ctx, "wl-1"); err != nil || latest.ID != good.ID {
		t.Errorf("LatestEvalSet(wl-1) = %s, %v; want %s (refused sets saved nothing)", latest.ID, err, good.ID)
	}
	// A call may be in two different sets.
	saveSet(t, s, evalSet("set-other", "wl-1", base.Add(time.Hour), 6))
}

func testLatestEvalSet(t *testing.T, s EvalStore) {
	ctx := context.Background()
	// Saved out of creation order: the latest CreatedAt wins, not the last saved.
	for _, set := range []store.EvalSet{
		evalSet("a-old", "wl-a", base, 3),
		evalSet("a-new", "wl-a", base.Add(2*time.Hour), 4),
		evalSet("a-mid", "wl-a", base.Add(time.Hour), 5),
		evalSet("b-only", "wl-b", base.Add(time.Minute), 2),
		evalSet("c-newest-overall", "wl-c", base.Add(24*time.Hour), 2),
	} {
		saveSet(t, s, set)
	}
	for wl, want := range map[string]store.EvalSet{
		"wl-a": evalSet("a-new", "wl-a", base.Add(2*time.Hour), 4),
		"wl-b": evalSet("b-only", "wl-b", base.Add(time.Minute), 2),
	} {
		got, err := s.LatestEvalSet(ctx, wl)
		if err != nil {
			t.Fatalf("LatestEvalSet(%s): %v", wl, err)
		}
		if d := setDiff(got, want); d != "" {
			t.Errorf("LatestEvalSet(%s): %s", wl, d)
		}
	}
	if _, err := s.LatestEvalSet(ctx, "wl-z"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LatestEvalSet of a workload without sets: err = %v, want ErrNotFound", err)
	}
	// Two sets created in the same microsecond: the one saved last is the newer.
	saveSet(t, s, evalSet("b-tie-1", "wl-b", base.Add(time.Hour), 2))
	saveSet(t, s, evalSet("b-tie-2", "wl-b", base.Add(time.Hour), 2))
	if got, err := s.LatestEvalSet(ctx, "wl-b"); err != nil || got.ID != "b-tie-2" {
		t.Errorf("LatestEvalSet(wl-b) after a tie = %s, %v; want b-tie-2", got.ID, err)
	}
}

// evalRun returns a running run of set with every field a running run has.
func evalRun(id, set, wl string, started time.Time) store.EvalRun {
	return store.EvalRun{ID: id, SetID: set, WorkloadID: wl, StartedAt: started,
		Status: store.EvalRunning,
		Params: json.RawMessage(`{"candidates": ["qwen", "phi"], "variants":["zero-shot"], "concurrency": 8}`)}
}

func runDiff(got, want store.EvalRun) string {
	var d []string
	if timesDiffer(got.StartedAt, want.StartedAt) {
		d = append(d, fmt.Sprintf("StartedAt %v, want %v (UTC)", got.StartedAt, utcMicros(want.StartedAt)))
	}
	if timesDiffer(got.FinishedAt, want.FinishedAt) {
		d = append(d, fmt.Sprintf("FinishedAt %v, want %v (UTC)", got.FinishedAt, utcMicros(want.FinishedAt)))
	}
	for _, f := range []struct {
		name      string
		got, want json.RawMessage
	}{{"Params", got.Params, want.Params}, {"Leaderboard", got.Leaderboard, want.Leaderboard}} {
		w := f.want
		if len(w) == 0 {
			w = nil
		}
		if !rawEqual(f.got, w) {
			d = append(d, fmt.Sprintf("%s %q (nil %t), want %q", f.name, f.got, f.got == nil, w))
		}
	}
	g, w := got, want
	g.StartedAt, g.FinishedAt, g.Params, g.Leaderboard = time.Time{}, time.Time{}, nil, nil
	w.StartedAt, w.FinishedAt, w.Params, w.Leaderboard = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(g, w) {
		d = append(d, fmt.Sprintf("\n got %+v\nwant %+v", g, w))
	}
	return strings.Join(d, "; ")
}

func saveRun(t *testing.T, s EvalStore, run store.EvalRun) {
	t.Helper()
	if err := s.SaveEvalRun(context.Background(), run); err != nil {
		t.Fatalf("SaveEvalRun %s: %v", run.ID, err)
	}
}

func getRun(t *testing.T, s EvalStore, id string) store.EvalRun {
	t.Helper()
	run, err := s.GetEvalRun(context.Background(), id)
	if err != nil {
		t.Fatalf("GetEvalRun %s: %v", id, err)
	}
	return run
}

func testEvalRunRoundTrip(t *testing.T, s EvalStore) {
	saveSet(t, s, evalSet("set-1", "wl-1", base, 6))
	running := evalRun("run-1", "set-1", "wl-1", inZone)
	saveRun(t, s, running)
	if d := runDiff(getRun(t, s, "run-1"), running); d != "" {
		t.Errorf("running run: %s", d)
	}
	bare := store.EvalRun{ID: "run-bare", SetID: "set-1", Status: store.EvalRunning,
		Params: json.RawMessage{}, Leaderboard: json.RawMessage{}}
	saveRun(t, s, bare)
	if d := runDiff(getRun(t, s, "run-bare"), bare); d != "" {
		t.Errorf("bare run: %s", d)
	}

	// Finishing it sets status, finish time and leaderboard; start time and params
	// stay as first saved.
	finished := running
	finished.Status = store.EvalFinished
	finished.FinishedAt = inZone.Add(90*time.Minute + 123*time.Nanosecond)
	finished.Leaderboard = json.RawMessage(`{"run_id": "run-1", "rows": [{"candidate":"qwen","quality":0.97}]}`)
	saveRun(t, s, finished)
	if d := runDiff(getRun(t, s, "run-1"), finished); d != "" {
		t.Errorf("finished run: %s", d)
	}
	again := finished
	again.StartedAt, again.Params = base.Add(time.Hour), json.RawMessage(`{"other":true}`)
	saveRun(t, s, again)
	if d := runDiff(getRun(t, s, "run-1"), finished); d != "" {
		t.Errorf("run saved again with another start and params: %s", d)
	}
	// A finished run may be resumed: back to running, its leaderboard cleared.
	resumed := finished
	resumed.Status, resumed.FinishedAt, resumed.Leaderboard = store.EvalRunning, time.Time{}, nil
	saveRun(t, s, resumed)
	if d := runDiff(getRun(t, s, "run-1"), resumed); d != "" {
		t.Errorf("resumed run: %s", d)
	}
	if d := runDiff(getRun(t, s, "run-bare"), bare); d != "" {
		t.Errorf("bare run after updates of run-1: %s", d)
	}
}

func testInvalidEvalRun(t *testing.T, s EvalStore) {
	ctx := context.Background()
	saveSet(t, s, evalSet("set-1", "wl-1", base, 3))
	saveSet(t, s, evalSet("set-2", "wl-1", base, 3))
	good := evalRun("run-1", "set-1", "wl-1", base)
	saveRun(t, s, good)

	unknownSet := evalRun("run-x", "set-missing", "wl-1", base)
	if err := s.SaveEvalRun(ctx, unknownSet); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("run of an unknown set: err = %v, want ErrNotFound", err)
	}
	moveSet, moveWorkload := good, good
	moveSet.SetID, moveWorkload.WorkloadID = "set-2", "wl-2"
	moveSet.Status, moveWorkload.Status = store.EvalFinished, store.EvalFinished
	badStatus := evalRun("run-y", "set-1", "wl-1", base)
	badStatus.Status = "done"
	noStatus := evalRun("run-y", "set-1", "wl-1", base)
	noStatus.Status = ""
	badParams := evalRun("run-y", "set-1", "wl-1", base)
	badParams.Params = json.RawMessage(`{"candidates":`)
	badBoard := evalRun("run-y", "set-1", "wl-1", base)
	badBoard.Leaderboard = json.RawMessage(`[`)
	badUpdate := good
	badUpdate.Status, badUpdate.Leaderboard = store.EvalFinished, json.RawMessage(`{"rows":`)
	for name, run := range map[string]store.EvalRun{
		"no id":                 evalRun("", "set-1", "wl-1", base),
		"no set":                evalRun("run-y", "", "wl-1", base),
		"set changed":           moveSet,
		"workload changed":      moveWorkload,
		"bad status":            badStatus,
		"no status":             noStatus,
		"params not JSON":       badParams,
		"leaderboard not JSON":  badBoard,
		"update, board invalid": badUpdate,
	} {
		if err := s.SaveEvalRun(ctx, run); err == nil {
			t.Errorf("%s: SaveEvalRun succeeded", name)
		}
	}
	for _, id := range []string{"run-x", "run-y"} {
		if _, err := s.GetEvalRun(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after refused saves: err = %v, want ErrNotFound", id, err)
		}
	}
	if d := runDiff(getRun(t, s, "run-1"), good); d != "" {
		t.Errorf("run-1 after refused saves: %s", d)
	}
}

func runIDs(runs []store.EvalRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func testListEvalRuns(t *testing.T, s EvalStore) {
	ctx := context.Background()
	saveSet(t, s, evalSet("set-a", "wl-a", base, 3))
	saveSet(t, s, evalSet("set-b", "wl-b", base, 3))
	// Saved out of start order.
	for _, r := range []store.EvalRun{
		evalRun("a2", "set-a", "wl-a", base.Add(2*time.Hour)),
		evalRun("b1", "set-b", "wl-b", base.Add(90*time.Minute)),
		evalRun("a1", "set-a", "wl-a", base.Add(time.Hour)),
		evalRun("a3", "set-a", "wl-a", base.Add(3*time.Hour)),
		evalRun("b0", "set-b", "wl-b", base),
	} {
		saveRun(t, s, r)
	}
	// Finishing a2 does not move it.
	fin := evalRun("a2", "set-a", "wl-a", base.Add(2*time.Hour))
	fin.Status, fin.FinishedAt = store.EvalFinished, base.Add(10*time.Hour)
	saveRun(t, s, fin)

	for wl, want := range map[string][]string{
		"":     {"a3", "a2", "b1", "a1", "b0"},
		"wl-a": {"a3", "a2", "a1"},
		"wl-b": {"b1", "b0"},
		"wl-z": {},
	} {
		runs, err := s.ListEvalRuns(ctx, wl)
		if err != nil {
			t.Fatalf("ListEvalRuns(%q): %v", wl, err)
		}
		if got := runIDs(runs); !slices.Equal(got, want) {
			t.Errorf("ListEvalRuns(%q) = %v, want newest first %v", wl, got, want)
		}
	}
	runs, err := s.ListEvalRuns(ctx, "wl-a")
	if err != nil {
		t.Fatal(err)
	}
	if d := runDiff(runs[1], fin); d != "" {
		t.Errorf("a2 as listed: %s", d)
	}
	// Two runs started in the same microsecond: the one saved last is the newer.
	saveRun(t, s, evalRun("b-tie-1", "set-b", "wl-b", base.Add(5*time.Hour)))
	saveRun(t, s, evalRun("b-tie-2", "set-b", "wl-b", base.Add(5*time.Hour)))
	runs, err = s.ListEvalRuns(ctx, "wl-b")
	if err != nil {
		t.Fatal(err)
	}
	if got := runIDs(runs); !slices.Equal(got, []string{"b-tie-2", "b-tie-1", "b1", "b0"}) {
		t.Errorf("ListEvalRuns(wl-b) after a tie = %v, want b-tie-2 first", got)
	}
}

// evalResult returns a result with every field set.
func evalResult(run, candidate, variant, call string) store.EvalResult {
	return store.EvalResult{
		RunID: run, Candidate: candidate, Variant: variant, CallID: call,
		At:     inZone.Add(time.Minute),
		Status: 200, Error: "first attempt: 429 — réessayer", Attempts: 2,
		Latency: 1234567891 * time.Nanosecond, TTFT: 98765 * time.Nanosecond,
		PromptTokens: 1200, CompletionTokens: 345, CostUSD: 0.00012345678,
		Agreement: 0.8125, Pass: true,
		Score:  json.RawMessage(`{"kind": "tool_call", "name_match": true, "args_f1":0.8125}`),
		KeyID:  "k1",
		Answer: []byte{0, 1, 2, 0xff, 0xfe, 0},
	}
}

// storedResult is what a store gives back for r.
func storedResult(r store.EvalResult) store.EvalResult {
	r.At = utcMicros(r.At)
	r.Latency = r.Latency.Truncate(time.Microsecond)
	r.TTFT = r.TTFT.Truncate(time.Microsecond)
	if len(r.Score) == 0 {
		r.Score = nil
	}
	if len(r.Answer) == 0 {
		r.Answer = nil
	}
	return r
}

func resultDiff(got, want store.EvalResult) string {
	want = storedResult(want)
	var d []string
	if !got.At.Equal(want.At) || got.At.Location() != time.UTC {
		d = append(d, fmt.Sprintf("At %v, want %v (UTC)", got.At, want.At))
	}
	if !rawEqual(got.Score, want.Score) {
		d = append(d, fmt.Sprintf("Score %q (nil %t), want %q", got.Score, got.Score == nil, want.Score))
	}
	if !rawEqual(got.Answer, want.Answer) {
		d = append(d, fmt.Sprintf("Answer %q (nil %t), want %q", got.Answer, got.Answer == nil, want.Answer))
	}
	g, w := got, want
	g.At, g.Score, g.Answer = time.Time{}, nil, nil
	w.At, w.Score, w.Answer = time.Time{}, nil, nil
	if !reflect.DeepEqual(g, w) {
		d = append(d, fmt.Sprintf("\n got %+v\nwant %+v", g, w))
	}
	return strings.Join(d, "; ")
}

func resultKey(r store.EvalResult) string {
	return r.RunID + "/" + r.Candidate + "/" + r.Variant + "/" + r.CallID
}

func listResults(t *testing.T, s EvalStore, run string) []store.EvalResult {
	t.Helper()
	rs, err := s.ListEvalResults(context.Background(), run)
	if err != nil {
		t.Fatalf("ListEvalResults %s: %v", run, err)
	}
	return rs
}

// checkResults fails t unless the run's stored results are want, in order.
func checkResults(t *testing.T, s EvalStore, run string, want ...store.EvalResult) {
	t.Helper()
	got := listResults(t, s, run)
	keys := func(rs []store.EvalResult) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = resultKey(r)
		}
		return out
	}
	if !slices.Equal(keys(got), keys(want)) {
		t.Fatalf("results of %s = %v, want %v", run, keys(got), keys(want))
	}
	for i := range want {
		if d := resultDiff(got[i], want[i]); d != "" {
			t.Errorf("result %s: %s", resultKey(want[i]), d)
		}
	}
}

// runFixture saves a set and a running run for each id of runs.
func runFixture(t *testing.T, s EvalStore, runs ...string) {
	t.Helper()
	saveSet(t, s, evalSet("set-1", "wl-1", base, 6))
	for _, id := range runs {
		saveRun(t, s, evalRun(id, "set-1", "wl-1", base))
	}
}

func saveResults(t *testing.T, s EvalStore, rs ...store.EvalResult) {
	t.Helper()
	if err := s.SaveEvalResults(context.Background(), rs); err != nil {
		t.Fatalf("SaveEvalResults: %v", err)
	}
}

func testEvalResultsRoundTrip(t *testing.T, s EvalStore) {
	runFixture(t, s, "run-1", "run-2")
	full := evalResult("run-1", "qwen", "zero-shot", "01J02")
	failed := store.EvalResult{RunID: "run-1", Candidate: "qwen", Variant: "zero-shot", CallID: "01J01",
		At: base, Error: "connection refused", Attempts: 3} // no response: status 0, nothing else
	emptyPayloads := evalResult("run-1", "phi", "in-context", "01J01")
	emptyPayloads.Score, emptyPayloads.Answer, emptyPayloads.KeyID = json.RawMessage{}, []byte{}, ""
	emptyPayloads.Pass = false
	noVariant := evalResult("run-1", "phi", "", "01J03")
	other := evalResult("run-2", "qwen", "zero-shot", "01J02")
	other.Agreement = 0.25
	// Given out of order and in two batches.
	saveResults(t, s, full, other, noVariant)
	saveResults(t, s, emptyPayloads, failed)

	checkResults(t, s, "run-1", noVariant, emptyPayloads, failed, full)
	checkResults(t, s, "run-2", other)
	checkResults(t, s, "run-unknown")
}

func testEvalResultsReplace(t *testing.T, s EvalStore) {
	runFixture(t, s, "run-1")
	first := evalResult("run-1", "qwen", "zero-shot", "01J01")
	otherVariant := evalResult("run-1", "qwen", "in-context", "01J01")
	otherCall := evalResult("run-1", "qwen", "zero-shot", "01J02")
	saveResults(t, s, first, otherVariant, otherCall)

	// The same key again: a retried call that now failed for good.
	second := store.EvalResult{RunID: "run-1", Candidate: "qwen", Variant: "zero-shot", CallID: "01J01",
		At: base.Add(time.Hour), Status: 503, Error: "upstream unavailable", Attempts: 4,
		Latency: time.Second}
	saveResults(t, s, second)
	checkResults(t, s, "run-1", otherVariant, second, otherCall)

	// Twice in one batch: the later one stands.
	third := evalResult("run-1", "qwen", "zero-shot", "01J01")
	third.Agreement, third.Pass = 0.5, false
	fourth := evalResult("run-1", "qwen", "zero-shot", "01J01")
	fourth.Agreement, fourth.Score = 1, json.RawMessage(`{"exact":true}`)
	saveResults(t, s, third, fourth)
	checkResults(t, s, "run-1", otherVariant, fourth, otherCall)
}

func testEvalResultsAtomic(t *testing.T, s EvalStore) {
	ctx := context.Background()
	runFixture(t, s, "run-1")
	kept := evalResult("run-1", "qwen", "zero-shot", "01J01")
	saveResults(t, s, kept)

	replaced := evalResult("run-1", "qwen", "zero-shot", "01J01")
	replaced.Agreement, replaced.Error = 0, "should not land"
	fresh := evalResult("run-1", "qwen", "zero-shot", "01J02")
	orphan := evalResult("run-missing", "qwen", "zero-shot", "01J03")
	err := s.SaveEvalResults(ctx, []store.EvalResult{replaced, fresh, orphan})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a result of an unknown run: err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "run-missing") {
		t.Errorf("error %q does not name the unknown run", err)
	}

	badScore := evalResult("run-1", "qwen", "zero-shot", "01J04")
	badScore.Score = json.RawMessage(`{"kind":`)
	noCandidate := evalResult("run-1", "", "zero-shot", "01J04")
	noCall := evalResult("run-1", "qwen", "zero-shot", "")
	noRun := evalResult("", "qwen", "zero-shot", "01J04")
	for name, bad := range map[string]store.EvalResult{
		"score not JSON": badScore, "no candidate": noCandidate, "no call": noCall, "no run": noRun,
	} {
		if err := s.SaveEvalResults(ctx, []store.EvalResult{replaced, fresh, bad}); err == nil {
			t.Errorf("%s: SaveEvalResults succeeded", name)
		}
	}
	checkResults(t, s, "run-1", kept)
	checkResults(t, s, "run-missing")
	// The store is still usable after failed batches.
	saveResults(t, s, replaced, fresh)
	checkResults(t, s, "run-1", replaced, fresh)
}

func testEvalResultsEmpty(t *testing.T, s EvalStore) {
	if err := s.SaveEvalResults(context.Background(), nil); err != nil {
		t.Errorf("SaveEvalResults(nil) = %v", err)
	}
}

func testEvalResultsConcurrent(t *testing.T, s EvalStore) {
	const workers, batches, size = 8, 5, 10
	runFixture(t, s, "run-1")
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches*2)
	for w := range workers {
		wg.Go(func() {
			for b := range batches {
				rs := make([]store.EvalResult, size)
				for i := range rs {
					rs[i] = evalResult("run-1", fmt.Sprintf("cand-%d", w), "zero-shot", fmt.Sprintf("01J%03d%03d", b, i))
				}
				if err := s.SaveEvalResults(ctx, rs); err != nil {
					errs <- err
				}
				if _, err := s.ListEvalResults(ctx, "run-1"); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
	if n := len(listResults(t, s, "run-1")); n != workers*batches*size {
		t.Errorf("ListEvalResults has %d results, want %d", n, workers*batches*size)
	}
}
