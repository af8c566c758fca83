package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/telemetry/telemetrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// otelVars are every variable the tests set; each test clears them all first, so that
// the environment it runs in cannot turn tracing on.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_HEADERS",
}

func clearOTel(t testing.TB) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
}

func TestEnabledOnlyWhenTheEnvironmentAsks(t *testing.T) {
	const endpoint = "http://collector:4318"
	tests := []struct {
		name    string
		env     map[string]string
		on      bool
		wantErr string
		warned  bool
	}{
		{name: "nothing set", env: nil, on: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, on: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces"}, on: true},
		{name: "exporter otlp alone", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{name: "exporter OTLP in a list", env: map[string]string{"OTEL_TRACES_EXPORTER": "console, OTLP"}, on: true, warned: true},
		{name: "exporter none beats an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, on: false},
		{name: "other exporter only", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, on: false, warned: true},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, on: false},
		{name: "sdk disabled in capitals", env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, on: false},
		{name: "sdk not disabled", env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, on: true},
		{name: "http/json", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, on: true},
		{name: "grpc is refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: downshift exports traces over OTLP/HTTP only"},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, on: true},
		{name: "unknown protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"},
			wantErr: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="thrift": unknown protocol`},
		{name: "grpc while off is no error", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			on, err := enabled(func(k string) string { return tt.env[k] }, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || on != tt.on {
				t.Fatalf("enabled = %v, %v; want %v, nil", on, err, tt.on)
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != tt.warned {
				t.Errorf("warned = %v, want %v; log: %s", warned, tt.warned, logs.String())
			}
		})
	}
}

func TestFromEnvIsOffByDefault(t *testing.T) {
	clearOTel(t)
	tr, err := FromEnv(context.Background(), Options{})
	if err != nil || tr != nil {
		t.Fatalf("FromEnv = %v, %v; want nil, nil", tr, err)
	}
	// A nil tracer is off and safe to call.
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if sc := trace.SpanContextFromContext(tr.Parent(r)); sc.IsValid() {
		t.Errorf("a nil tracer read the traceparent: %v", sc)
	}
	tr.CallFinished(context.Background(), &store.Call{ID: "c1"})
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

var (
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	okAnswer = []byte(`{"id":"chatcmpl-42","object":"chat.completion","model":"big-upstream","choices":[` +
		`{"index":0,"message":{"role":"assistant","content":"SECRET ANSWER TEXT"},"finish_reason":"stop"},` +
		`{"index":1,"message":{"role":"assistant","content":"x"},"finish_reason":"Not a reason: SECRET"}]}`)
)

// baseCall is a call the reference answered, tagged, from a keyed client.
func baseCall() store.Call {
	return store.Call{
		ID: "01JCALL", StartedAt: t0, FinishedAt: t0.Add(850 * time.Millisecond),
		ClientID: "client-7", Workload: "triage", RequestedModel: "gpt-4o", ServedModel: "big", Backend: "up",
		Route: store.RouteReference, Status: 200, PromptTokens: 57, CompletionTokens: 13, CachedTokens: 7,
		Latency: 850 * time.Millisecond, TTFT: 120 * time.Millisecond, CostUSD: 0.0003, ReferenceCostUSD: 0.0003,
		Request:  []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"SECRET PROMPT TEXT"}]}`),
		Response: okAnswer,
	}
}

func TestSpanOfACall(t *testing.T) {
	shadow := baseCall()
	shadow.Mode, shadow.PolicyVersion, shadow.Candidate, shadow.Guard = store.ModeShadow, 3, "small", store.GuardPass
	shadow.Second = &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200, CostUSD: 0.00001,
		Compared: true, Agreement: 0.75, Pass: true}

	escalated := baseCall()
	escalated.Workload, escalated.WorkloadID = "", "wl-3f9a"
	escalated.Route, escalated.Mode, escalated.PolicyVersion, escalated.Candidate = store.RouteEscalated, store.ModeServe, 5, "small"
	escalated.Guard = "tool_known,schema_valid"
	escalated.Second = &store.SecondAnswer{Kind: store.SecondRejected, Model: "small", Error: "status 500"}

	streamed := baseCall()
	streamed.Stream, streamed.Simulated, streamed.TokensEstimated = true, true, true
	streamed.Candidate, streamed.Route = "", store.RouteCandidate
	streamed.ReferenceCostUSD, streamed.ReferenceCostEstimated = 0.002, true

	failed := baseCall()
	failed.Status, failed.ErrorType, failed.ErrorMessage = 502, "server_error", `Backend "up" is unreachable.`
	failed.ServedModel, failed.PromptTokens, failed.CompletionTokens, failed.CachedTokens, failed.TTFT = "", 0, 0, 0, 0
	failed.CostUSD, failed.ReferenceCostUSD = 0, 0
	failed.Response = []byte(`{"error":{"message":"Backend \"up\" is unreachable.","type":"server_error"}}`)

	badRequest := store.Call{ID: "01JBAD", StartedAt: t0, FinishedAt: t0.Add(time.Millisecond), Route: store.RouteReference,
		Status: 400, ErrorType: "invalid_request_error", Request: []byte(`{"messages":"SECRET PROMPT TEXT"`)}

	tests := []struct {
		name     string
		call     store.Call
		spanName string
		want     map[string]any // attributes that must be there, with these values
		absent   []string       // attributes that must not be there
		status   codes.Code
	}{
		{name: "reference", call: baseCall(), spanName: "chat gpt-4o", status: codes.Unset,
			want: map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
				"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "big", "gen_ai.request.stream": false,
				"gen_ai.usage.input_tokens": int64(57), "gen_ai.usage.output_tokens": int64(13),
				"gen_ai.usage.cache_read.input_tokens": int64(7),
				"gen_ai.response.id":                   "chatcmpl-42", "gen_ai.response.finish_reasons": []string{"stop"},
				"server.address": "10.0.0.5", "server.port": int64(8000), "http.response.status_code": int64(200),
				"downshift.call_id": "01JCALL", "downshift.client_id": "client-7", "downshift.workload": "triage",
				"downshift.route": "reference", "downshift.escalated": false, "downshift.backend": "up",
				"downshift.cost_usd": 0.0003, "downshift.reference_cost_usd": 0.0003, "downshift.simulated": false,
				"downshift.ttft_ms": 120.0,
			},
			absent: []string{"error.type", "downshift.mode", "downshift.second.kind", "gen_ai.response.time_to_first_chunk",
				"downshift.guard", "downshift.tokens_estimated"}},
		{name: "shadowed", call: shadow, spanName: "chat gpt-4o",
			want: map[string]any{"downshift.mode": "shadow", "downshift.policy_version": int64(3), "downshift.candidate": "small",
				"downshift.guard": "pass", "downshift.second.kind": "shadow", "downshift.second.model": "small",
				"downshift.second.agreement": 0.75, "downshift.second.pass": true, "downshift.second.cost_usd": 0.00001},
			absent: []string{"downshift.second.error"}},
		{name: "escalated", call: escalated, spanName: "chat gpt-4o",
			want: map[string]any{"downshift.route": "escalated", "downshift.escalated": true, "downshift.workload": "wl-3f9a",
				"downshift.mode": "serve", "downshift.policy_version": int64(5), "downshift.guard": "tool_known,schema_valid",
				"downshift.second.kind": "rejected", "downshift.second.error": "status 500"},
			absent: []string{"downshift.second.agreement", "downshift.second.pass"}},
		{name: "streamed by the candidate", call: streamed, spanName: "chat gpt-4o",
			want: map[string]any{"gen_ai.request.stream": true, "gen_ai.response.time_to_first_chunk": 0.12,
				"downshift.route": "candidate", "downshift.simulated": true, "downshift.tokens_estimated": true,
				"downshift.reference_cost_usd": 0.002, "downshift.reference_cost_estimated": true}},
		{name: "upstream failed", call: failed, spanName: "chat gpt-4o", status: codes.Error,
			want: map[string]any{"error.type": "server_error", "http.response.status_code": int64(502)},
			absent: []string{"gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.response.finish_reasons",
				"gen_ai.response.id", "downshift.ttft_ms"}},
		{name: "bad request", call: badRequest, spanName: "chat", status: codes.Error,
			want:   map[string]any{"error.type": "invalid_request_error", "gen_ai.operation.name": "chat"},
			absent: []string{"gen_ai.request.model", "downshift.backend", "server.address", "downshift.client_id", "downshift.workload"}},
	}
	exp := keptExporter{tracetest.NewInMemoryExporter()}
	tr, err := New(context.Background(), exp, Options{Backends: map[string]string{"up": "http://10.0.0.5:8000/v1", "bad": "::"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		c := tt.call
		tr.CallFinished(context.Background(), &c)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != len(tests) {
		t.Fatalf("exported %d spans, want %d", len(spans), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spans[i]
			if s.Name != tt.spanName || s.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want %q server", s.Name, s.SpanKind, tt.spanName)
			}
			if !s.StartTime.Equal(tt.call.StartedAt) || !s.EndTime.Equal(tt.call.FinishedAt) {
				t.Errorf("span from %v to %v, want the call's %v to %v", s.StartTime, s.EndTime, tt.call.StartedAt, tt.call.FinishedAt)
			}
			if s.Parent.IsValid() {
				t.Errorf("a call without a traceparent has parent %v", s.Parent)
			}
			if s.Status.Code != tt.status || (tt.status == codes.Error && s.Status.Description != tt.want["error.type"]) {
				t.Errorf("status %v %q, want %v with the error type", s.Status.Code, s.Status.Description, tt.status)
			}
			got := attrMap(s.Attributes)
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || !reflect.DeepEqual(g, v) {
					t.Errorf("%s = %#v (present %v), want %#v", k, g, ok, v)
				}
			}
			for _, k := range tt.absent {
				if g, ok := got[k]; ok {
					t.Errorf("%s = %#v, want it absent", k, g)
				}
			}
			for k, v := range got {
				if s, ok := v.(string); ok && strings.Contains(s, "SECRET") {
					t.Errorf("%s carries payload text: %q", k, s)
				}
			}
		})
	}
}

// keptExporter keeps its spans at shutdown, which the in-memory exporter forgets.
type keptExporter struct{ *tracetest.InMemoryExporter }

func (keptExporter) Shutdown(context.Context) error { return nil }

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func TestServerOf(t *testing.T) {
	tests := []struct {
		url  string
		want server
		ok   bool
	}{
		{"http://10.0.0.5:8000/v1", server{"10.0.0.5", 8000}, true},
		{"https://api.example.com/v1", server{"api.example.com", 443}, true},
		{"http://[::1]:9000/v1", server{"::1", 9000}, true},
		{"http://llm.internal/v1", server{"llm.internal", 80}, true},
		{"not a url", server{}, false},
	}
	for _, tt := range tests {
		got, ok := serverOf(tt.url)
		if got != tt.want || ok != tt.ok {
			t.Errorf("serverOf(%q) = %v, %v; want %v, %v", tt.url, got, ok, tt.want, tt.ok)
		}
	}
}

// TestFromEnvExportsToAnOTLPReceiver configures the tracer as an operator would, with
// OTEL_* variables only, and checks what a collector receives over OTLP/HTTP.
func TestFromEnvExportsToAnOTLPReceiver(t *testing.T) {
	for _, proto := range []string{"http/protobuf", "http/json"} {
		t.Run(proto, func(t *testing.T) {
			clearOTel(t)
			rcv := telemetrytest.NewReceiver(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
			t.Setenv("OTEL_SERVICE_NAME", "gw-test")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
			tr, err := FromEnv(context.Background(), Options{Backends: map[string]string{"up": "http://10.0.0.5:8000/v1"}})
			if err != nil || tr == nil {
				t.Fatalf("FromEnv = %v, %v", tr, err)
			}
			r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			r.Header.Set("tracestate", "vendor=1")
			c := baseCall()
			tr.CallFinished(tr.Parent(r), &c)
			orphan := baseCall()
			orphan.ID = "01JORPHAN"
			tr.CallFinished(tr.Parent(httptest.NewRequest(http.MethodPost, "/", nil)), &orphan)
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := rcv.WaitSpans(t, 2, 5*time.Second)
			if len(spans) != 2 {
				t.Fatalf("received %d spans, want 2", len(spans))
			}
			child, root := spans[0], spans[1]
			if traceID(child) != "4bf92f3577b34da6a3ce929d0e0e4736" || spanID(child.ParentSpanId) != "00f067aa0ba902b7" ||
				child.TraceState != "vendor=1" {
				t.Errorf("child span in trace %s under %s (state %q), want the traceparent's", traceID(child), spanID(child.ParentSpanId), child.TraceState)
			}
			if len(root.ParentSpanId) != 0 || traceID(root) == traceID(child) {
				t.Errorf("span without traceparent has parent %x in trace %s", root.ParentSpanId, traceID(root))
			}
			if child.Name != "chat gpt-4o" || child.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("span %q kind %v", child.Name, child.Kind)
			}
			if got := time.Unix(0, int64(child.StartTimeUnixNano)); !got.Equal(c.StartedAt) {
				t.Errorf("start %v, want %v", got, c.StartedAt)
			}
			a := child.Attrs()
			if a["gen_ai.usage.input_tokens"] != int64(57) || a["downshift.workload"] != "triage" || a["server.port"] != int64(8000) {
				t.Errorf("attributes %v", a)
			}
			if child.Resource["service.name"] != "gw-test" || child.Resource["deployment.environment.name"] != "test" ||
				child.Resource["telemetry.sdk.language"] != "go" {
				t.Errorf("resource %v", child.Resource)
			}
			if child.Scope != scope {
				t.Errorf("scope %q", child.Scope)
			}
			if h := rcv.Headers()[0]; h.Get("X-Tenant") != "acme" {
				t.Errorf("OTEL_EXPORTER_OTLP_HEADERS not sent: %v", h)
			}
			if rcv.Contains([]byte("SECRET")) {
				t.Error("payload text was exported")
			}
		})
	}
}

func TestSamplerFromEnvironment(t *testing.T) {
	clearOTel(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	exp := keptExporter{tracetest.NewInMemoryExporter()}
	tr, err := New(context.Background(), exp, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := baseCall()
	tr.CallFinished(context.Background(), &c)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("always_off exported %d spans", n)
	}
}

type failingExporter struct{ tracetest.NoopExporter }

func (*failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	return errors.New("collector unreachable")
}

func TestExportFailuresAreLogged(t *testing.T) {
	clearOTel(t)
	var logs bytes.Buffer
	tr, err := New(context.Background(), &failingExporter{}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := baseCall()
	tr.CallFinished(context.Background(), &c)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "exporting trace spans failed") || !strings.Contains(logs.String(), "collector unreachable") {
		t.Errorf("log: %s", logs.String())
	}
}

func traceID(s telemetrytest.Span) string { return trace.TraceID(s.TraceId).String() }

func spanID(b []byte) string {
	var id trace.SpanID
	copy(id[:], b)
	return id.String()
}
