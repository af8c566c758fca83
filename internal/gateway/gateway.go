// Package gateway is downshift's hot path: the OpenAI-compatible HTTP handlers and the
// one route table. A chat completion is decoded, tagged with its workload and template
// fingerprint, sent to the backend that serves the requested model (with fallbacks),
// answered to the client byte for byte, and handed to the recorder as one store.Call.
//
// The gateway never waits for the store: recording is an enqueue. It imports no
// cold-path package (discover, eval, tune, web, dataset); a test enforces that.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
)

// Recorder takes finished calls. Enqueue must not block for long; an error means the
// call was dropped (the recorder counts and logs drops).
type Recorder interface {
	Enqueue(c store.Call) error
}

// Authenticator checks the key a request presents. *auth.Keys implements it.
type Authenticator interface {
	Gateway(token string) (*auth.Client, error)
}

// CallTracer makes a trace span of every finished call (a *telemetry.Tracer).
type CallTracer interface {
	// Parent returns the trace context the request carries (W3C traceparent), for the
	// call's span to be its child. The handler calls it once per call; it reads headers.
	Parent(r *http.Request) context.Context
	// CallFinished makes the span of a finished call, as its record is enqueued (with
	// its second answer, when it has one). It must not block.
	CallFinished(parent context.Context, c *store.Call)
}

// Options configure a Gateway. Catalog and Recorder are required.
type Options struct {
	Catalog  *backend.Catalog
	Recorder Recorder
	// Keys checks gateway keys. nil serves every request without a key (open mode,
	// which the composition root allows only when configured and warns about).
	Keys Authenticator
	// Ready reports whether the store can take writes, for /readyz. nil: always ready.
	Ready func(ctx context.Context) error
	// MaxBodyBytes caps request bodies (413 above it). 0: 8 MiB.
	MaxBodyBytes int64
	// Tokens estimates usage when an upstream reports none. nil: one is built.
	Tokens *tokens.Counter
	// Logger receives operational logs; never payloads or keys. nil: discard.
	Logger *slog.Logger
	// Registerer takes the gateway's metrics; Gatherer serves /metrics. nil: a
	// private registry is used for both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// NewID makes call ids, which must sort by time. nil: ULIDs.
	NewID func() string

	// Policies gives the workloads' current shift policies (a *policy.Refresher).
	// nil: nothing is shifted; the reference answers every call.
	Policies policy.Snapshots
	// Workloads finds the workload of a call its client did not tag. nil: only tagged
	// calls are shifted.
	Workloads WorkloadFinder
	// Observer receives the candidates' guard results and agreement (a
	// *policy.Monitor). nil: they are recorded only.
	Observer Observer
	// Schemas compiles the schemas the guards and comparisons check. nil: a cache of
	// the gateway's own.
	Schemas *compare.Schemas
	// RefusalPhrases make the not_refusal guard also refuse answers that open with
	// one (see guard.Options). nil: only the refusal field counts.
	RefusalPhrases []string
	// SecondConcurrency bounds the second answers (shadow, verification) in flight;
	// a call over it gets none, and its record says so. 0: DefaultSecondConcurrency.
	SecondConcurrency int
	// SecondTimeout bounds one second answer. 0: DefaultSecondTimeout.
	SecondTimeout time.Duration

	// Tracer makes a trace span of every call as it is recorded. nil: no spans, and no
	// trace header is read.
	Tracer CallTracer
}

// Gateway serves the OpenAI-compatible API. Build it with New.
type Gateway struct {
	catalog  *backend.Catalog
	recorder Recorder
	keys     Authenticator
	ready    func(ctx context.Context) error
	maxBody  int64
	tokens   *tokens.Counter
	log      *slog.Logger
	metrics  *metrics
	gatherer prometheus.Gatherer
	now      func() time.Time
	newID    func() string
	handler  http.Handler
	shift    *shifter
	tracer   CallTracer // nil: no spans
}

// New builds a gateway.
func New(o Options) (*Gateway, error) {
	if o.Catalog == nil || o.Recorder == nil {
		return nil, errors.New("gateway: Catalog and Recorder are required")
	}
	g := &Gateway{
		catalog:  o.Catalog,
		recorder: o.Recorder,
		keys:     o.Keys,
		ready:    o.Ready,
		maxBody:  o.MaxBodyBytes,
		tokens:   o.Tokens,
		log:      o.Logger,
		now:      o.Now,
		newID:    o.NewID,
		gatherer: o.Gatherer,
		tracer:   o.Tracer,
	}
	if g.maxBody <= 0 {
		g.maxBody = 8 << 20
	}
	if g.tokens == nil {
		t, err := tokens.New()
		if err != nil {
			return nil, err
		}
		g.tokens = t
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.newID == nil {
		g.newID = func() string { return ulid.Make().String() }
	}
	reg := o.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, g.gatherer = r, r
	}
	if g.gatherer == nil {
		g.gatherer = prometheus.DefaultGatherer
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	g.shift = newShifter(o)
	g.handler = g.routes()
	return g, nil
}

// ServeHTTP serves the gateway's routes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// routes is the one route table.
func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", g.chat)
	mux.Handle("GET /v1/models", g.adapt(g.listModels))
	mux.Handle("POST /v1/embeddings", g.adapt(g.embeddings))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /readyz", g.adapt(g.readyz))
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.gatherer, promhttp.HandlerOpts{}))
	for _, p := range []string{"/v1/chat/completions", "/v1/models", "/v1/embeddings"} {
		mux.Handle(p, g.adapt(methodNotAllowed))
	}
	mux.Handle("/", g.adapt(func(_ http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: "unknown_url",
			msg: fmt.Sprintf("Unknown request URL: %s %s.", r.Method, r.URL.Path)}
	}))
	return mux
}

func methodNotAllowed(_ http.ResponseWriter, r *http.Request) error {
	return &apiError{status: http.StatusMethodNotAllowed, typ: typeInvalidRequest, code: "method_not_allowed",
		msg: fmt.Sprintf("Method %s is not allowed on %s.", r.Method, r.URL.Path)}
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) error {
	if g.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := g.ready(ctx); err != nil {
			g.log.Warn("not ready: store check failed", "err", err)
			return &apiError{status: http.StatusServiceUnavailable, typ: typeServer, msg: "store is not writable", cause: err}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := w.Write([]byte("ready\n"))
	return err
}

// adapt turns a handler that returns an error into an http.Handler that answers with
// OpenAI's error JSON. The client sees only the apiError's message; the cause is logged.
func (g *Gateway) adapt(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			ae := asAPIError(err)
			if ae.cause != nil {
				g.log.Warn("request failed", "path", r.URL.Path, "status", ae.status, "err", ae.cause)
			}
			writeError(w, ae)
		}
	})
}

// readBody reads a request body of at most maxBody bytes, sized from Content-Length
// when the client sent one, so a large agent request is read without regrowing. Its
// errors are the client's: 413 over the limit, 400 otherwise.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, g.maxBody)
	var buf []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= g.maxBody {
		buf = make([]byte, n)
		_, err = io.ReadFull(body, buf)
	} else {
		buf, err = io.ReadAll(body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: typeInvalidRequest, code: "request_too_large",
				msg: fmt.Sprintf("Request body exceeds the limit of %d bytes.", mbe.Limit)}
		}
		return nil, &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, msg: "Could not read the request body.", cause: err}
	}
	return buf, nil
}

// authenticate checks the request's gateway key. It returns the client (nil in open
// mode) or the error the client gets: 401 without a valid key, 429 over its rate.
func (g *Gateway) authenticate(r *http.Request) (*auth.Client, error) {
	if g.keys == nil {
		return nil, nil
	}
	c, err := g.keys.Gateway(auth.BearerToken(r))
	if err == nil {
		return c, nil
	}
	var rl *auth.RateLimitError
	switch {
	case errors.As(err, &rl):
		g.metrics.authFailures.WithLabelValues("rate_limited").Inc()
		return c, &apiError{status: http.StatusTooManyRequests, typ: typeRateLimit, code: "rate_limit_exceeded",
			retryAfter: rl.RetryAfterSeconds(),
			msg:        fmt.Sprintf("Rate limit reached for this key; retry after %d s.", rl.RetryAfterSeconds())}
	case errors.Is(err, auth.ErrMissingKey):
		g.metrics.authFailures.WithLabelValues("missing_key").Inc()
		return nil, &apiError{status: http.StatusUnauthorized, typ: typeAuthentication, challenge: true,
			msg: "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."}
	default:
		g.metrics.authFailures.WithLabelValues("invalid_key").Inc()
		return nil, &apiError{status: http.StatusUnauthorized, typ: typeAuthentication, code: "invalid_api_key", challenge: true,
			msg: "Incorrect API key provided."}
	}
}

// allowed returns the 403 a client gets for a model its key may not use, or nil. The
// key may name the model as the client asks for it or as configured.
func allowed(c *auth.Client, model, served string) error {
	if c == nil || c.Allows(model) || c.Allows(served) {
		return nil
	}
	return &apiError{status: http.StatusForbidden, typ: typePermission, code: "model_not_allowed", param: "model",
		msg: fmt.Sprintf("This key may not use the model `%s`.", model)}
}
