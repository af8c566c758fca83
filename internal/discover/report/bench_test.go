package report

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// benchCalls returns n calls in 25 workloads of different shapes, over 30 days.
func benchCalls(n int) ([]Call, []Info) {
	words := strings.Fields("book change cancel flight seat baggage refund upgrade passenger reservation " +
		"insurance payment gift card certificate cabin economy business basic membership gold silver")
	calls := make([]Call, n)
	for i := range calls {
		w := i % 25
		out := []Output{OutputToolCall, OutputJSON, OutputText}[w%3]
		var tools []string
		if out == OutputToolCall {
			tools = []string{fmt.Sprintf("tool_%d", (i/25)%(1+w%7))}
		}
		var prompt strings.Builder
		for k := range 40 {
			prompt.WriteString(words[(i*7+k*(w+1))%len(words)])
			prompt.WriteByte(' ')
		}
		calls[i] = Call{ID: fmt.Sprintf("c%07d", i), WorkloadID: fmt.Sprintf("w%02d", w),
			PromptTokens: 500 + i%1000, CompletionTokens: 20 + i%300, CachedTokens: i % 200, CostUSD: 0.001 * float64(1+w%5),
			Latency: time.Duration(200+i%3000) * time.Millisecond, Status: 200 + 302*btoi(i%50 == 0),
			StartedAt: start.Add(time.Duration(i) * 30 * 24 * time.Hour / time.Duration(n)),
			Output:    out, Tools: tools, ToolsOffered: 14, Prompt: prompt.String()}
	}
	infos := make([]Info, 25)
	for w := range infos {
		infos[w] = Info{ID: fmt.Sprintf("w%02d", w), Label: fmt.Sprintf("workload %d", w)}
	}
	return calls, infos
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Building the report for 100k calls; the aim is well under 30 s.
func BenchmarkBuild100k(b *testing.B) {
	calls, infos := benchCalls(100_000)
	in := Input{Calls: calls, Workloads: infos, Candidates: candidates, Now: now}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(in); err != nil {
			b.Fatal(err)
		}
	}
}

// Rendering all three forms of a 25-workload report.
func BenchmarkRender(b *testing.B) {
	calls, infos := benchCalls(10_000)
	r, err := Build(Input{Calls: calls, Workloads: infos, Candidates: candidates, Now: now})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := WriteTable(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		if err := WriteJSON(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		if err := WriteHTML(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// FromStoreCall on a 20 KB agent request (a long system prompt, a conversation and 14
// tools) and a tool-call answer: the per-call cost of reading payloads back.
func BenchmarkFromStoreCall(b *testing.B) {
	var req strings.Builder
	req.WriteString(`{"model":"gpt-4o","messages":[{"role":"system","content":"`)
	req.WriteString(strings.Repeat("You are an airline agent. Follow the policy. ", 200))
	req.WriteString(`"}`)
	for k := range 12 {
		fmt.Fprintf(&req, `,{"role":"user","content":"I want to change flight %d to Boston, user mia_li_%d"}`, k, k)
		fmt.Fprintf(&req, `,{"role":"assistant","content":"Let me check reservation %d for you."}`, k)
	}
	req.WriteString(`],"tools":[`)
	for k := range 14 {
		if k > 0 {
			req.WriteByte(',')
		}
		fmt.Fprintf(&req, `{"type":"function","function":{"name":"tool_%d","description":"does thing %d","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}`, k, k)
	}
	req.WriteString(`]}`)
	c := store.Call{ID: "c1", Status: 200, Request: []byte(req.String()),
		Response: []byte(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"tool_3","arguments":"{\"a\":\"b\"}"}}]},"finish_reason":"tool_calls"}]}`)}
	b.SetBytes(int64(len(c.Request) + len(c.Response)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromStoreCall(c); err != nil {
			b.Fatal(err)
		}
	}
}
