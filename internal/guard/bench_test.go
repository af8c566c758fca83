package guard

import (
	"testing"

	"github.com/downshift-dev/downshift/internal/compare"
)

// BenchmarkCheckTauBench runs Check with every guard on GPT-4o's recorded tau-bench
// answers, one answer per op, cycling through them, each with its Request read once
// beforehand (ReadRequest is measured on its own below). "calls" are the 1,164
// answers that call a tool (14 tools offered): the arguments are parsed, and with
// schema_valid on decoded and validated against the called tool's parameters through
// a warm, shared compare.Schemas. "text" are the 1,290 text answers.
func BenchmarkCheckTauBench(b *testing.B) {
	var withCalls, texts []tauCall
	var callReqs, textReqs []Request
	for _, c := range tauCalls(b) {
		req, err := ReadRequest(c.body)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.ans.Choices[0].Message.ToolCalls) > 0 {
			withCalls, callReqs = append(withCalls, c), append(callReqs, req)
		} else {
			texts, textReqs = append(texts, c), append(textReqs, req)
		}
	}
	schemas := compare.NewSchemas(compare.SchemasOptions{})
	all := mustNew(b, Options{Schemas: schemas})
	noSchema := mustNew(b, Options{Checks: []Check{NotEmpty, NotRefusal, FinishReason, ToolKnown, JSONValid}})
	for _, bc := range []struct {
		name  string
		g     *Guards
		calls []tauCall
		reqs  []Request
	}{
		{"calls/schema_valid=on", all, withCalls, callReqs},
		{"calls/schema_valid=off", noSchema, withCalls, callReqs},
		{"text", all, texts, textReqs},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := range bc.calls { // warm the schema cache
				bc.g.Check(&bc.reqs[i], bc.calls[i].ans)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(bc.calls)
				if !bc.g.Check(&bc.reqs[j], bc.calls[j].ans).Pass {
					b.Fatal(bc.calls[j].id)
				}
			}
		})
	}
}

// BenchmarkReadRequestTauBench reads the Request from tau-bench request bodies (mean
// about 20 KB, 14 tools, the conversation skipped), as the gateway would once per
// guarded call.
func BenchmarkReadRequestTauBench(b *testing.B) {
	calls := tauCalls(b)
	size := 0
	for _, c := range calls {
		size += len(c.body)
	}
	b.SetBytes(int64(size / len(calls)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ReadRequest(calls[i%len(calls)].body); err != nil {
			b.Fatal(err)
		}
	}
}
