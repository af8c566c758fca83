package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/telemetry"
)

// fakeTracer records what the gateway hands a CallTracer.
type fakeTracer struct {
	mu       sync.Mutex
	parents  []string // the traceparent each Parent call saw
	finished []finishedCall
}

type finishedCall struct {
	parent string // what the parent context carries
	call   store.Call
}

type parentKey struct{}

func (f *fakeTracer) Parent(r *http.Request) context.Context {
	tp := r.Header.Get("traceparent")
	f.mu.Lock()
	f.parents = append(f.parents, tp)
	f.mu.Unlock()
	return context.WithValue(context.Background(), parentKey{}, tp)
}

func (f *fakeTracer) CallFinished(parent context.Context, c *store.Call) {
	tp, _ := parent.Value(parentKey{}).(string)
	f.mu.Lock()
	f.finished = append(f.finished, finishedCall{parent: tp, call: *c})
	f.mu.Unlock()
}

func startTracedGateway(t testing.TB, upstream string, rec Recorder, tr CallTracer) *Gateway {
	t.Helper()
	cat, err := backend.NewCatalog(testConfig(upstream), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Options{Catalog: cat, Recorder: rec, Tracer: tr})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// TestTracerSeesEveryCallWithItsRequestsTraceContext checks the hook's contract: one
// Parent per call, read from that call's request, and one CallFinished per call,
// given that parent and the call as it is recorded, failed calls included.
func TestTracerSeesEveryCallWithItsRequestsTraceContext(t *testing.T) {
	up := newFakeUpstream(t)
	rec := &memRecorder{}
	tr := &fakeTracer{}
	srv := httptest.NewServer(startTracedGateway(t, up.URL, rec, tr))
	defer srv.Close()
	bodies := []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`,
	}
	for i, body := range bodies {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("traceparent", fmt.Sprintf("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333%d-01", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		waitCalls(t, rec, i+1) // one call at a time, so that the tracer sees them in order
	}
	recorded := rec.all()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.parents) != len(bodies) || len(tr.finished) != len(bodies) {
		t.Fatalf("Parent called %d times, CallFinished %d times; want %d each", len(tr.parents), len(tr.finished), len(bodies))
	}
	for i, f := range tr.finished {
		want := fmt.Sprintf("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333%d-01", i)
		if tr.parents[i] != want || f.parent != want {
			t.Errorf("call %d: Parent saw %q, CallFinished got %q; want %q", i, tr.parents[i], f.parent, want)
		}
		if f.call.ID != recorded[i].ID || f.call.Status != recorded[i].Status || !f.call.FinishedAt.Equal(recorded[i].FinishedAt) {
			t.Errorf("call %d: traced %s status %d, recorded %s status %d", i, f.call.ID, f.call.Status, recorded[i].ID, recorded[i].Status)
		}
	}
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusNotFound} {
		if got := tr.finished[i].call.Status; got != want {
			t.Errorf("call %d traced with status %d, want %d", i, got, want)
		}
	}
}

type discardRecorder struct{}

func (discardRecorder) Enqueue(store.Call) error { return nil }

// BenchmarkChatTracing is what a call costs the gateway with tracing off (no tracer:
// the default) and on (telemetry's tracer exporting to an in-memory exporter that
// discards, so the figure is the span's making and queueing, not a network), for a
// whole answer from an upstream on a loopback socket. Every request carries a
// traceparent.
func BenchmarkChatTracing(b *testing.B) {
	answer := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"big-upstream",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":57,"completion_tokens":13,"total_tokens":70}}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = r.Body.Read(make([]byte, 4096))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer up.Close()
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a support agent."},` +
		`{"role":"user","content":"Where is my order #W123?"}]}`)

	run := func(b *testing.B, tr CallTracer) {
		gw := startTracedGateway(b, up.URL, discardRecorder{}, tr)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(string(body)))
			req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
			w := httptest.NewRecorder()
			gw.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("off", func(b *testing.B) { run(b, nil) })
	b.Run("on", func(b *testing.B) {
		tr, err := telemetry.New(context.Background(), tracetest.NewNoopExporter(), telemetry.Options{
			Backends: map[string]string{"up": up.URL + "/v1"}})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Shutdown(context.Background())
		run(b, tr)
	})
}
