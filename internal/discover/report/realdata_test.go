package report

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// The bundled real data read back through FromStoreCall: tau-bench's GPT-4o airline
// agent turns (tool calls and replies to the customer) and GSM8K answers (worked
// arithmetic in prose), one workload each.
func TestReportOnBundledRealCalls(t *testing.T) {
	calls, err := dataset.BundledCalls(dataset.NameTauBench, dataset.NameGSM8K)
	if err != nil {
		t.Fatal(err)
	}
	var rcs []Call
	at := start
	for i := range calls {
		c := &calls[i]
		req, err := c.RequestJSON()
		if err != nil {
			t.Fatal(err)
		}
		a := c.Answers[0]
		resp, err := json.Marshal(openai.ChatCompletion{Object: "chat.completion", Model: a.Model,
			Choices: []openai.Choice{{Message: a.Message, FinishReason: a.FinishReason}}})
		if err != nil {
			t.Fatal(err)
		}
		// The datasets carry no usage: a token is about four bytes.
		sc := store.Call{ID: c.ID, StartedAt: at, Status: 200, WorkloadID: c.Dataset, RequestedModel: a.Model,
			PromptTokens: len(req) / 4, CompletionTokens: max(len(a.Message.Content.String())/4, 10),
			CostUSD: float64(len(req)/4)*2.5e-6 + float64(len(a.Message.Content.String())/4)*10e-6,
			Request: req, Response: resp}
		at = at.Add(time.Minute)
		rc, err := FromStoreCall(sc)
		if err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		rcs = append(rcs, rc)
	}
	r := build(t, Input{Calls: rcs, Candidates: candidates, Now: now})
	tau, gsm := byID(t, r, "taubench-airline"), byID(t, r, "gsm8k")
	if tau.Calls != 2454 {
		t.Errorf("tau-bench: %d calls, want the 2,454 recorded assistant turns", tau.Calls)
	}
	// About half of the agent's turns call one of the 14 airline tools.
	if tau.Outputs.ToolCall < 0.3 || tau.Outputs.ToolCall > 0.7 || len(tau.Tools) < 5 || len(tau.Tools) > 14 || tau.MaxToolsOffered != 14 {
		t.Errorf("tau-bench: %.0f%% tool calls, %d tools of %d offered", 100*tau.Outputs.ToolCall, len(tau.Tools), tau.MaxToolsOffered)
	}
	if gsm.Outputs.Text != 1 || len(gsm.Tools) != 0 {
		t.Errorf("gsm8k: outputs %+v, tools %v; want all text", gsm.Outputs, gsm.Tools)
	}
	for _, w := range []*Workload{tau, gsm} {
		if w.DiversitySample != DiversitySample || w.PromptDiversity <= 0.3 || w.PromptDiversity >= 1 {
			t.Errorf("%s: diversity %v over %d prompts", w.ID, w.PromptDiversity, w.DiversitySample)
		}
		t.Logf("%s: readiness %d, diversity %.2f, %v", w.ID, w.Readiness, w.PromptDiversity, w.Reasons)
	}
	if tau.Readiness <= gsm.Readiness {
		t.Errorf("tau-bench's tool-calling agent scores %d, not above GSM8K's free-form maths %d", tau.Readiness, gsm.Readiness)
	}
}
