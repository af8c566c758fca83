package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
)

// Options configure Evaluate.
type Options struct {
	Store   store.Store
	Keyring *seal.Keyring // opens sealed calls and seals candidate answers; nil: none
	// WorkloadID is the workload evaluated (store.Call.WorkloadID).
	WorkloadID string
	// WorkloadLabel names the workload on the leaderboard.
	WorkloadLabel string
	Candidates    []*backend.Model
	// Catalog prices reference answers recorded without a cost (imported calls) from
	// their served model's price and tokens; nil leaves them unpriced.
	Catalog *backend.Catalog
	// Variants to try each candidate in; empty means zero-shot only.
	Variants []string
	// K is the number of in-context examples. Default 3.
	K int
	// Set says how a new eval set is drawn. NewSet draws one even when the workload
	// has one already; otherwise the latest is reused, so reruns compare like with
	// like.
	Set    SetOptions
	NewSet bool
	// NewRun starts a new run even when an interrupted run with the same set and
	// parameters could be resumed.
	NewRun bool
	// Runner settings (see Runner): Concurrency, MaxAttempts, Backoff, MaxBackoff.
	Concurrency, MaxAttempts int
	Backoff, MaxBackoff      time.Duration
	Judge                    *Judge
	// Threshold is the share of the reference's quality a candidate must reach.
	// Default 0.95.
	Threshold float64
	// Progress, when set, is told the number of calls to replay and then each result.
	Progress func(done, total int)
	// Logf, when set, is told what Evaluate decides (set drawn or reused, run resumed).
	Logf func(format string, args ...any)
}

// Outcome is what Evaluate did and found.
type Outcome struct {
	Set         store.EvalSet
	SetParams   SetParams
	SetReused   bool
	Run         store.EvalRun
	Resumed     int // results already stored when the run was resumed
	Stats       Stats
	Leaderboard Leaderboard
	Skipped     int // workload calls that could not be a reference (failed calls, ground truth)
}

// runParams are the parameters a resumed run must share with the interrupted one.
type runParams struct {
	Candidates []string `json:"candidates"`
	Variants   []string `json:"variants"`
	K          int      `json:"k,omitempty"`
	Judge      string   `json:"judge,omitempty"`
	Threshold  float64  `json:"threshold"`
}

// Evaluate draws (or reuses) the workload's eval set, replays its test calls against
// every candidate in every variant, resuming an interrupted run with the same
// parameters, and ranks the candidates. The run, its results and its leaderboard are
// stored. When ctx ends mid-run, what was answered is kept and the error is ctx's:
// running Evaluate again with the same options picks up where it stopped.
func Evaluate(ctx context.Context, o Options) (*Outcome, error) {
	if len(o.Candidates) == 0 {
		return nil, errors.New("eval: no candidates")
	}
	if len(o.Variants) == 0 {
		o.Variants = []string{VariantZeroShot}
	}
	for _, v := range o.Variants {
		if v != VariantZeroShot && v != VariantInContext {
			return nil, fmt.Errorf("eval: variant %q: want %s or %s", v, VariantZeroShot, VariantInContext)
		}
	}
	if o.K <= 0 {
		o.K = 3
	}
	if o.Threshold <= 0 {
		o.Threshold = 0.95
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	out := &Outcome{}
	calls, skipped, err := loadCalls(ctx, o.Store, o.Keyring, o.WorkloadID)
	if err != nil {
		return nil, err
	}
	out.Skipped = skipped
	if o.Catalog != nil {
		for _, c := range calls {
			if m, ok := o.Catalog.Resolve(c.Reference.Model); ok && c.Reference.CostUSD == 0 {
				c.Reference.CostUSD = m.Cost(c.PromptTokens, c.CompletionTokens, c.CachedTokens)
			}
		}
	}

	// The eval set: the latest, or a new one.
	set, err := o.Store.LatestEvalSet(ctx, o.WorkloadID)
	switch {
	case err == nil && !o.NewSet:
		out.SetReused = true
		_ = json.Unmarshal(set.Params, &out.SetParams)
		logf("eval set %s (drawn %s): reused, so this run compares with earlier ones", set.ID, set.CreatedAt.Format(time.DateTime))
	case err == nil || errors.Is(err, store.ErrNotFound):
		list := make([]*Call, 0, len(calls))
		for _, c := range calls {
			list = append(list, c)
		}
		now := time.Now()
		set, out.SetParams, err = DrawSet("es_"+ulid.Make().String(), o.WorkloadID, list, o.Set, now)
		if err != nil {
			return nil, err
		}
		if err := o.Store.SaveEvalSet(ctx, set); err != nil {
			return nil, err
		}
		p := out.SetParams
		logf("eval set %s: %d calls (%d duplicates left out) in %d conversations: %d test, %d validation, %d train",
			set.ID, p.Calls, p.Duplicates, p.Groups, p.Split[store.SplitTest], p.Split[store.SplitValidation], p.Split[store.SplitTrain])
	default:
		return nil, err
	}
	out.Set = set

	var test, train []*Call
	missing := 0
	for _, m := range set.Members {
		c, ok := calls[m.CallID]
		if !ok {
			missing++
			continue
		}
		switch m.Split {
		case store.SplitTest:
			test = append(test, c)
		case store.SplitTrain:
			train = append(train, c)
		}
	}
	if missing > 0 {
		logf("%d calls of the eval set are no longer in the workload; they are left out", missing)
	}
	if len(test) == 0 {
		return nil, fmt.Errorf("eval: eval set %s has no test calls left in workload %s", set.ID, o.WorkloadID)
	}

	// The run: resume an interrupted one with the same parameters, or start one.
	rp := runParams{Variants: o.Variants, Threshold: o.Threshold}
	for _, c := range o.Candidates {
		rp.Candidates = append(rp.Candidates, c.Name)
	}
	if slices.Contains(o.Variants, VariantInContext) {
		rp.K = o.K
	}
	if o.Judge != nil {
		rp.Judge = o.Judge.Model.Name
	}
	params, err := json.Marshal(rp)
	if err != nil {
		return nil, err
	}
	run, done, err := startRun(ctx, o, set, params)
	if err != nil {
		return nil, err
	}
	out.Run, out.Resumed = run, len(done)
	if len(done) > 0 {
		logf("resuming run %s: %d of %d answers already stored", run.ID, len(done), len(test)*len(o.Candidates)*len(o.Variants))
	}

	var picker *ExamplePicker
	if slices.Contains(o.Variants, VariantInContext) {
		if len(train) == 0 {
			return nil, fmt.Errorf("eval: the in-context variant needs train calls; eval set %s has none", set.ID)
		}
		if picker, err = NewExamplePicker(train); err != nil {
			return nil, err
		}
	}
	// Call by call, so that every candidate and variant meets the same load over the
	// run and their latencies compare fairly.
	var jobs []Job
	for _, c := range test {
		for _, cand := range o.Candidates {
			for _, v := range o.Variants {
				if done[resultKey{cand.Name, v, c.ID}] {
					continue
				}
				j := Job{Candidate: cand, Variant: v, Call: c}
				if v == VariantInContext {
					j.Examples = picker.Pick(c, o.K)
				}
				jobs = append(jobs, j)
			}
		}
	}

	counter, err := tokens.New()
	if err != nil {
		return nil, err
	}
	r := &Runner{RunID: run.ID, Concurrency: o.Concurrency, MaxAttempts: o.MaxAttempts, Backoff: o.Backoff,
		MaxBackoff: o.MaxBackoff, Judge: o.Judge, Tokens: counter, Save: o.Store.SaveEvalResults,
		Schemas: compare.NewSchemas(compare.SchemasOptions{})}
	if o.Keyring.Enabled() {
		kr := o.Keyring
		r.Seal = func(res *store.EvalResult) error {
			if len(res.Answer) == 0 {
				return nil
			}
			sealed, err := kr.Seal(kr.Active(), res.Answer, AnswerAAD(*res))
			if err != nil {
				return err
			}
			res.Answer, res.KeyID = sealed, kr.Active()
			return nil
		}
	}
	if o.Progress != nil {
		total := len(jobs)
		o.Progress(0, total)
		r.Progress = func(d int) { o.Progress(d, total) }
	}
	if out.Stats, err = r.Run(ctx, jobs); err != nil {
		return out, err
	}

	results, err := o.Store.ListEvalResults(ctx, run.ID)
	if err != nil {
		return out, err
	}
	measured, err := priceFromThroughput(ctx, o, results)
	if err != nil {
		return out, err
	}
	refs := make([]Reference, len(test))
	for i, c := range test {
		refs[i] = c.Reference
	}
	out.Leaderboard = Build(Input{RunID: run.ID, SetID: set.ID, WorkloadID: o.WorkloadID, Workload: o.WorkloadLabel,
		At: time.Now(), References: refs, Results: results, Threshold: o.Threshold})
	for i := range out.Leaderboard.Rows {
		out.Leaderboard.Rows[i].MeasuredTPS = measured[out.Leaderboard.Rows[i].Candidate]
	}
	lb, err := json.Marshal(out.Leaderboard)
	if err != nil {
		return out, err
	}
	run.Status, run.FinishedAt, run.Leaderboard = store.EvalFinished, time.Now(), lb
	if err := o.Store.SaveEvalRun(ctx, run); err != nil {
		return out, err
	}
	out.Run = run
	return out, nil
}

// AnswerAAD binds a sealed candidate answer to its result, so that it cannot be
// moved to another result's row unnoticed.
func AnswerAAD(r store.EvalResult) []byte {
	return seal.AAD(r.RunID+"/"+r.Candidate+"/"+r.Variant+"/"+r.CallID, "answer")
}

type resultKey struct{ candidate, variant, call string }

// startRun returns the run to resume (the newest unfinished run of the set with the
// same parameters) with the results it has, or a new run.
func startRun(ctx context.Context, o Options, set store.EvalSet, params []byte) (store.EvalRun, map[resultKey]bool, error) {
	done := map[resultKey]bool{}
	if !o.NewRun {
		runs, err := o.Store.ListEvalRuns(ctx, o.WorkloadID)
		if err != nil {
			return store.EvalRun{}, nil, err
		}
		for _, r := range runs {
			if r.Status != store.EvalRunning || r.SetID != set.ID || !bytes.Equal(r.Params, params) {
				continue
			}
			rs, err := o.Store.ListEvalResults(ctx, r.ID)
			if err != nil {
				return store.EvalRun{}, nil, err
			}
			for _, x := range rs {
				done[resultKey{x.Candidate, x.Variant, x.CallID}] = true
			}
			return r, done, nil
		}
	}
	run := store.EvalRun{ID: "ev_" + ulid.Make().String(), SetID: set.ID, WorkloadID: o.WorkloadID,
		StartedAt: time.Now(), Status: store.EvalRunning, Params: params}
	return run, done, o.Store.SaveEvalRun(ctx, run)
}

// loadCalls reads the workload's calls, opens them and keeps those that can be a
// reference, by id.
func loadCalls(ctx context.Context, st store.Store, kr *seal.Keyring, workloadID string) (map[string]*Call, int, error) {
	stored, err := st.ListCalls(ctx, store.Filter{WorkloadID: workloadID, WithPayloads: true, Ascending: true, Limit: 1 << 30})
	if err != nil {
		return nil, 0, err
	}
	if len(stored) == 0 {
		return nil, 0, fmt.Errorf("eval: no calls in workload %q (run downshift analyze first, and check the id with downshift workloads)", workloadID)
	}
	calls := make(map[string]*Call, len(stored))
	skipped := 0
	for i := range stored {
		c := &stored[i]
		if err := kr.OpenCall(c); err != nil {
			return nil, 0, fmt.Errorf("%w (pass --config with the privacy.encryption keys that sealed it)", err)
		}
		ec, err := FromStoreCall(c)
		if errors.Is(err, ErrNotEvaluable) {
			skipped++
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		calls[ec.ID] = ec
	}
	return calls, skipped, nil
}

// priceFromThroughput prices the answers of candidates priced per GPU-hour whose
// throughput is not configured, from the throughput measured in this run, and stores
// the new costs. The throughput is the tokens a candidate processed (prompt and
// completion) per second of request time, times the calls it had in flight on
// average (its share of the run's concurrency): what one replica served under this
// run's load, an estimate to replace with a load test's figure in the catalog.
func priceFromThroughput(ctx context.Context, o Options, results []store.EvalResult) (map[string]float64, error) {
	measured := map[string]float64{}
	conc := o.Concurrency
	if conc <= 0 {
		conc = 8
	}
	for _, c := range o.Candidates {
		if c.Price.GPUHourUSD <= 0 || c.Price.ThroughputTPS > 0 {
			continue
		}
		var tokens int
		var busy time.Duration
		n := 0
		for _, r := range results {
			if r.Candidate == c.Name && r.Error == "" {
				tokens += r.PromptTokens + r.CompletionTokens
				busy += r.Latency
				n++
			}
		}
		if n == 0 || busy <= 0 || tokens == 0 {
			continue
		}
		inFlight := float64(conc) / float64(len(o.Candidates))
		tps := float64(tokens) / busy.Seconds() * inFlight
		measured[c.Name] = tps
		perToken := c.Price.GPUHourUSD / 3600 / tps
		var changed []store.EvalResult
		for i := range results {
			r := &results[i]
			if r.Candidate == c.Name && r.Error == "" {
				r.CostUSD = float64(r.PromptTokens+r.CompletionTokens) * perToken
				changed = append(changed, *r)
			}
		}
		if err := o.Store.SaveEvalResults(ctx, changed); err != nil {
			return nil, err
		}
	}
	return measured, nil
}
