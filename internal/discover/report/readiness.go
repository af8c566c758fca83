package report

import (
	"fmt"
	"math"
)

// Reason is one contribution to a readiness score.
type Reason struct {
	Points int    `json:"points"`
	Text   string `json:"text"`
}

// String is the reason as the table shows it: "+15 narrow tool set: 2 tools".
func (r Reason) String() string { return fmt.Sprintf("%+d %s", r.Points, r.Text) }

// Readiness scores how likely a small model is to serve a workload as well as the large
// one did, 0-100, from its figures, and returns every contribution as a Reason (those
// worth 0 too, so that the score explains itself). The contributions add up, and the
// sum is clamped to 0-100. They follow what makes agentic calls fit small models
// (Belcak et al., 2025): narrow, repetitive, structured tasks with checkable outputs.
//
//	structured output   +0..30  30 × the share of tool-call and JSON answers: a
//	                            format can be validated and fine-tuned towards
//	one kind of answer  +10     if one kind (tool call, JSON, text) is 90% or more;
//	                    +5      75% or more
//	tool set            +15     1-3 distinct tools called; +8 for 4-8; 0 for 9-15;
//	                    -10     more than 15 (a wide choice is where small models slip);
//	                            not scored when no answer called a tool
//	answer length       +15     mean completion tokens ≤ 50; +10 ≤ 150; +5 ≤ 400;
//	                    -15     over 800 with mostly text answers (long free-form
//	                            writing is the large model's strength); else 0
//	volume              +15     1,000 calls or more (enough to fine-tune on and to
//	                            evaluate); +10 for 200+; +5 for 50+; 0 for 20+;
//	                    -10     under 20
//	prompt diversity    +15     ≤ 0.5; +8 ≤ 0.7; 0 ≤ 0.9; -10 above (see Diversity);
//	                            not scored under 2 prompts
//	error rate          -10     over 10% of calls failed; -20 over 25% (the figures
//	                            rest on fewer answers, and something is off); else 0
//
// The best case adds up to 100. Changing a weight changes scores that tests pin.
func Readiness(w *Workload) (int, []Reason) {
	var reasons []Reason
	add := func(points int, format string, args ...any) {
		reasons = append(reasons, Reason{points, fmt.Sprintf(format, args...)})
	}
	m := w.Outputs

	if m.Answered == 0 {
		add(0, "no answers to look at")
	} else {
		add(int(math.Round(30*m.Structured())), "structured output: %s tool calls or JSON", pct(m.Structured()))
		kind, share := dominant(m)
		switch {
		case share >= 0.9:
			add(10, "one kind of answer: %s %s", pct(share), kindName(kind))
		case share >= 0.75:
			add(5, "mostly one kind of answer: %s %s", pct(share), kindName(kind))
		default:
			add(0, "mixed answers: at most %s of one kind (%s)", pct(share), kindName(kind))
		}
	}

	if n := len(w.Tools); m.ToolCall > 0 {
		switch {
		case n <= 3:
			add(15, "narrow tool set: %d %s", n, plural(n, "tool", "tools"))
		case n <= 8:
			add(8, "small tool set: %d tools", n)
		case n <= 15:
			add(0, "%d tools", n)
		default:
			add(-10, "many tools: %d", n)
		}
	}

	if m.Answered > 0 {
		a := w.MeanCompletionTokens
		switch {
		case a <= 50:
			add(15, "short answers: %.0f tokens on average", a)
		case a <= 150:
			add(10, "short answers: %.0f tokens on average", a)
		case a <= 400:
			add(5, "medium answers: %.0f tokens on average", a)
		case a > 800 && m.Text >= 0.5:
			add(-15, "long free-form text: %.0f tokens on average", a)
		default:
			add(0, "long answers: %.0f tokens on average", a)
		}
	}

	switch n := w.Calls; {
	case n >= 1000:
		add(15, "enough volume: %d calls", n)
	case n >= 200:
		add(10, "volume: %d calls", n)
	case n >= 50:
		add(5, "some volume: %d calls", n)
	case n >= 20:
		add(0, "little volume: %d calls", n)
	default:
		add(-10, "too few calls to learn from: %d", n)
	}

	if w.DiversitySample >= 2 {
		d := w.PromptDiversity
		switch {
		case d <= 0.5:
			add(15, "low prompt diversity: %.2f", d)
		case d <= 0.7:
			add(8, "moderate prompt diversity: %.2f", d)
		case d <= 0.9:
			add(0, "diverse prompts: %.2f", d)
		default:
			add(-10, "very diverse prompts: %.2f", d)
		}
	}

	switch e := w.ErrorRate; {
	case e > 0.25:
		add(-20, "high error rate: %s", pct(e))
	case e > 0.10:
		add(-10, "error rate: %s", pct(e))
	}

	score := 0
	for _, r := range reasons {
		score += r.Points
	}
	return min(max(score, 0), 100), reasons
}

// dominant returns the most common kind of answer and its share.
func dominant(m OutputMix) (Output, float64) {
	kind, share := OutputToolCall, m.ToolCall
	if m.JSON > share {
		kind, share = OutputJSON, m.JSON
	}
	if m.Text > share {
		kind, share = OutputText, m.Text
	}
	return kind, share
}

// kindName is how reasons and renderings name a kind of answer.
func kindName(o Output) string {
	switch o {
	case OutputToolCall:
		return "tool calls"
	case OutputJSON:
		return "JSON"
	}
	return string(o)
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
