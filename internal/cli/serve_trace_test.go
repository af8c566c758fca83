package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/telemetry/telemetrytest"
)

// clearOTelEnv unsets the OTEL_* variables that could turn tracing on, for the test.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, "")
	}
}

func TestServeTracesNothingByDefault(t *testing.T) {
	clearOTelEnv(t)
	srv, _, _ := startTestServer(t, startSim(t, sim.Options{Mode: sim.ModeSynthetic, Seed: 1}))
	defer srv.shutdown(context.Background())
	if srv.tracer != nil {
		t.Fatal("tracing is on without any OTEL_* variable")
	}
}

func TestServeRefusesAGRPCTraceExporter(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	cfg := config.Default()
	cfg.Store.DSN = filepath.Join(t.TempDir(), "downshift.db")
	cfg.Backends = []config.Backend{{Name: "sim", URL: "http://127.0.0.1:9/v1"}}
	cfg.Models = []config.Model{{Name: "gpt-4o", Backend: "sim", Role: "reference", Price: gpt4oPrice}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = startServer(context.Background(), cfg, ln, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL=grpc") {
		t.Fatalf("startServer = %v, want an error naming OTEL_EXPORTER_OTLP_PROTOCOL", err)
	}
}

// TestServeExportsASpanPerCallToOTLP runs the whole server configured by OTEL_*
// variables only, against a local OTLP/HTTP receiver, and checks the span of a plain
// call, a streamed call, a call that carries the agent's traceparent, and a shadowed
// call: their names, GenAI and downshift attributes, parent, and that no prompt,
// answer or key was exported.
func TestServeExportsASpanPerCallToOTLP(t *testing.T) {
	clearOTelEnv(t)
	rcv := telemetrytest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "downshift-test")

	upstream := startSim(t, sim.Options{Mode: sim.ModeSynthetic, Seed: 5})
	cfg := config.Default()
	cfg.Store.DSN = filepath.Join(t.TempDir(), "downshift.db")
	cfg.Backends = []config.Backend{{Name: "sim", URL: upstream}}
	cfg.Models = []config.Model{
		{Name: "gpt-4o", Backend: "sim", Role: "reference", Price: gpt4oPrice},
		{Name: "small", Backend: "sim", Role: "candidate", Price: config.Price{InputPerMTok: 0.02, OutputPerMTok: 0.05}},
	}
	key := createKey(t, cfg.Store.DSN, store.Key{Kind: store.KeyGateway, Name: "test-agent"})
	st, err := openStore(context.Background(), "sqlite", cfg.Store.DSN)
	if err != nil {
		t.Fatal(err)
	}
	p := store.Policy{Workload: "shadowed", Mode: store.ModeShadow, Candidate: "small", ShadowShare: 1,
		At: time.Now(), Actor: "cli", ActorName: "test", Reason: "test"}
	if _, err := st.SavePolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(context.Background(), cfg, ln, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if srv.tracer == nil {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off")
	}

	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	requests := []struct {
		name, workload, traceparent, prompt string
		stream                              bool
	}{
		{name: "plain", workload: "triage", prompt: "PROMPT-PLAIN-a41c: say hello."},
		{name: "streamed", prompt: "PROMPT-STREAM-77d0: count to three.", stream: true},
		{name: "traceparent", workload: "triage", traceparent: "00-" + traceID + "-" + parentID + "-01",
			prompt: "PROMPT-PARENT-5e1b: label this ticket."},
		{name: "shadowed", workload: "shadowed", prompt: "PROMPT-SHADOW-0c93: which tool?"},
	}
	callIDs := map[string]string{} // request name -> call id, from the record
	for _, r := range requests {
		body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "stream": r.stream,
			"messages": []map[string]string{{"role": "user", "content": r.prompt}}})
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.addr+"/v1/chat/completions", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+key)
		if r.workload != "" {
			req.Header.Set("X-Downshift-Workload", r.workload)
		}
		if r.traceparent != "" {
			req.Header.Set("traceparent", r.traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if !complete(resp, r.stream) {
			t.Fatalf("%s: no complete answer (status %d)", r.name, resp.StatusCode)
		}
	}
	calls := storedCalls(t, srv, cfg.Store.DSN) // shuts the server down, which flushes the spans
	if len(calls) != len(requests) {
		t.Fatalf("stored %d calls, want %d", len(calls), len(requests))
	}
	byCall := map[string]store.Call{}
	for i, c := range calls {
		callIDs[requests[i].name] = c.ID
		byCall[c.ID] = c
	}

	spans := rcv.WaitSpans(t, len(requests), 5*time.Second)
	if len(spans) != len(requests) {
		t.Fatalf("received %d spans, want one per call (%d)", len(spans), len(requests))
	}
	byID := map[string]telemetrytest.Span{}
	for _, s := range spans {
		id, _ := s.Attrs()["downshift.call_id"].(string)
		byID[id] = s
	}
	simURL, _ := url.Parse(upstream)
	simPort, _ := strconv.Atoi(simURL.Port())
	for _, r := range requests {
		t.Run(r.name, func(t *testing.T) {
			c := byCall[callIDs[r.name]]
			s, ok := byID[c.ID]
			if !ok {
				t.Fatalf("no span for call %s", c.ID)
			}
			if s.Name != "chat gpt-4o" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("span %q kind %v", s.Name, s.Kind)
			}
			if s.Resource["service.name"] != "downshift-test" {
				t.Errorf("resource %v", s.Resource)
			}
			start, end := time.Unix(0, int64(s.StartTimeUnixNano)), time.Unix(0, int64(s.EndTimeUnixNano))
			// The store keeps microseconds; the span has the gateway's own times.
			if d := start.Sub(c.StartedAt); d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("span starts %v, call %v", start, c.StartedAt)
			}
			if d := end.Sub(c.FinishedAt); d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("span ends %v, call %v", end, c.FinishedAt)
			}
			want := map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
				"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o", "gen_ai.request.stream": r.stream,
				"gen_ai.usage.input_tokens": int64(c.PromptTokens), "gen_ai.usage.output_tokens": int64(c.CompletionTokens),
				"server.address": "127.0.0.1", "server.port": int64(simPort), "http.response.status_code": int64(200),
				"downshift.route": "reference", "downshift.escalated": false, "downshift.backend": "sim",
				"downshift.client_id": c.ClientID, "downshift.cost_usd": c.CostUSD, "downshift.simulated": c.Simulated,
				"downshift.reference_cost_usd": c.ReferenceCostUSD,
			}
			if r.workload != "" {
				want["downshift.workload"] = r.workload
			}
			if r.name == "shadowed" {
				want["downshift.mode"] = "shadow"
				want["downshift.candidate"] = "small"
				want["downshift.second.kind"] = "shadow"
				want["downshift.second.model"] = "small"
				want["downshift.second.agreement"] = c.Second.Agreement
			}
			a := s.Attrs()
			for k, v := range want {
				if a[k] != v {
					t.Errorf("%s = %#v, want %#v", k, a[k], v)
				}
			}
			if c.PromptTokens == 0 || c.ClientID == "" {
				t.Errorf("the call has no tokens or client: %+v", c)
			}
			if reasons, _ := a["gen_ai.response.finish_reasons"].([]any); len(reasons) != 1 {
				t.Errorf("finish reasons %v", a["gen_ai.response.finish_reasons"])
			}
			if r.stream {
				if ttfc, _ := a["gen_ai.response.time_to_first_chunk"].(float64); ttfc <= 0 {
					t.Errorf("streamed call without time to first chunk: %v", a)
				}
			}
			gotTrace := trace.TraceID(s.TraceId).String()
			if r.traceparent != "" {
				var parent trace.SpanID
				copy(parent[:], s.ParentSpanId)
				if gotTrace != traceID || parent.String() != parentID {
					t.Errorf("span in trace %s under %s, want the agent's %s under %s", gotTrace, parent, traceID, parentID)
				}
			} else if len(s.ParentSpanId) != 0 || gotTrace == traceID {
				t.Errorf("a call without traceparent has parent %x in trace %s", s.ParentSpanId, gotTrace)
			}
		})
	}

	// Nothing of a payload or a key is exported: not the prompts, not the answers.
	secrets := []string{key}
	for _, r := range requests {
		secrets = append(secrets, r.prompt)
	}
	for _, c := range calls {
		var cc openai.ChatCompletion
		if err := json.Unmarshal(c.Response, &cc); err != nil || len(cc.Choices) == 0 {
			t.Fatalf("stored response of %s: %v", c.ID, err)
		}
		if text := cc.Choices[0].Message.Content.String(); len(text) >= 8 {
			secrets = append(secrets, text)
		}
	}
	for _, s := range secrets {
		if rcv.Contains([]byte(s)) {
			t.Errorf("exported spans contain %q", s)
		}
	}
}
