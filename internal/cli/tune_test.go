package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/store"
)

// withTrainer adds a peft trainer that runs the PEFT driver tests' stand-in for
// train.py (it speaks the script's protocol without torch), its adapters served by the
// simulator's backend.
func (f *evalFixture) withTrainer(t *testing.T) {
	t.Helper()
	script, err := filepath.Abs("../tune/testdata/fake_train.sh")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.OpenFile(f.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	fmt.Fprintf(cfg, "tune:\n  trainers:\n    - {name: local, kind: peft, python: sh, script: %q, poll_interval: 20ms, serve_backend: sim}\n", script)
}

// TestTuneExportsTrainsRegistersAndEvaluates runs downshift tune end to end with the
// stand-in trainer: the workload is exported (test calls left out), the job runs to
// success with its log stored, the adapter is registered as a candidate on the serving
// backend, and it is evaluated at once on the workload's eval set.
func TestTuneExportsTrainsRegistersAndEvaluates(t *testing.T) {
	f := newEvalFixture(t, nil, map[string][2]float64{"gpt-4o": {2.5, 10}, "small-8b": {0.05, 0.1}})
	f.withTrainer(t)
	dir := t.TempDir()
	var out strings.Builder
	o := tuneOptions{workload: f.workload, base: "small-8b", trainer: "local", dir: dir,
		evalVariants: []string{eval.VariantZeroShot}}
	if err := runTune(context.Background(), &storeFlags{config: f.config}, o, &out, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"succeeded: adapter", "Added model", "recommendation:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	st, err := openStore(context.Background(), "sqlite", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	jobs, err := st.ListTuneJobs(context.Background(), f.workload)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %d, %v", len(jobs), err)
	}
	job := jobs[0]
	if job.Status != store.TuneSucceeded || job.Adapter == "" {
		t.Fatalf("job %+v", job)
	}
	if lines, _ := st.TuneLog(context.Background(), job.ID, 0); len(lines) == 0 {
		t.Error("no log lines stored")
	}
	// The export left the eval set's test calls out of train.
	set, err := st.LatestEvalSet(context.Background(), f.workload)
	if err != nil {
		t.Fatal(err)
	}
	train, err := os.ReadFile(filepath.Join(dir, "data", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Files []struct {
			Split   string   `json:"split"`
			CallIDs []string `json:"call_ids"`
		} `json:"files"`
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "data", "manifest.json"))
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	inTrain := map[string]bool{}
	for _, fl := range manifest.Files {
		if fl.Split == store.SplitTrain {
			for _, id := range fl.CallIDs {
				inTrain[id] = true
			}
		}
	}
	if len(inTrain) == 0 || len(train) == 0 {
		t.Fatal("nothing exported to train")
	}
	for _, m := range set.Members {
		if m.Split == store.SplitTest && inTrain[m.CallID] {
			t.Fatalf("test call %s is in train", m.CallID)
		}
	}
	// Registered as a candidate, audited, and evaluated.
	models, err := st.ListModels(context.Background())
	if err != nil || len(models) != 1 {
		t.Fatalf("runtime models: %d, %v", len(models), err)
	}
	entry, err := config.ParseCatalogEntry(models[0].Spec)
	if err != nil || entry.Model.Backend != "sim" || entry.Model.Role != config.RoleCandidate || entry.Model.Price.InputPerMTok != 0.05 {
		t.Errorf("registered %+v, %v", entry, err)
	}
	runs, err := st.ListEvalRuns(context.Background(), f.workload)
	if err != nil || len(runs) != 1 || runs[0].Status != store.EvalFinished {
		t.Fatalf("eval runs: %+v, %v", runs, err)
	}
	var lb eval.Leaderboard
	if err := json.Unmarshal(runs[0].Leaderboard, &lb); err != nil || len(lb.Rows) != 1 || lb.Rows[0].Candidate != models[0].Name {
		t.Errorf("leaderboard rows %+v, %v", lb.Rows, err)
	}
	audit, err := st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[store.AuditAction]bool{}
	for _, a := range audit {
		actions[a.Action] = true
	}
	if !actions[store.AuditExport] || !actions[store.AuditAddModel] {
		t.Errorf("audit actions %v, want export and add_model", actions)
	}

	// status and logs read the job back.
	var logs strings.Builder
	if err := runTuneLogs(context.Background(), st, job.ID, true, 0, &logs); err != nil || !strings.Contains(logs.String(), "succeeded") {
		t.Errorf("logs: %v\n%s", err, logs.String())
	}
}

func TestTuneFailedJobRegistersNothing(t *testing.T) {
	f := newEvalFixture(t, nil, map[string][2]float64{"gpt-4o": {2.5, 10}})
	f.withTrainer(t)
	t.Setenv("FAKE_MODE", "fail")
	var out strings.Builder
	err := runTune(context.Background(), &storeFlags{config: f.config},
		tuneOptions{workload: f.workload, base: "tiny-random-llama", trainer: "local", dir: t.TempDir()}, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "failed") {
		t.Fatalf("err %v\n%s", err, out.String())
	}
	st, err := openStore(context.Background(), "sqlite", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if models, _ := st.ListModels(context.Background()); len(models) != 0 {
		t.Errorf("a failed job registered %d models", len(models))
	}
	jobs, _ := st.ListTuneJobs(context.Background(), "")
	if len(jobs) != 1 || jobs[0].Status != store.TuneFailed || jobs[0].Error == "" {
		t.Errorf("jobs %+v", jobs)
	}
}

func TestLoadAdapterAsksVLLM(t *testing.T) {
	var got map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/load_lora_adapter" {
			http.Error(w, "not found", 404)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		if got["lora_name"] == "refuse" {
			http.Error(w, `{"error":"runtime LoRA updating is disabled"}`, 400)
			return
		}
		fmt.Fprint(w, "Success")
	}))
	defer srv.Close()
	b := config.DefaultBackend()
	b.Name, b.URL = "vllm", srv.URL+"/v1"
	if err := loadAdapter(context.Background(), b, "wl-1", "out/adapter"); err != nil {
		t.Fatal(err)
	}
	if got["lora_name"] != "wl-1" || !filepath.IsAbs(got["lora_path"]) || !strings.HasSuffix(got["lora_path"], "out/adapter") {
		t.Errorf("request %v", got)
	}
	err := loadAdapter(context.Background(), b, "refuse", "x")
	if err == nil || !strings.Contains(err.Error(), "VLLM_ALLOW_RUNTIME_LORA_UPDATING") || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("refusal: %v", err)
	}
}

// TestTuneDryRunValidatesWithTheRealScript exports the workload and runs the bundled
// train.py's dry run on it (python3, no ML library needed); no job is started.
func TestTuneDryRunValidatesWithTheRealScript(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (.ci/run installs it)")
	}
	f := newEvalFixture(t, nil, map[string][2]float64{"gpt-4o": {2.5, 10}})
	script, err := filepath.Abs("../../trainers/peft/train.py")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.OpenFile(f.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(cfg, "tune:\n  trainers:\n    - {name: local, kind: peft, script: %q}\n", script)
	cfg.Close()
	var out strings.Builder
	o := tuneOptions{workload: f.workload, base: "tiny-random-llama", trainer: "local", dir: t.TempDir(), dryRun: true}
	if err := runTune(context.Background(), &storeFlags{config: f.config}, o, &out, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "dry run: ok") || !strings.Contains(out.String(), "total_steps") {
		t.Errorf("output:\n%s", out.String())
	}
	st, err := openStore(context.Background(), "sqlite", f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if jobs, _ := st.ListTuneJobs(context.Background(), ""); len(jobs) != 0 {
		t.Errorf("a dry run started %d jobs", len(jobs))
	}
}
