package redact

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// tauPayload is one bundled tau-bench call as the recorder would see it.
type tauPayload struct {
	id        string
	req, resp []byte
}

func loadTau(tb testing.TB) []tauPayload {
	tb.Helper()
	tau, err := dataset.BundledTau()
	if err != nil {
		tb.Fatal(err)
	}
	calls, err := dataset.TauCalls(tau)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]tauPayload, 0, len(calls))
	for i := range calls {
		c := &calls[i]
		req, err := c.RequestJSON()
		if err != nil {
			tb.Fatal(err)
		}
		a := c.Answers[0]
		resp, err := json.Marshal(openai.ChatCompletion{
			ID: fmt.Sprintf("chatcmpl-%d", i), Object: "chat.completion", Created: 1715785200, Model: a.Model,
			Choices: []openai.Choice{{Index: 0, Message: a.Message, FinishReason: a.FinishReason}},
			Usage:   &openai.Usage{PromptTokens: 5000, CompletionTokens: 50, TotalTokens: 5050},
		})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, tauPayload{c.ID, req, resp})
	}
	return out
}

// TestTauBenchFindings runs the detectors over the 2,454 real tau-bench airline calls:
// every output must stay valid OpenAI JSON, and what was found is printed by type with
// examples (go test -v -run TauBench) for a person to judge.
func TestTauBenchFindings(t *testing.T) {
	r := testRedactor(t)
	calls := loadTau(t)
	counts := map[Type]int{}
	distinct := map[Type]map[string]int{}
	changed := 0
	for _, c := range calls {
		st := &State{record: func(ty Type, v string) {
			counts[ty]++
			if distinct[ty] == nil {
				distinct[ty] = map[string]int{}
			}
			distinct[ty][v]++
		}}
		req, resp, err := r.redactCall(c.req, c.resp, st)
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		if &req[0] != &c.req[0] || &resp[0] != &c.resp[0] {
			changed++
		}
		var cr openai.ChatRequest
		var cc openai.ChatCompletion
		if err := json.Unmarshal(req, &cr); err != nil {
			t.Fatalf("%s: redacted request: %v", c.id, err)
		}
		if err := json.Unmarshal(resp, &cc); err != nil {
			t.Fatalf("%s: redacted response: %v", c.id, err)
		}
		for _, m := range append(cr.Messages, cc.Choices[0].Message) {
			for _, tc := range m.ToolCalls {
				if !json.Valid([]byte(tc.Function.Arguments)) {
					t.Fatalf("%s: arguments no longer JSON: %s", c.id, tc.Function.Arguments)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls, %d changed\n", len(calls), changed)
	for _, ty := range BuiltinTypes {
		vals := distinct[ty]
		keys := make([]string, 0, len(vals))
		for v := range vals {
			keys = append(keys, v)
		}
		sort.Slice(keys, func(i, j int) bool {
			return vals[keys[i]] > vals[keys[j]] || (vals[keys[i]] == vals[keys[j]] && keys[i] < keys[j])
		})
		fmt.Fprintf(&b, "%-16s %6d occurrences %4d distinct", ty, counts[ty], len(vals))
		if len(keys) > 0 {
			fmt.Fprintf(&b, "  e.g. %q", keys[:min(len(keys), 6)])
		}
		b.WriteByte('\n')
	}
	t.Log("\n" + b.String())
}
