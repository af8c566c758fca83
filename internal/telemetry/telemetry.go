// Package telemetry exports an OpenTelemetry trace span for every chat-completion call
// the gateway finishes, over OTLP/HTTP, configured by the standard OTEL_* environment
// variables and off unless they ask for it.
//
// The span is made after the fact, from the finished store.Call, when the gateway hands
// the call to the recorder: the request path gains no span bookkeeping, and a span
// carries everything the record does (tokens, cost, route, second answer). It holds
// GenAI semantic-convention attributes (semconv v1.41.0) and downshift's own
// (downshift.*), never a prompt, an answer or a key.
//
// It is not a metrics or logs pipeline (the gateway's metrics are Prometheus), and it
// does not trace the gateway's own steps or its upstream requests.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/downshift-dev/downshift/internal/store"
)

// scope is the instrumentation scope of downshift's spans.
const scope = "github.com/downshift-dev/downshift/internal/telemetry"

// Options configure a Tracer.
type Options struct {
	// Backends maps the configured backends' names to their base URLs, for the spans'
	// server.address and server.port. A backend missing here gets neither.
	Backends map[string]string
	// Logger receives export failures (never span contents). nil: discard.
	Logger *slog.Logger
}

// Tracer makes one span of every finished call and exports it in batches. Its methods
// are safe for concurrent use; a nil *Tracer is off and does nothing.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TraceContext
	servers  map[string]server
	attrs    sync.Pool // *[]attribute.KeyValue that callAttributes fills, one per call in flight
}

// server is a backend's address, as server.address and server.port.
type server struct {
	address string
	port    int
}

// FromEnv returns the tracer the process environment asks for, exporting over
// OTLP/HTTP, or nil when tracing is off (the default). It is on when
// OTEL_TRACES_EXPORTER names otlp, or when it is unset and OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; it is off whenever OTEL_SDK_DISABLED is
// true or OTEL_TRACES_EXPORTER is none. The exporter reads the rest of the
// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout, compression, TLS), and the
// SDK reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG) and
// OTEL_BSP_*. A gRPC protocol is an error: this build speaks OTLP over HTTP only.
func FromEnv(ctx context.Context, o Options) (*Tracer, error) {
	on, err := enabled(os.Getenv, o.logger())
	if err != nil || !on {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP/HTTP trace exporter: %w", err)
	}
	return New(ctx, exp, o)
}

// Endpoint describes where FromEnv's exporter sends spans, for a log line: the
// traces endpoint, else the OTLP endpoint with /v1/traces, else OTLP/HTTP's default,
// without any user information the URL may carry.
func Endpoint() string {
	if v := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); v != "" {
		return redactURL(v)
	}
	if v := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); v != "" {
		return strings.TrimRight(redactURL(v), "/") + "/v1/traces"
	}
	return "https://localhost:4318/v1/traces"
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

// enabled reads the variables that decide whether traces are exported. An exporter
// name other than otlp and none is logged and ignored, as the specification asks.
func enabled(getenv func(string) string, log *slog.Logger) (bool, error) {
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		return false, nil
	}
	exporters := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	on := false
	if exporters == "" {
		// The specification's default is otlp; downshift's is off, so that a gateway
		// nobody asked to trace never tries to reach a collector. An endpoint is asking.
		on = getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	}
	for _, e := range strings.Split(exporters, ",") {
		switch e = strings.ToLower(strings.TrimSpace(e)); e {
		case "":
		case "none":
			return false, nil
		case "otlp":
			on = true
		default:
			log.Warn("ignoring a trace exporter downshift does not have; it exports only otlp", "OTEL_TRACES_EXPORTER", e)
		}
	}
	if !on {
		return false, nil
	}
	// The traces-specific variable wins over the general one, as in the exporter.
	key := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	proto := strings.TrimSpace(getenv(key))
	if proto == "" {
		key = "OTEL_EXPORTER_OTLP_PROTOCOL"
		proto = strings.TrimSpace(getenv(key))
	}
	switch proto {
	case "", "http/protobuf", "http/json":
	case "grpc":
		return false, fmt.Errorf("%s=grpc: downshift exports traces over OTLP/HTTP only (http/protobuf, port 4318 by default)", key)
	default:
		return false, fmt.Errorf("%s=%q: unknown protocol (use http/protobuf or http/json)", key, proto)
	}
	return true, nil
}

// New returns a tracer that exports its spans to exp in batches (the batch processor
// reads OTEL_BSP_*), with the resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (service.name defaults to downshift) and the sampler from
// OTEL_TRACES_SAMPLER (parent-based always-on by default). Shutdown flushes it.
func New(ctx context.Context, exp sdktrace.SpanExporter, o Options) (*Tracer, error) {
	if exp == nil {
		return nil, errors.New("telemetry: an exporter is required")
	}
	// Later detectors win: the environment overrides the default service name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("downshift")),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource from OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(loggingExporter{SpanExporter: exp, log: o.logger()}),
	)
	t := &Tracer{
		provider: tp,
		tracer:   tp.Tracer(scope, trace.WithSchemaURL(semconv.SchemaURL)),
		servers:  make(map[string]server, len(o.Backends)),
		attrs:    sync.Pool{New: func() any { s := make([]attribute.KeyValue, 0, 40); return &s }},
	}
	for name, base := range o.Backends {
		if s, ok := serverOf(base); ok {
			t.servers[name] = s
		}
	}
	return t, nil
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// serverOf is a backend's host and port, the port from the scheme when the URL has
// none.
func serverOf(base string) (server, bool) {
	u, err := url.Parse(base)
	if err != nil || u.Hostname() == "" {
		return server{}, false
	}
	s := server{address: u.Hostname()}
	if p := u.Port(); p != "" {
		s.port, _ = strconv.Atoi(p)
	} else if port, err := net.LookupPort("tcp", u.Scheme); err == nil {
		s.port = port
	}
	return s, true
}

// Parent returns the trace context the request carries in its W3C traceparent and
// tracestate headers, for the call's span to be its child; without them, a context
// whose span becomes a trace's root. It reads headers only, so it costs little, and
// it is not the request's context: the span may be made after the request has ended.
func (t *Tracer) Parent(r *http.Request) context.Context {
	if t == nil {
		return context.Background()
	}
	return t.prop.Extract(context.Background(), propagation.HeaderCarrier(r.Header))
}

// CallFinished makes c's span, a child of parent (see Parent), starting and ending
// when the call did. It does not block: the batch processor queues the span, and drops
// it when its queue is full.
func (t *Tracer) CallFinished(parent context.Context, c *store.Call) {
	if t == nil {
		return
	}
	if parent == nil {
		parent = context.Background()
	}
	name := operationChat
	if c.RequestedModel != "" {
		name += " " + c.RequestedModel
	}
	// SERVER, where the GenAI conventions' inference span is CLIENT: that span is the
	// caller's view of a model call, which the agent's own instrumentation records and
	// sends us as traceparent. This span is the gateway handling that request, from its
	// receipt to its last byte (upstream attempts, fallbacks and escalation inside it),
	// the server side of the agent's CLIENT span, which is how tracing backends pair
	// calls between services. The GenAI attributes describe the call all the same.
	// The attributes a sampler may read are given at the start, as the conventions ask.
	start := [...]attribute.KeyValue{semconv.GenAIOperationNameChat, providerOpenAI, semconv.GenAIRequestModel(c.RequestedModel)}
	attrs := start[:]
	if c.RequestedModel == "" {
		attrs = start[:2] // a request too broken to name its model
	}
	_, span := t.tracer.Start(parent, name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(c.StartedAt),
		trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		return // not sampled: the rest would be built for nothing
	}
	srv, known := t.servers[c.Backend]
	buf := t.attrs.Get().(*[]attribute.KeyValue)
	*buf = callAttributes((*buf)[:0], c, srv, known)
	span.SetAttributes(*buf...) // copies them
	clear(*buf)                 // drop the strings' references while pooled
	t.attrs.Put(buf)
	if c.Status >= 400 {
		// The call failed for its client, whatever the HTTP server conventions say of
		// 4xx: downshift's client is an agent whose model call did not happen. The
		// description is the error's type, never its message (which may quote input).
		span.SetStatus(codes.Error, errorType(c))
	}
	span.End(trace.WithTimestamp(c.FinishedAt))
}

// Shutdown exports the spans still queued and stops the tracer; later calls make no
// spans. A server calls it once its gateway has drained, so every call's span is in.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: flushing spans: %w", err)
	}
	return nil
}

// loggingExporter logs a failed export with downshift's logger instead of the SDK's
// global error handler, which would print to stderr. The spans of a failed batch are
// lost either way (the OTLP exporter has retried by then).
type loggingExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
}

func (e loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.log.Warn("exporting trace spans failed; they are lost", "spans", len(spans), "err", err)
	}
	return nil
}
