package redact

import (
	"testing"
)

// BenchmarkRedactCall redacts the 2,454 bundled tau-bench calls (request ~20 KB plus
// GPT-4o's answer) in conversation order, as the recorder would see them. The cache
// is emptied before each pass over the data, so every call is new to it and only what
// really repeats (system prompt, earlier turns) is found there.
//
//	go test -run '^$' -bench RedactCall -cpu 1 ./internal/redact
func BenchmarkRedactCall(b *testing.B) {
	calls := loadTau(b)
	var bytes int64
	for _, c := range calls {
		bytes += int64(len(c.req) + len(c.resp))
	}
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"gitleaks", Options{}},
		{"gitleaks-nocache", Options{CacheBytes: -1}},
		{"own-rules", Options{NoGitleaks: true}},
		{"own-rules-nocache", Options{NoGitleaks: true, CacheBytes: -1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := New(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(bytes / int64(len(calls)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(calls)
				if k == 0 && r.cache != nil {
					b.StopTimer()
					r.cache = newSpanCache(r.cache.half * 2)
					b.StartTimer()
				}
				if _, _, _, err := r.RedactCall(calls[k].req, calls[k].resp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
