package report

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/config"
)

// The scores of these hand-built workloads are pinned: a change to a weight or a
// threshold shows up here, and must be meant.
func TestReadinessScores(t *testing.T) {
	tools := func(n int) []ToolUse {
		out := make([]ToolUse, n)
		for i := range out {
			out[i] = ToolUse{Name: string(rune('a' + i)), Calls: 1}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		w       Workload
		score   int
		sum     int      // the points before clamping to 0-100
		reasons []string // each must appear, with its points
	}{
		{
			name: "ideal: one narrow tool task, short, regular, plenty of calls",
			w: Workload{Calls: 5000, Outputs: OutputMix{Answered: 5000, ToolCall: 1}, Tools: tools(2),
				MeanCompletionTokens: 30, PromptDiversity: 0.3, DiversitySample: 100},
			score: 100, sum: 100,
			reasons: []string{"+30 structured output: 100% tool calls or JSON", "+10 one kind of answer: 100% tool calls",
				"+15 narrow tool set: 2 tools", "+15 short answers: 30 tokens on average", "+15 enough volume: 5000 calls",
				"+15 low prompt diversity: 0.30"},
		},
		{
			name: "free-form chat: long text, diverse, failing, few calls",
			w: Workload{Calls: 30, ErrorRate: 0.3, Outputs: OutputMix{Answered: 21, Text: 1},
				MeanCompletionTokens: 1200, PromptDiversity: 0.95, DiversitySample: 21},
			score: 0, sum: -35,
			reasons: []string{"+0 structured output: 0% tool calls or JSON", "+10 one kind of answer: 100% text",
				"-15 long free-form text: 1200 tokens on average", "+0 little volume: 30 calls",
				"-10 very diverse prompts: 0.95", "-20 high error rate: 30%"},
		},
		{
			name: "middling agent step",
			w: Workload{Calls: 300, ErrorRate: 0.12, Outputs: OutputMix{Answered: 264, ToolCall: 0.6, JSON: 0.1, Text: 0.3},
				Tools: tools(6), MeanCompletionTokens: 200, PromptDiversity: 0.65, DiversitySample: 100},
			score: 42, sum: 42,
			reasons: []string{"+21 structured output: 70% tool calls or JSON", "+0 mixed answers: at most 60% of one kind (tool calls)",
				"+8 small tool set: 6 tools", "+5 medium answers: 200 tokens on average", "+10 volume: 300 calls",
				"+8 moderate prompt diversity: 0.65", "-10 error rate: 12%"},
		},
		{
			name: "JSON extraction without tools",
			w: Workload{Calls: 80, Outputs: OutputMix{Answered: 80, JSON: 0.8, Text: 0.2},
				MeanCompletionTokens: 120, PromptDiversity: 0.8, DiversitySample: 80},
			score: 44, sum: 44,
			reasons: []string{"+24 structured output: 80% tool calls or JSON", "+5 mostly one kind of answer: 80% JSON",
				"+10 short answers: 120 tokens on average", "+5 some volume: 80 calls", "+0 diverse prompts: 0.80"},
		},
		{
			name:  "every call failed",
			w:     Workload{Calls: 10, Errors: 10, ErrorRate: 1},
			score: 0, sum: -30,
			reasons: []string{"+0 no answers to look at", "-10 too few calls to learn from: 10", "-20 high error rate: 100%"},
		},
		{
			name: "many tools hold a busy tool workload back",
			w: Workload{Calls: 1500, ErrorRate: 0.02, Outputs: OutputMix{Answered: 1470, ToolCall: 0.95, Text: 0.05},
				Tools: tools(20), MeanCompletionTokens: 60, PromptDiversity: 0.4, DiversitySample: 100},
			score: 69, sum: 69,
			reasons: []string{"+29 structured output: 95% tool calls or JSON", "+10 one kind of answer: 95% tool calls",
				"-10 many tools: 20", "+10 short answers: 60 tokens on average", "+15 enough volume: 1500 calls",
				"+15 low prompt diversity: 0.40"},
		},
		{
			name: "long structured answers are not penalised as free-form text",
			w: Workload{Calls: 250, Outputs: OutputMix{Answered: 250, JSON: 1}, MeanCompletionTokens: 1000,
				PromptDiversity: 0.85, DiversitySample: 100},
			score: 50, sum: 50,
			reasons: []string{"+30 structured output", "+10 one kind of answer: 100% JSON", "+0 long answers: 1000 tokens on average", "+10 volume: 250 calls"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			score, reasons := Readiness(&tc.w)
			var got []string
			sum := 0
			for _, r := range reasons {
				got = append(got, r.String())
				sum += r.Points
			}
			if score != tc.score || sum != tc.sum {
				t.Errorf("score %d (sum %d), want %d (sum %d); reasons:\n  %s", score, sum, tc.score, tc.sum, strings.Join(got, "\n  "))
			}
			for _, want := range tc.reasons {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, want) }) {
					t.Errorf("no reason %q in:\n  %s", want, strings.Join(got, "\n  "))
				}
			}
		})
	}
}

func TestReadinessDoesNotScoreWhatIsNotThere(t *testing.T) {
	// No tool calls: no tool-set reason. Fewer than two prompts: no diversity reason.
	w := Workload{Calls: 100, Outputs: OutputMix{Answered: 100, Text: 1}, MeanCompletionTokens: 40, DiversitySample: 1}
	_, reasons := Readiness(&w)
	for _, r := range reasons {
		if strings.Contains(r.Text, "tool set") || strings.Contains(r.Text, "tools") || strings.Contains(r.Text, "diversity") {
			t.Errorf("unexpected reason %q", r)
		}
	}
}

func TestFixtureReadinessOrder(t *testing.T) {
	r := build(t, fixtureInput())
	book, chat := byID(t, r, "w-book"), byID(t, r, "support-chat")
	if book.Readiness < ReadyThreshold || chat.Readiness >= ReadyThreshold || book.Readiness <= byID(t, r, "w-extract").Readiness {
		t.Errorf("readiness book %d, extract %d, chat %d: want book ready and first, chat not ready",
			book.Readiness, byID(t, r, "w-extract").Readiness, chat.Readiness)
	}
}

func TestPricedCandidate(t *testing.T) {
	c, ok := PricedCandidate("a", config.Price{InputPerMTok: 0.02, OutputPerMTok: 0.05})
	if !ok || c.InputPerMTok != 0.02 || c.OutputPerMTok != 0.05 || c.CachedInputPerMTok != 0.02 {
		t.Errorf("per token: %+v %v", c, ok)
	}
	// $3.60 an hour at 1,000 tokens/s: $0.001 a second, $1 per million tokens.
	c, ok = PricedCandidate("b", config.Price{GPUHourUSD: 3.6, ThroughputTPS: 1000})
	if !ok || math.Abs(c.InputPerMTok-1) > 1e-12 || math.Abs(c.OutputPerMTok-1) > 1e-12 {
		t.Errorf("per GPU-hour: %+v %v", c, ok)
	}
	if _, ok := PricedCandidate("c", config.Price{GPUHourUSD: 3.6}); ok {
		t.Error("a GPU-hour price without a throughput was priced")
	}
}
