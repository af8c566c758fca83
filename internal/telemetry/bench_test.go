package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkCallFinished is the tracer's whole cost per call on the request path: the
// traceparent read in the handler, then the span made, filled and queued when the
// call is recorded. The exporter discards, so no network is measured; the batch
// processor's export runs on its own goroutine, as in production.
func BenchmarkCallFinished(b *testing.B) {
	clearOTel(b)
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	for _, bb := range []struct {
		name    string
		sampler string
	}{{"sampled", ""}, {"not-sampled", "always_off"}} {
		b.Run(bb.name, func(b *testing.B) {
			b.Setenv("OTEL_TRACES_SAMPLER", bb.sampler)
			tr, err := New(context.Background(), tracetest.NewNoopExporter(), Options{Backends: map[string]string{"up": "http://10.0.0.5:8000/v1"}})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			c := baseCall()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tr.CallFinished(tr.Parent(r), &c)
			}
		})
	}
}
