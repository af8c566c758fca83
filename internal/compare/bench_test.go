package compare

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// BenchmarkToolCallsAgainstBFCL scores every ground truth of the four BFCL categories
// against its possible answer; ns/op is per scored call (one answer's tool calls).
func BenchmarkToolCallsAgainstBFCL(b *testing.B) {
	dir := bfclDir(b)
	var rows []bfclRow
	for _, cat := range bfclCategories {
		rows = append(rows, readBFCL(b, dir, cat)...)
	}
	opts := make([]Options, len(rows))
	for i, r := range rows {
		opts[i] = Options{Required: r.required}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &rows[i%len(rows)]
		if !ToolCallsAgainst(r.expected, r.truth, opts[i%len(rows)]).Pass {
			b.Fatal(r.id)
		}
	}
}

// BenchmarkToolCalls scores the BFCL ground truths against themselves as concrete
// references (the shadow-traffic case: reference model's calls vs candidate's).
func BenchmarkToolCalls(b *testing.B) {
	dir := bfclDir(b)
	var rows []bfclRow
	for _, cat := range bfclCategories {
		rows = append(rows, readBFCL(b, dir, cat)...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &rows[i%len(rows)]
		if !ToolCalls(r.truth, r.truth, Options{}).Pass {
			b.Fatal(r.id)
		}
	}
}

func BenchmarkText(b *testing.B) {
	ref := "The flight from Paris to New York leaves at 9:40 and arrives at 11:55 local time, terminal 4."
	cand := "Your flight leaves Paris at 9:40 and lands in New York at 11:55 local time (terminal 4)."
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Text(ref, cand)
	}
}

func BenchmarkJSON(b *testing.B) {
	ref := `{"name": "Ada", "age": 36, "langs": ["en", "fr"], "addr": {"city": "London", "zip": null}}`
	cand := `{"addr": {"zip": null, "city": "London"}, "langs": ["en","fr"], "age": 37, "name": "Ada"}`
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		JSON(ref, cand)
	}
}

// BenchmarkAnswerTauBench scores GPT-4o's tau-bench airline calls (one call per
// message, 14 tools) against themselves with Answer, without and with schema checks
// (one warm Schemas shared by every call); ns/op is per scored message.
func BenchmarkAnswerTauBench(b *testing.B) {
	tb := readTauBench(b)
	for _, bc := range []struct {
		name    string
		schemas *Schemas
	}{{"schemas=off", nil}, {"schemas=on", NewSchemas(SchemasOptions{})}} {
		b.Run(bc.name, func(b *testing.B) {
			req := Request{Tools: tb.tools, Schemas: bc.schemas}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := &tb.calls[i%len(tb.calls)]
				if !Answer(m, m, req).Pass {
					b.Fatal(m.ToolCalls)
				}
			}
		})
	}
}

// BenchmarkAnswerJSONSchema scores a JSON answer against a response_format json_schema,
// without and with the schema check.
func BenchmarkAnswerJSONSchema(b *testing.B) {
	ref := &openai.Message{Role: "assistant", Content: openai.TextContent(
		`{"name": "Ada", "age": 36, "langs": ["en", "fr"], "addr": {"city": "London", "zip": null}}`)}
	cand := &openai.Message{Role: "assistant", Content: openai.TextContent(
		`{"addr": {"zip": null, "city": "London"}, "langs": ["en","fr"], "age": 36, "name": "Ada"}`)}
	rf := &openai.ResponseFormat{Type: "json_schema", JSONSchema: json.RawMessage(`{"name": "person", "strict": true, "schema": {
		"type": "object", "additionalProperties": false, "required": ["name", "age", "langs", "addr"],
		"properties": {"name": {"type": "string"}, "age": {"type": "integer"},
			"langs": {"type": "array", "items": {"type": "string"}},
			"addr": {"type": "object", "additionalProperties": false, "required": ["city", "zip"],
				"properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}}}}}}`)}
	for _, bc := range []struct {
		name    string
		schemas *Schemas
	}{{"schemas=off", nil}, {"schemas=on", NewSchemas(SchemasOptions{})}} {
		b.Run(bc.name, func(b *testing.B) {
			req := Request{ResponseFormat: rf, Schemas: bc.schemas}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if !Answer(ref, cand, req).Pass {
					b.Fatal("fails")
				}
			}
		})
	}
}

// BenchmarkSchemaCompile is a cache miss: compiling one tau-bench airline tool's
// parameters schema (cycling over the 14) in an empty cache.
func BenchmarkSchemaCompile(b *testing.B) {
	tb := readTauBench(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		t := &tb.tools[i%len(tb.tools)]
		if err := NewSchemas(SchemasOptions{}).Validate(t.Function.Parameters, map[string]any{}); errors.Is(err, ErrInvalidSchema) {
			b.Fatal(err)
		}
	}
}
