package storetest

import (
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

// TuneJobStore is what RunTune tests: fine-tuning jobs and their logs.
type TuneJobStore interface {
	store.TuneJobStore
	Close() error
}

// RunTune runs the conformance suite for fine-tuning jobs and their logs against the
// stores open makes. open must return a new, empty store each time; RunTune closes it.
func RunTune(t *testing.T, open func(t *testing.T) TuneJobStore) {
	tests := []testCase[TuneJobStore]{
		{"NothingStoredIsNotFoundAndEmpty", testTuneEmpty},
		{"TuneJobRoundTripEveryField", testTuneRoundTrip},
		{"InvalidOrDuplicateJobIsRefused", testTuneCreateInvalid},
		{"UpdateChangesOnlyWhatMayChange", testTuneUpdate},
		{"StatusTransitionsAreChecked", testTuneTransitions},
		{"FinishedJobNeverChanges", testTuneFinished},
		{"ListTuneJobsNewestFirstFiltered", testTuneList},
		{"LogLinesNumberedInOrderAndFollowed", testTuneLog},
		{"ConcurrentLogAppendsAllLand", testTuneLogConcurrent},
		{"ConcurrentFinishesOneWins", testTuneFinishRace},
	}
	runEach(t, open, tests)
}

// tuneJob returns a new job with every field a new job may have set.
func tuneJob(id, workload string, created time.Time) store.TuneJob {
	return store.TuneJob{
		ID:       id,
		Workload: workload,
		Base:     "meta/llama-3.2-1b-instruct",
		Trainer:  "gpu-box",
		Status:   store.TuneSubmitted,
		Dataset:  json.RawMessage(`{"dir": "/var/lib/downshift/export/wl-1", "files": ["train.jsonl"]}`),
		Params:   json.RawMessage(`{"rank": 16, "alpha": 32, "learning_rate": 0.0002, "note": "ünïcödé ✓"}`),
		Metrics:  nil,
		// CreatedAt in a zone other than UTC, with digits below the microsecond.
		CreatedAt: created.In(time.FixedZone("UTC-7", -7*3600)),
		UpdatedAt: created,
	}
}

// storedTuneJob is what a store gives back for j: microsecond times in UTC, nil for
// empty JSON.
func storedTuneJob(j store.TuneJob) store.TuneJob {
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = utcOrZero(j.CreatedAt), utcOrZero(j.UpdatedAt), utcOrZero(j.FinishedAt)
	for _, raw := range []*json.RawMessage{&j.Dataset, &j.Params, &j.Metrics} {
		if len(*raw) == 0 {
			*raw = nil
		}
	}
	return j
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return utcMicros(t)
}

// tuneDiff describes how got differs from what a store gives back for want.
func tuneDiff(got, want store.TuneJob) string {
	want = storedTuneJob(want)
	var d []string
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{{"CreatedAt", got.CreatedAt, want.CreatedAt}, {"UpdatedAt", got.UpdatedAt, want.UpdatedAt},
		{"FinishedAt", got.FinishedAt, want.FinishedAt}} {
		if !f.got.Equal(f.want) || (!f.got.IsZero() && f.got.Location() != time.UTC) {
			d = append(d, fmt.Sprintf("%s %v, want %v (UTC)", f.name, f.got, f.want))
		}
	}
	for _, f := range []struct {
		name      string
		got, want json.RawMessage
	}{{"Dataset", got.Dataset, want.Dataset}, {"Params", got.Params, want.Params}, {"Metrics", got.Metrics, want.Metrics}} {
		if !rawEqual(f.got, f.want) {
			d = append(d, fmt.Sprintf("%s %q (nil %t), want %q as given", f.name, f.got, f.got == nil, f.want))
		}
	}
	g, w := got, want
	g.CreatedAt, g.UpdatedAt, g.FinishedAt, g.Dataset, g.Params, g.Metrics = time.Time{}, time.Time{}, time.Time{}, nil, nil, nil
	w.CreatedAt, w.UpdatedAt, w.FinishedAt, w.Dataset, w.Params, w.Metrics = time.Time{}, time.Time{}, time.Time{}, nil, nil, nil
	if !reflect.DeepEqual(g, w) {
		d = append(d, fmt.Sprintf("fields\n got %+v\nwant %+v", g, w))
	}
	return strings.Join(d, "; ")
}

func createTune(t *testing.T, s TuneJobStore, j store.TuneJob) {
	t.Helper()
	if err := s.CreateTuneJob(context.Background(), j); err != nil {
		t.Fatalf("CreateTuneJob %s: %v", j.ID, err)
	}
}

func getTune(t *testing.T, s TuneJobStore, id string) store.TuneJob {
	t.Helper()
	j, err := s.GetTuneJob(context.Background(), id)
	if err != nil {
		t.Fatalf("GetTuneJob %s: %v", id, err)
	}
	return j
}

func testTuneEmpty(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	if _, err := s.GetTuneJob(ctx, "tj-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTuneJob: err = %v, want ErrNotFound", err)
	}
	if js, err := s.ListTuneJobs(ctx, ""); err != nil || len(js) != 0 {
		t.Errorf("ListTuneJobs = %v, %v; want none", js, err)
	}
	j := tuneJob("tj-1", "wl-1", base)
	j.Status = store.TuneRunning
	if err := s.UpdateTuneJob(ctx, j); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateTuneJob of a job not stored: err = %v, want ErrNotFound", err)
	}
	if err := s.AppendTuneLog(ctx, "tj-1", base, []string{"x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AppendTuneLog of a job not stored: err = %v, want ErrNotFound", err)
	}
	if _, err := s.TuneLog(ctx, "tj-1", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TuneLog of a job not stored: err = %v, want ErrNotFound", err)
	}
}

func testTuneRoundTrip(t *testing.T, s TuneJobStore) {
	full := tuneJob("tj-full", "wl-1", base)
	full.ExternalID = "ftjob-abc123"
	full.Metrics = json.RawMessage(`{"progress": 0, "latest": {}}`)
	full.Error = "" // a new job has no error, but may carry one from a failed submit
	bare := store.TuneJob{ID: "tj-bare", Workload: "wl-2", Base: "b", Trainer: "t", CreatedAt: base}
	emptyJSON := tuneJob("tj-empty", "wl-1", base.Add(time.Second))
	emptyJSON.Dataset, emptyJSON.Params = json.RawMessage{}, json.RawMessage{}
	for _, j := range []store.TuneJob{full, bare, emptyJSON} {
		createTune(t, s, j)
		want := j
		if want.Status == "" {
			want.Status = store.TuneSubmitted // empty means submitted
		}
		if d := tuneDiff(getTune(t, s, j.ID), want); d != "" {
			t.Errorf("%s: round trip: %s", j.ID, d)
		}
	}
}

func testTuneCreateInvalid(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	ok := tuneJob("tj-1", "wl-1", base)
	createTune(t, s, ok)
	mutate := func(f func(j *store.TuneJob)) store.TuneJob {
		j := tuneJob("tj-2", "wl-1", base)
		f(&j)
		return j
	}
	tests := map[string]store.TuneJob{
		"no id":             mutate(func(j *store.TuneJob) { j.ID = "" }),
		"no workload":       mutate(func(j *store.TuneJob) { j.Workload = "" }),
		"no base":           mutate(func(j *store.TuneJob) { j.Base = "" }),
		"no trainer":        mutate(func(j *store.TuneJob) { j.Trainer = "" }),
		"running":           mutate(func(j *store.TuneJob) { j.Status = store.TuneRunning }),
		"finished":          mutate(func(j *store.TuneJob) { j.Status = store.TuneSucceeded }),
		"unknown status":    mutate(func(j *store.TuneJob) { j.Status = "paused" }),
		"invalid params":    mutate(func(j *store.TuneJob) { j.Params = json.RawMessage(`{"rank":`) }),
		"invalid dataset":   mutate(func(j *store.TuneJob) { j.Dataset = json.RawMessage(`nope`) }),
		"invalid metrics":   mutate(func(j *store.TuneJob) { j.Metrics = json.RawMessage(`[1,`) }),
		"id already stored": mutate(func(j *store.TuneJob) { j.ID = ok.ID }),
	}
	for name, j := range tests {
		if err := s.CreateTuneJob(ctx, j); err == nil {
			t.Errorf("%s: CreateTuneJob: no error", name)
		}
	}
	if err := s.CreateTuneJob(ctx, tests["id already stored"]); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateTuneJob of a stored id: err = %v, want ErrConflict", err)
	}
	js, err := s.ListTuneJobs(ctx, "")
	if err != nil || len(js) != 1 {
		t.Errorf("after refused creates, ListTuneJobs = %d jobs, %v; want the one valid job", len(js), err)
	}
	if d := tuneDiff(getTune(t, s, ok.ID), ok); d != "" {
		t.Errorf("the stored job changed: %s", d)
	}
}

func testTuneUpdate(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	j := tuneJob("tj-1", "wl-1", base)
	createTune(t, s, j)

	u := j
	u.Status = store.TuneRunning
	u.ExternalID = "cust-JGTaMbJMdqjJU8WbQdN9Q2"
	u.Dataset = json.RawMessage(`{"training_file":"file-abc","validation_file":"file-def"}`)
	u.Metrics = json.RawMessage(`{"progress": 0.25, "latest": {"loss": 1.25, "step": 10}}`)
	u.UpdatedAt = base.Add(time.Minute)
	// Immutable fields are ignored.
	u.Workload, u.Base, u.Trainer = "other", "other-base", "other-trainer"
	u.Params = json.RawMessage(`{"rank": 99}`)
	u.CreatedAt = base.Add(time.Hour)
	if err := s.UpdateTuneJob(ctx, u); err != nil {
		t.Fatalf("UpdateTuneJob: %v", err)
	}
	want := u
	want.Workload, want.Base, want.Trainer, want.Params, want.CreatedAt = j.Workload, j.Base, j.Trainer, j.Params, j.CreatedAt
	if d := tuneDiff(getTune(t, s, j.ID), want); d != "" {
		t.Errorf("after update: %s", d)
	}

	done := want
	done.Status, done.Adapter, done.FinishedAt = store.TuneSucceeded, "adapters/tj-1", base.Add(2*time.Hour)
	done.UpdatedAt, done.Metrics = done.FinishedAt, json.RawMessage(`{"final": {"train_loss": 0.5}}`)
	done.Dataset = nil // cleared
	if err := s.UpdateTuneJob(ctx, done); err != nil {
		t.Fatalf("UpdateTuneJob to succeeded: %v", err)
	}
	if d := tuneDiff(getTune(t, s, j.ID), done); d != "" {
		t.Errorf("after success: %s", d)
	}

	bad := done
	bad.ID = "tj-1"
	bad.Metrics = json.RawMessage(`{`)
	if err := s.UpdateTuneJob(ctx, bad); err == nil {
		t.Error("UpdateTuneJob with invalid metrics: no error")
	}
	if err := s.UpdateTuneJob(ctx, store.TuneJob{Status: store.TuneRunning}); err == nil {
		t.Error("UpdateTuneJob without an id: no error")
	}
}

func testTuneTransitions(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	tests := []struct {
		path []string // statuses to go through after submitted
		ok   []bool   // whether each step is accepted
	}{
		{[]string{store.TuneSubmitted, store.TuneRunning, store.TuneRunning, store.TuneSucceeded}, []bool{true, true, true, true}},
		{[]string{store.TuneFailed}, []bool{true}},
		{[]string{store.TuneCanceled}, []bool{true}},
		{[]string{store.TuneSucceeded}, []bool{true}},
		{[]string{store.TuneRunning, store.TuneSubmitted, store.TuneFailed}, []bool{true, false, true}},
		{[]string{"paused", "", store.TuneRunning}, []bool{false, false, true}},
	}
	for i, tt := range tests {
		j := tuneJob(fmt.Sprintf("tj-%d", i), "wl-1", base)
		createTune(t, s, j)
		current := store.TuneSubmitted
		for k, status := range tt.path {
			u := j
			u.Status = status
			err := s.UpdateTuneJob(ctx, u)
			if (err == nil) != tt.ok[k] {
				t.Errorf("%v: %s -> %q: err = %v, want accepted %t", tt.path, current, status, err, tt.ok[k])
			}
			if err == nil {
				current = status
			}
			if got := getTune(t, s, j.ID).Status; got != current {
				t.Errorf("%v: after %s -> %q, stored status %q, want %q", tt.path, current, status, got, current)
			}
		}
	}
}

func testTuneFinished(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	for _, final := range []string{store.TuneSucceeded, store.TuneFailed, store.TuneCanceled} {
		j := tuneJob("tj-"+final, "wl-1", base)
		createTune(t, s, j)
		f := j
		f.Status, f.Error, f.FinishedAt = final, "the reason", base.Add(time.Hour)
		if err := s.UpdateTuneJob(ctx, f); err != nil {
			t.Fatalf("%s: UpdateTuneJob: %v", final, err)
		}
		for _, next := range []string{store.TuneSubmitted, store.TuneRunning, store.TuneSucceeded, store.TuneFailed, store.TuneCanceled} {
			u := f
			u.Status, u.Error, u.Adapter = next, "late news", "late-adapter"
			if err := s.UpdateTuneJob(ctx, u); !errors.Is(err, store.ErrTuneJobFinished) {
				t.Errorf("%s -> %s: err = %v, want ErrTuneJobFinished", final, next, err)
			}
		}
		if d := tuneDiff(getTune(t, s, j.ID), f); d != "" {
			t.Errorf("%s job changed after it finished: %s", final, d)
		}
	}
}

func testTuneList(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	// Created out of order; c and d in the same microsecond, d created last.
	jobs := []store.TuneJob{
		tuneJob("tj-c", "wl-1", base.Add(2*time.Second)),
		tuneJob("tj-a", "wl-1", base),
		tuneJob("tj-b", "wl-2", base.Add(time.Second)),
		tuneJob("tj-d", "wl-2", base.Add(2*time.Second+100*time.Nanosecond)),
	}
	for _, j := range jobs {
		createTune(t, s, j)
	}
	names := func(js []store.TuneJob) []string {
		var out []string
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	for _, tt := range []struct {
		workload string
		want     []string
	}{{"", []string{"tj-d", "tj-c", "tj-b", "tj-a"}}, {"wl-1", []string{"tj-c", "tj-a"}}, {"wl-2", []string{"tj-d", "tj-b"}}, {"wl-9", nil}} {
		js, err := s.ListTuneJobs(ctx, tt.workload)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(names(js), tt.want) {
			t.Errorf("ListTuneJobs(%q) = %v, want %v", tt.workload, names(js), tt.want)
		}
	}
	js, _ := s.ListTuneJobs(ctx, "wl-1")
	if len(js) == 2 {
		if d := tuneDiff(js[1], jobs[1]); d != "" {
			t.Errorf("listed job: %s", d)
		}
	}
}

func testTuneLog(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	a, b := tuneJob("tj-a", "wl-1", base), tuneJob("tj-b", "wl-1", base)
	createTune(t, s, a)
	createTune(t, s, b)
	at1, at2 := base.Add(time.Second), base.Add(2*time.Second).In(time.FixedZone("UTC+1", 3600))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AppendTuneLog(ctx, a.ID, at1, []string{"step 1 loss 2.5", "", "ünïcödé ✓ 上游"}))
	must(s.AppendTuneLog(ctx, b.ID, at1, []string{"other job"}))
	must(s.AppendTuneLog(ctx, a.ID, at2, nil)) // nothing to add
	must(s.AppendTuneLog(ctx, a.ID, at2, []string{"step 2 loss 2.1", "done"}))

	got, err := s.TuneLog(ctx, a.ID, 0)
	must(err)
	want := []store.LogLine{
		{Seq: 1, At: utcMicros(at1), Text: "step 1 loss 2.5"}, {Seq: 2, At: utcMicros(at1), Text: ""}, {Seq: 3, At: utcMicros(at1), Text: "ünïcödé ✓ 上游"},
		{Seq: 4, At: utcMicros(at2), Text: "step 2 loss 2.1"}, {Seq: 5, At: utcMicros(at2), Text: "done"},
	}
	if !logEqual(got, want) {
		t.Errorf("TuneLog(a, 0) =\n%v\nwant\n%v", got, want)
	}
	got, err = s.TuneLog(ctx, a.ID, 3)
	must(err)
	if !logEqual(got, want[3:]) {
		t.Errorf("TuneLog(a, 3) = %v, want %v", got, want[3:])
	}
	got, err = s.TuneLog(ctx, a.ID, 5)
	must(err)
	if len(got) != 0 {
		t.Errorf("TuneLog(a, 5) = %v, want none", got)
	}
	got, err = s.TuneLog(ctx, b.ID, 0)
	must(err)
	if !logEqual(got, []store.LogLine{{Seq: 1, At: utcMicros(at1), Text: "other job"}}) {
		t.Errorf("TuneLog(b, 0) = %v, want its own one line numbered 1", got)
	}

	// A finished job still takes its last lines.
	f := a
	f.Status, f.FinishedAt = store.TuneFailed, base.Add(time.Hour)
	must(s.UpdateTuneJob(ctx, f))
	must(s.AppendTuneLog(ctx, a.ID, at2, []string{"stderr: Traceback"}))
	got, err = s.TuneLog(ctx, a.ID, 5)
	must(err)
	if len(got) != 1 || got[0].Seq != 6 || got[0].Text != "stderr: Traceback" {
		t.Errorf("TuneLog after a finished job's append = %v, want line 6", got)
	}
}

func logEqual(got, want []store.LogLine) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Seq != want[i].Seq || got[i].Text != want[i].Text || !got[i].At.Equal(want[i].At) ||
			got[i].At.Location() != time.UTC {
			return false
		}
	}
	return true
}

func testTuneLogConcurrent(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	j := tuneJob("tj-1", "wl-1", base)
	createTune(t, s, j)
	const writers, batches, size = 8, 5, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				lines := make([]string, size)
				for i := range lines {
					lines[i] = fmt.Sprintf("w%d b%d l%d", w, b, i)
				}
				if err := s.AppendTuneLog(ctx, j.ID, base, lines); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if _, err := s.TuneLog(ctx, j.ID, 0); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
	got, err := s.TuneLog(ctx, j.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*batches*size {
		t.Fatalf("TuneLog = %d lines, want %d", len(got), writers*batches*size)
	}
	seen := map[string]bool{}
	for i, l := range got {
		if l.Seq != int64(i+1) {
			t.Fatalf("line %d has Seq %d, want %d (no gaps, no repeats)", i, l.Seq, i+1)
		}
		seen[l.Text] = true
	}
	if len(seen) != writers*batches*size {
		t.Errorf("%d distinct lines, want %d", len(seen), writers*batches*size)
	}
	// Each batch's lines stay together and in order.
	for i := 0; i < len(got); i += size {
		prefix, _, _ := strings.Cut(got[i].Text, " l")
		for k := range size {
			if want := fmt.Sprintf("%s l%d", prefix, k); got[i+k].Text != want {
				t.Fatalf("line %d = %q, want %q: a batch was interleaved", i+k, got[i+k].Text, want)
			}
		}
	}
}

func testTuneFinishRace(t *testing.T, s TuneJobStore) {
	ctx := context.Background()
	const rounds = 10
	for r := range rounds {
		j := tuneJob(fmt.Sprintf("tj-%d", r), "wl-1", base)
		createTune(t, s, j)
		finals := []string{store.TuneSucceeded, store.TuneCanceled, store.TuneFailed}
		results := make([]error, len(finals))
		var wg sync.WaitGroup
		for i, final := range finals {
			wg.Go(func() {
				u := j
				u.Status, u.Error = final, "by "+final
				results[i] = s.UpdateTuneJob(ctx, u)
			})
		}
		wg.Wait()
		won := ""
		for i, err := range results {
			switch {
			case err == nil && won != "":
				t.Errorf("round %d: both %s and %s finished the job", r, won, finals[i])
			case err == nil:
				won = finals[i]
			case !errors.Is(err, store.ErrTuneJobFinished):
				t.Errorf("round %d: %s lost with %v, want ErrTuneJobFinished", r, finals[i], err)
			}
		}
		if got := getTune(t, s, j.ID); got.Status != won || got.Error != "by "+won {
			t.Errorf("round %d: stored %s (%q), want the winner %s", r, got.Status, got.Error, won)
		}
	}
}
