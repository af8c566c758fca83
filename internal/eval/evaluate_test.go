package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// storeWithWorkload is a SQLite store holding n answered calls of workload "wl", each
// its own conversation, whose reference called get_user {"q": "question i"}.
func storeWithWorkload(t *testing.T, n int) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "eval.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var calls []store.Call
	assign := map[string]string{}
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		c := toolCall(fmt.Sprintf("call%03d", i), fmt.Sprintf("question %d", i))
		resp, _ := json.Marshal(openai.ChatCompletion{Object: "chat.completion", Model: "gpt-4o",
			Choices: []openai.Choice{{Message: c.Answer, FinishReason: "tool_calls"}}})
		calls = append(calls, store.Call{ID: c.ID, StartedAt: at, FinishedAt: at, RequestedModel: "gpt-4o", ServedModel: "gpt-4o",
			Route: store.RouteReference, Status: 200, Latency: time.Second, TTFT: 500 * time.Millisecond, CostUSD: 0.01,
			PromptTokens: 1000, CompletionTokens: 20, Request: c.Request, Response: resp})
		assign[c.ID] = "wl"
	}
	// One failed call: not evaluable, skipped.
	calls = append(calls, store.Call{ID: "failed", StartedAt: at, FinishedAt: at, Status: 502, Request: []byte(`{}`), Response: []byte(`{}`)})
	assign["failed"] = "wl"
	if err := st.InsertCalls(context.Background(), calls); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveWorkloads(context.Background(), store.WorkloadRun{ID: "r", At: at}, []store.Workload{{ID: "wl", Label: "get_user"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.AssignWorkloads(context.Background(), assign); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestEvaluateResumesAnInterruptedRun(t *testing.T) {
	st := storeWithWorkload(t, 60)
	up := &upstream{tries: map[string]int{}}
	srv := httptest.NewServer(up)
	defer srv.Close()
	m := testModel(t, srv.URL)
	opts := Options{Store: st, WorkloadID: "wl", WorkloadLabel: "get_user", Candidates: []*backend.Model{m},
		Variants: []string{VariantZeroShot, VariantInContext}, Set: SetOptions{TestSize: 20}, Concurrency: 2}

	// Interrupt after 15 of the 40 answers.
	ctx, cancel := context.WithCancel(context.Background())
	interrupted := opts
	interrupted.Progress = func(done, total int) {
		if done == 15 {
			cancel()
		}
	}
	first, err := Evaluate(ctx, interrupted)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	if first.Skipped != 1 {
		t.Errorf("skipped = %d, want the failed call", first.Skipped)
	}
	stored, err := st.ListEvalResults(context.Background(), first.Run.ID)
	if err != nil || len(stored) < 15 || len(stored) >= 40 {
		t.Fatalf("stored %d results after the interruption (%v), want 15 to 39", len(stored), err)
	}
	hitsBefore := up.hits.Load()

	second, err := Evaluate(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !second.SetReused || second.Set.ID != first.Set.ID {
		t.Error("the resumed run drew a new eval set")
	}
	if second.Run.ID != first.Run.ID || second.Resumed != len(stored) {
		t.Errorf("run %s resumed %d, want run %s resumed %d", second.Run.ID, second.Resumed, first.Run.ID, len(stored))
	}
	if got := up.hits.Load() - hitsBefore; got != int64(40-len(stored)) {
		t.Errorf("the resumed run sent %d requests, want the %d missing", got, 40-len(stored))
	}
	all, _ := st.ListEvalResults(context.Background(), first.Run.ID)
	if len(all) != 40 {
		t.Errorf("results = %d, want 40", len(all))
	}
	run, err := st.GetEvalRun(context.Background(), first.Run.ID)
	if err != nil || run.Status != store.EvalFinished || len(run.Leaderboard) == 0 {
		t.Fatalf("run after resume: %+v, %v", run, err)
	}
	lb := second.Leaderboard
	if len(lb.Rows) != 2 || lb.Rows[0].Calls != 20 || lb.Rows[0].Quality != 1 {
		t.Errorf("leaderboard rows: %+v", lb.Rows)
	}
	if math.Abs(lb.Reference.CostPer1K-10) > 1e-9 {
		t.Errorf("reference cost per 1k = %v, want 10", lb.Reference.CostPer1K)
	}

	// In-context requests carried examples from the train split only.
	set, _ := st.GetEvalSet(context.Background(), first.Set.ID)
	train := map[string]bool{}
	for _, mem := range set.Members {
		train[mem.CallID] = mem.Split == store.SplitTrain
	}
	for _, r := range all {
		var v Verdict
		if err := json.Unmarshal(r.Score, &v); err != nil {
			t.Fatal(err)
		}
		if (r.Variant == VariantInContext) != (len(v.Examples) == 3) {
			t.Errorf("%s/%s: %d examples", r.CallID, r.Variant, len(v.Examples))
		}
		for _, id := range v.Examples {
			if !train[id] {
				t.Errorf("%s: example %s is not a train call", r.CallID, id)
			}
		}
	}

	// A finished run is not resumed: the next one is new and replays everything.
	third, err := Evaluate(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if third.Run.ID == first.Run.ID || third.Resumed != 0 || third.Stats.Done != 40 {
		t.Errorf("after a finished run: run %s resumed %d done %d", third.Run.ID, third.Resumed, third.Stats.Done)
	}
}

func TestEvaluateSealsCandidateAnswers(t *testing.T) {
	st := storeWithWorkload(t, 10)
	up := &upstream{tries: map[string]int{}}
	srv := httptest.NewServer(up)
	defer srv.Close()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.NewKeyring(config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", Env: "EVAL_KEY"}}},
		func(string) string { return key })
	if err != nil {
		t.Fatal(err)
	}
	out, err := Evaluate(context.Background(), Options{Store: st, Keyring: kr, WorkloadID: "wl",
		Candidates: []*backend.Model{testModel(t, srv.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := st.ListEvalResults(context.Background(), out.Run.ID)
	if err != nil || len(rs) == 0 {
		t.Fatalf("%d results, %v", len(rs), err)
	}
	for _, r := range rs {
		if r.KeyID != "k1" || strings.Contains(string(r.Answer), "get_user") {
			t.Fatalf("%s: answer stored in plaintext (key %q)", r.CallID, r.KeyID)
		}
		plain, err := kr.Open(r.KeyID, r.Answer, AnswerAAD(r))
		if err != nil || !strings.Contains(string(plain), "get_user") {
			t.Fatalf("%s: opening the answer: %v", r.CallID, err)
		}
		moved := r
		moved.CallID = "another"
		if _, err := kr.Open(r.KeyID, r.Answer, AnswerAAD(moved)); err == nil {
			t.Fatal("a sealed answer opens under another result's id")
		}
	}
}

func TestEvaluatePricesPerGPUHourFromMeasuredThroughput(t *testing.T) {
	st := storeWithWorkload(t, 20)
	up := &upstream{tries: map[string]int{}}
	srv := httptest.NewServer(up)
	defer srv.Close()
	m := testModel(t, srv.URL)
	m.Price = config.Price{GPUHourUSD: 3.6} // $0.001 a second, throughput unknown
	out, err := Evaluate(context.Background(), Options{Store: st, WorkloadID: "wl", Candidates: []*backend.Model{m}, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	row := out.Leaderboard.Rows[0]
	if row.MeasuredTPS <= 0 || row.CostPer1K <= 0 {
		t.Fatalf("measured %v tok/s, cost per 1k %v", row.MeasuredTPS, row.CostPer1K)
	}
	rs, _ := st.ListEvalResults(context.Background(), out.Run.ID)
	var busy time.Duration
	for _, r := range rs {
		busy += r.Latency
	}
	// 110 tokens a call (the upstream's usage); 4 calls in flight.
	wantTPS := float64(110*len(rs)) / busy.Seconds() * 4
	if math.Abs(row.MeasuredTPS-wantTPS) > 1e-6*wantTPS {
		t.Errorf("measured %v tok/s, want %v", row.MeasuredTPS, wantTPS)
	}
	for _, r := range rs {
		if want := 110 * 0.001 / wantTPS; math.Abs(r.CostUSD-want) > 1e-9*want+1e-15 {
			t.Fatalf("%s: stored cost %v, want %v", r.CallID, r.CostUSD, want)
		}
	}
}
