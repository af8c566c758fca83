package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

// evalFixture is a store holding the bundled tau-bench calls, with the calls whose
// reference called get_reservation_details saved as one workload, and a config whose
// models are served by the simulator: gpt-4o (the reference) and the candidates.
type evalFixture struct {
	db, config, upstream string
	workload             string
	calls                map[string]store.Call // the workload's calls by id
}

// evalTemplate is the store every evalFixture starts from, built once per test binary:
// importing and tokenising the tau-bench calls is the slow part (tens of seconds under
// the race detector), so each fixture copies the file instead.
var evalTemplate struct {
	once  sync.Once
	dir   string
	calls map[string]store.Call // the workload's calls by id
	err   error
}

const evalWorkload = "wl-reservation-details"

// evalTemplateDB builds the template: the tau-bench calls whose reference called
// get_reservation_details, imported and saved as one workload.
func evalTemplateDB(t *testing.T) (string, map[string]store.Call) {
	t.Helper()
	evalTemplate.once.Do(func() {
		e := &evalTemplate
		calls, err := dataset.BundledCalls(dataset.NameTauBench)
		if err != nil {
			e.err = err
			return
		}
		var picked []dataset.Call
		for _, c := range calls {
			if len(c.Answers) > 0 && len(c.Answers[0].Message.ToolCalls) > 0 &&
				c.Answers[0].Message.ToolCalls[0].Function.Name == "get_reservation_details" {
				picked = append(picked, c)
			}
		}
		if e.dir, e.err = os.MkdirTemp("", "downshift-eval-template-"); e.err != nil {
			return
		}
		ctx := context.Background()
		st, err := openStore(ctx, "sqlite", filepath.Join(e.dir, "downshift.db"))
		if err != nil {
			e.err = err
			return
		}
		defer st.Close()
		var imported []store.Call
		im := dataset.Importer{Call: func(c store.Call) error { imported = append(imported, c); return nil }}
		if e.err = im.TauBench(picked); e.err != nil {
			return
		}
		if _, e.err = st.ImportCalls(ctx, imported); e.err != nil {
			return
		}
		e.calls = map[string]store.Call{}
		assign := map[string]string{}
		for _, c := range imported {
			if bytes.Contains(c.Response, []byte(`"name":"get_reservation_details"`)) {
				assign[c.ID] = evalWorkload
				e.calls[c.ID] = c
			}
		}
		if len(assign) < 300 {
			e.err = fmt.Errorf("only %d get_reservation_details calls", len(assign))
			return
		}
		if e.err = st.SaveWorkloads(ctx, store.WorkloadRun{ID: "run1", At: time.Now()},
			[]store.Workload{{ID: evalWorkload, Label: "get_reservation_details", Calls: len(assign)}}); e.err != nil {
			return
		}
		e.err = st.AssignWorkloads(ctx, assign)
	})
	if evalTemplate.err != nil {
		t.Fatal(evalTemplate.err)
	}
	return filepath.Join(evalTemplate.dir, "downshift.db"), evalTemplate.calls
}

func newEvalFixture(t *testing.T, candidates map[string]sim.Degrade, prices map[string][2]float64) *evalFixture {
	t.Helper()
	template, calls := evalTemplateDB(t)
	all, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	f := &evalFixture{workload: evalWorkload, calls: calls}
	f.upstream = startSim(t, sim.Options{Mode: sim.ModeReplay, Calls: all, Candidates: candidates, Seed: 1})
	dir := t.TempDir()
	f.db = filepath.Join(dir, "downshift.db")
	raw, err := os.ReadFile(template) // closed, so its WAL is checkpointed into the file
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.db, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var models strings.Builder
	for name, p := range prices {
		role := "candidate"
		if name == "gpt-4o" {
			role = "reference"
		}
		fmt.Fprintf(&models, "  - {name: %s, backend: sim, role: %s, price: {input_per_mtok: %g, output_per_mtok: %g}}\n", name, role, p[0], p[1])
	}
	f.config = filepath.Join(dir, "downshift.yaml")
	yaml := fmt.Sprintf("store: {driver: sqlite, dsn: %q}\nbackends:\n  - {name: sim, url: %q}\nmodels:\n%s", f.db, f.upstream, models.String())
	if err := os.WriteFile(f.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// degraded asks the simulator directly, for each test call, whether it degrades the
// candidate's answer: the true failure rate on exactly the calls evaluated.
func (f *evalFixture) degraded(t *testing.T, model string, ids []string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		c := f.calls[id]
		var req map[string]any
		if err := json.Unmarshal(c.Request, &req); err != nil {
			t.Fatal(err)
		}
		req["model"] = model
		body, _ := json.Marshal(req)
		resp, err := http.Post(f.upstream+"/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("call %s: status %d", id, resp.StatusCode)
		}
		if resp.Header.Get(sim.HeaderDegraded) != "" {
			n++
		}
	}
	return n
}

// TestEvalRanksDegradedCandidatesAndRecommends evaluates a real tau-bench workload,
// over real sockets, against two simulated candidates that spoil GPT-4o's recorded
// answers at known rates: the cheap one often, the other rarely. The measured
// failure rates must fall inside the reported intervals, and the rarely-wrong one
// must be recommended although the other is cheaper. The threshold is 90%: at 95%,
// 188 calls cannot show with 95% confidence that a model failing 2% of them is good
// enough (the interval's lower bound is about 0.95).
func TestEvalRanksDegradedCandidatesAndRecommends(t *testing.T) {
	f := newEvalFixture(t,
		map[string]sim.Degrade{"tiny-1b": {Rate: 0.30}, "small-8b": {Rate: 0.02}},
		map[string][2]float64{"gpt-4o": {2.5, 10}, "tiny-1b": {0.01, 0.02}, "small-8b": {0.05, 0.10}})
	out := t.TempDir()
	var stdout strings.Builder
	o := evalOptions{workload: f.workload, candidates: []string{"tiny-1b", "small-8b"},
		variants: []string{eval.VariantZeroShot, eval.VariantInContext}, k: 3, size: 200, seed: 1,
		concurrency: 16, attempts: 4, threshold: 0.90, out: out}
	if err := runEval(context.Background(), &storeFlags{config: f.config}, o, &stdout, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	t.Log("\n" + stdout.String())
	raw, err := os.ReadFile(filepath.Join(out, "eval-"+f.workload+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var lb eval.Leaderboard
	if err := json.Unmarshal(raw, &lb); err != nil {
		t.Fatal(err)
	}
	if html, err := os.ReadFile(filepath.Join(out, "eval-"+f.workload+".html")); err != nil || !bytes.Contains(html, []byte("small-8b")) {
		t.Errorf("HTML leaderboard not written: %v", err)
	}

	st, err := openStore(context.Background(), "sqlite", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set, err := st.GetEvalSet(context.Background(), lb.SetID)
	if err != nil {
		t.Fatal(err)
	}
	var test []string
	for _, m := range set.Members {
		if m.Split == store.SplitTest {
			test = append(test, m.CallID)
		}
	}
	if len(test) < 150 {
		t.Fatalf("test split has %d calls", len(test))
	}
	if len(lb.Rows) != 4 {
		t.Fatalf("rows = %d, want 2 candidates x 2 variants", len(lb.Rows))
	}
	for model, rate := range map[string]float64{"tiny-1b": 0.30, "small-8b": 0.02} {
		bad := f.degraded(t, model, test)
		failRate := float64(bad) / float64(len(test))
		for _, r := range lb.Rows {
			if r.Candidate != model {
				continue
			}
			if r.Calls != len(test) || r.Errors != 0 {
				t.Errorf("%s/%s: %d calls, %d errors; want %d, 0", model, r.Variant, r.Calls, r.Errors, len(test))
			}
			if r.Simulated != r.Calls {
				t.Errorf("%s/%s: %d of %d answers marked simulated", model, r.Variant, r.Simulated, r.Calls)
			}
			pass := 1 - failRate
			if pass < r.PassCI.Lo || pass > r.PassCI.Hi {
				t.Errorf("%s/%s: measured pass rate %.3f (%d of %d degraded) outside the reported interval [%.3f, %.3f]",
					model, r.Variant, pass, bad, len(test), r.PassCI.Lo, r.PassCI.Hi)
			}
			// The configured rate too: with this seed it is inside, as it is 95% of the time.
			if 1-rate < r.PassCI.Lo || 1-rate > r.PassCI.Hi {
				t.Errorf("%s/%s: configured pass rate %.2f outside [%.3f, %.3f]", model, r.Variant, 1-rate, r.PassCI.Lo, r.PassCI.Hi)
			}
			if pass < r.QualityCI.Lo-0.02 || r.Quality > pass+0.05 {
				t.Errorf("%s/%s: quality %.3f [%.3f, %.3f] against a measured pass rate of %.3f", model, r.Variant,
					r.Quality, r.QualityCI.Lo, r.QualityCI.Hi, pass)
			}
			t.Logf("%s/%s: degraded %d of %d; pass rate %.3f [%.3f, %.3f]; quality %.3f [%.3f, %.3f]", model, r.Variant,
				bad, len(test), r.PassRate, r.PassCI.Lo, r.PassCI.Hi, r.Quality, r.QualityCI.Lo, r.QualityCI.Hi)
		}
	}
	rec := lb.Recommendation
	if rec.KeepReference || rec.Candidate != "small-8b" {
		t.Errorf("recommendation = %+v, want small-8b", rec)
	}
	if !lb.Simulated {
		t.Error("the leaderboard does not say its answers were simulated")
	}

	// A second run reuses the set and, finding nothing to resume, replays afresh.
	stdout.Reset()
	o.variants = []string{eval.VariantZeroShot}
	if err := runEval(context.Background(), &storeFlags{config: f.config}, o, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "reused") {
		t.Errorf("second run did not reuse the eval set:\n%s", stdout.String())
	}
}

// TestEvalWarnsOfUnpricedCandidates: a candidate without a price is costed at $0, and
// the command says that its saving is not real.
func TestEvalWarnsOfUnpricedCandidates(t *testing.T) {
	f := newEvalFixture(t, map[string]sim.Degrade{"free-1b": {}}, map[string][2]float64{"gpt-4o": {2.5, 10}, "free-1b": {0, 0}})
	var out strings.Builder
	o := evalOptions{workload: f.workload, candidates: []string{"free-1b"}, variants: []string{eval.VariantZeroShot},
		size: 20, seed: 1, concurrency: 4, attempts: 1, threshold: 0.95}
	if err := runEval(context.Background(), &storeFlags{config: f.config}, o, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "warning: free-1b has no price in the catalog") {
		t.Errorf("no warning:\n%s", out.String())
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if evalTemplate.dir != "" {
		os.RemoveAll(evalTemplate.dir)
	}
	os.Exit(code)
}
