// Package telemetrytest is an OTLP/HTTP trace receiver for tests: a real HTTP server
// on a loopback socket that accepts POST /v1/traces (protobuf, or JSON, optionally
// gzipped), as a collector does, and keeps what it was sent. It is for tests only; it
// is not a collector.
package telemetrytest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Receiver is a local OTLP/HTTP trace receiver. Point OTEL_EXPORTER_OTLP_ENDPOINT at
// URL.
type Receiver struct {
	URL string // base URL, e.g. http://127.0.0.1:41234 (spans go to URL/v1/traces)

	mu       sync.Mutex
	bodies   [][]byte // the request bodies as sent (decompressed)
	spans    []Span
	headers  []http.Header
	rejected []string // why requests were refused
}

// Span is one received span with its resource's attributes.
type Span struct {
	Resource map[string]any
	Scope    string
	*tracepb.Span
}

// Attrs returns the span's attributes by key (see Value).
func (s Span) Attrs() map[string]any { return Attrs(s.Attributes) }

// NewReceiver starts a receiver that stops when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		r.reject(w, http.StatusNotFound, fmt.Sprintf("%s %s", req.Method, req.URL.Path))
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			r.reject(w, http.StatusBadRequest, "gzip: "+err.Error())
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		r.reject(w, http.StatusBadRequest, "read: "+err.Error())
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	ct := req.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/x-protobuf"):
		err = proto.Unmarshal(raw, &msg)
	case strings.HasPrefix(ct, "application/json"):
		err = unmarshalJSON(raw, &msg)
	default:
		r.reject(w, http.StatusUnsupportedMediaType, "content type "+ct)
		return
	}
	if err != nil {
		r.reject(w, http.StatusBadRequest, "decode: "+err.Error())
		return
	}
	r.mu.Lock()
	r.bodies = append(r.bodies, raw)
	r.headers = append(r.headers, req.Header.Clone())
	for _, rs := range msg.ResourceSpans {
		res := Attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r.spans = append(r.spans, Span{Resource: res, Scope: ss.GetScope().GetName(), Span: sp})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *Receiver) reject(w http.ResponseWriter, status int, why string) {
	r.mu.Lock()
	r.rejected = append(r.rejected, why)
	r.mu.Unlock()
	http.Error(w, why, status)
}

// Spans returns the spans received so far, in the order they came.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Bodies returns the export requests' bodies as they were sent, decompressed.
func (r *Receiver) Bodies() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// Headers returns the export requests' headers.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// Rejected says why requests were refused (wrong path, method or encoding).
func (r *Receiver) Rejected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rejected...)
}

// WaitSpans waits up to timeout until n spans have come and returns them; it fails
// the test when fewer came.
func (r *Receiver) WaitSpans(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if len(spans) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d spans, want %d (refused requests: %q)", len(spans), n, r.Rejected())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Contains reports whether any export request's body holds b: to check that
// something (a prompt, a key) was never exported.
func (r *Receiver) Contains(b []byte) bool {
	for _, body := range r.Bodies() {
		if bytes.Contains(body, b) {
			return true
		}
	}
	return false
}

// Attrs returns OTLP attributes by key, each as its Go value (see Value).
func Attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = Value(kv.Value)
	}
	return m
}

// Value is an OTLP value as Go: string, bool, int64, float64, []any, or nil.
func Value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.Values))
		for _, e := range x.ArrayValue.Values {
			out = append(out, Value(e))
		}
		return out
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	}
	return nil
}

// unmarshalJSON decodes OTLP/JSON, whose trace and span ids are hex where protojson
// expects base64.
func unmarshalJSON(raw []byte, msg *coltracepb.ExportTraceServiceRequest) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	if err := hexIDsToBase64(v); err != nil {
		return err
	}
	fixed, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(fixed, msg)
}

func hexIDsToBase64(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
				x[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	}
	return nil
}
