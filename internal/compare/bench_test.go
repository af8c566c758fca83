package compare

import (
	"testing"
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
