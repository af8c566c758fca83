package eval

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/downshift-dev/downshift/internal/workload"
)

// ExamplePicker chooses in-context examples for a test call from a pool (the eval
// set's train split): the most similar calls by request features (the hashed word
// and character n-grams of the last message and the conversation's stage, as
// workload discovery uses them), preferring, among close ones, calls whose reference
// did something the examples chosen so far do not show, so that k examples cover
// as many of the workload's tools as they can.
type ExamplePicker struct {
	pool []*Call
	vecs []workload.Vector
	f    *workload.Featurizer
}

// coverageBonus is what an example whose action is not yet shown adds to its
// similarity (cosine, in [0, 1]).
const coverageBonus = 0.15

// NewExamplePicker indexes pool.
func NewExamplePicker(pool []*Call) (*ExamplePicker, error) {
	f, err := workload.NewFeaturizer(workload.DefaultFeatureConfig(), workload.IDF{})
	if err != nil {
		return nil, err
	}
	p := &ExamplePicker{pool: slices.Clone(pool), f: f}
	slices.SortFunc(p.pool, func(a, b *Call) int { return cmp.Compare(a.ID, b.ID) })
	p.vecs = make([]workload.Vector, len(p.pool))
	for i, c := range p.pool {
		p.vecs[i] = p.vector(c)
	}
	return p, nil
}

func (p *ExamplePicker) vector(c *Call) workload.Vector {
	conv, err := workload.ReadConversation(c.Request)
	if err != nil {
		return workload.Vector{}
	}
	return p.f.Vector(&conv, workload.Vector{})
}

// Pick returns up to k examples for c, best first; never c itself nor a call of its
// conversation.
func (p *ExamplePicker) Pick(c *Call, k int) []*Call {
	if k <= 0 || len(p.pool) == 0 {
		return nil
	}
	v := p.vector(c)
	sims := make([]float64, len(p.pool))
	for i := range p.pool {
		sims[i] = v.Dot(p.vecs[i])
	}
	shown := map[string]bool{}
	used := make([]bool, len(p.pool))
	var out []*Call
	for len(out) < k {
		best, bestScore := -1, -1.0
		for i, e := range p.pool {
			if used[i] || e.ID == c.ID || (e.Group == c.Group && c.Group != "") {
				continue
			}
			s := sims[i]
			if !shown[e.Stratum] {
				s += coverageBonus
			}
			if s > bestScore {
				best, bestScore = i, s
			}
		}
		if best < 0 {
			break
		}
		used[best] = true
		shown[p.pool[best].Stratum] = true
		out = append(out, p.pool[best])
	}
	return out
}

// exampleTextBytes caps how much of an example's last message and answer is shown.
const exampleTextBytes = 600

// FormatExamples writes examples as text for the system prompt: for each, the last
// message of its request and the reference's answer (the tool calls with their
// arguments, or the text).
func FormatExamples(examples []*Call) string {
	var b strings.Builder
	b.WriteString("Worked examples of this task: the last message of an earlier request, and the answer expected.\n")
	for i, e := range examples {
		fmt.Fprintf(&b, "\nExample %d\n", i+1)
		if n := len(e.Req.Messages); n > 0 {
			last := &e.Req.Messages[n-1]
			fmt.Fprintf(&b, "Last message (%s): %s\n", last.Role, clipText(last.Content.String(), exampleTextBytes))
		}
		if len(e.Answer.ToolCalls) > 0 {
			for _, tc := range e.Answer.ToolCalls {
				fmt.Fprintf(&b, "Expected answer: call %s with %s\n", tc.Function.Name, clipText(tc.Function.Arguments, exampleTextBytes))
			}
		} else {
			fmt.Fprintf(&b, "Expected answer: %s\n", clipText(e.Answer.Content.String(), exampleTextBytes))
		}
	}
	return b.String()
}

// clipText trims s and cuts it to at most n bytes on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + " …"
}
