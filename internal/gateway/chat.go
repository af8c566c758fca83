package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/workload"
)

// Response headers that tell the client what downshift did.
const (
	HeaderWorkload = "X-Downshift-Workload"
	HeaderRoute    = "X-Downshift-Route"
	HeaderModel    = "X-Downshift-Model"
	// HeaderSimulated is set by upstreams (downshift's simulator) on answers that are not
	// the named model's own: invented, degraded, or another model's replayed answer.
	HeaderSimulated = "X-Downshift-Simulated"
)

// statusClientClosed is recorded when the client went away before its answer was
// complete (nginx's convention; never sent, since nobody is listening).
const statusClientClosed = 499

// maxResponseBytes caps a non-streamed upstream answer held in memory.
const maxResponseBytes = 64 << 20

// passHeaders are upstream response headers worth passing to the client.
var passHeaders = []string{"X-Request-Id", "Openai-Processing-Ms", "Retry-After", HeaderSimulated, "X-Downshift-Replayed"}

// errAborted means the answer was cut after bytes reached the client; the only honest
// thing left is to abort the connection so the client does not take it as complete.
var errAborted = errors.New("stream aborted")

// exchange is one chat call in flight.
type exchange struct {
	client      *auth.Client // nil in open mode
	call        *store.Call
	head        *openai.Head   // what the hot path reads of the request
	body        []byte         // the client's bytes
	model       *backend.Model // the model whose answer the client gets, for its price
	headersSent bool

	reference *backend.Model         // the model the client asked for, resolved
	decision  policy.Decision        // the workload policy's decision for the call
	answer    *openai.ChatCompletion // the answer the client got, once it has it
	second    *secondPlan            // a second answer to ask for afterwards; nil for none
	handled   <-chan struct{}        // closed once the handler has returned (or the client left)
	parent    context.Context        // the client's trace context, for the call's span; nil without a tracer
}

// chat serves POST /v1/chat/completions. Every outcome, including bad requests,
// becomes exactly one recorded call.
func (g *Gateway) chat(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	client, err := g.authenticate(r)
	if err != nil {
		// Refused before it became a call: counted, not recorded, so that nobody
		// without a key can fill the store.
		writeError(w, asAPIError(err))
		return
	}
	x := &exchange{client: client, call: &store.Call{ID: g.newID(), StartedAt: start, Route: store.RouteReference},
		handled: r.Context().Done()}
	if client != nil {
		x.call.ClientID = client.ClientID
	}
	if g.tracer != nil {
		x.parent = g.tracer.Parent(r)
	}
	err = g.serveChat(w, r, x)
	if err != nil && !errors.Is(err, errAborted) && !x.headersSent {
		ae := asAPIError(err)
		if ae.cause != nil {
			g.log.Warn("chat completion failed", "call", x.call.ID, "status", ae.status, "err", ae.cause)
		}
		x.call.Status, x.call.ErrorType, x.call.ErrorMessage = ae.status, ae.typ, ae.msg
		if x.call.Response == nil {
			x.call.Response = ae.bytes()
		}
		if r.Context().Err() == nil {
			writeError(w, ae)
		} else {
			x.call.Status, x.call.ErrorType = statusClientClosed, "client_closed_request"
		}
	}
	c := x.call
	c.FinishedAt = g.now()
	c.Latency = c.FinishedAt.Sub(start)
	x.fingerprint() // after the answer, unless a policy needed it before
	g.priceReference(x)
	g.metrics.observe(c)
	g.finishSecond(x)
	if errors.Is(err, errAborted) {
		panic(http.ErrAbortHandler)
	}
}

func (g *Gateway) serveChat(w http.ResponseWriter, r *http.Request, x *exchange) error {
	c := x.call
	body, err := g.readBody(w, r)
	if err != nil {
		return err
	}
	x.body = body
	c.Request = body
	head, err := openai.ScanChatRequest(body)
	if err != nil {
		var re *openai.RequestError
		if errors.As(err, &re) {
			return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, msg: re.Message, param: re.Param}
		}
		return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, msg: "Invalid request body."}
	}
	x.head = head
	c.RequestedModel = head.Model
	c.Stream = head.Stream
	c.Workload = workload.TagValue(r.Header.Get(HeaderWorkload), head.Workload)

	m, ok := g.catalog.Resolve(head.Model)
	if !ok {
		return &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: "model_not_found", param: "model",
			msg: fmt.Sprintf("The model `%s` does not exist or is not served by this gateway.", head.Model)}
	}
	if err := allowed(x.client, head.Model, m.Name); err != nil {
		return err
	}
	x.reference = m
	cand, d := g.decide(x, m)
	x.decision = d
	if cand != nil && d.Route == store.RouteCandidate {
		return g.serveCandidate(w, r, x, m, cand, d)
	}
	if cand != nil && d.Shadow {
		x.second = &secondPlan{kind: store.SecondShadow, model: cand}
	}
	return g.serveReference(w, r, x, m)
}

// fingerprint sets the call's template fingerprint once its request has been read.
// It is only needed before the upstream is asked when a policy must find the call's
// workload by it, so it is otherwise left until the client has its answer.
func (x *exchange) fingerprint() string {
	if c := x.call; c.Fingerprint == "" && x.head != nil {
		c.Fingerprint = workload.Fingerprint(x.head.Request())
	}
	return x.call.Fingerprint
}

// serveReference has m (or its fallbacks) answer the call.
func (g *Gateway) serveReference(w http.ResponseWriter, r *http.Request, x *exchange, m *backend.Model) error {
	c := x.call
	resp, up, err := g.send(r.Context(), x, m)
	if err != nil {
		return err
	}
	defer resp.body.Close()
	x.model = up
	c.ServedModel, c.Backend = up.Name, up.Backend.Name()
	if resp.first != nil {
		return g.relayStream(w, r, x, resp)
	}
	return g.relayWhole(w, x, resp)
}

// priceReference sets what the call would have cost had the reference answered it:
// its cost when the reference did, else the reference's prices applied to the
// candidate's tokens (a verification answer replaces the estimate with the real cost).
func (g *Gateway) priceReference(x *exchange) {
	c := x.call
	if c.Route != store.RouteCandidate {
		c.ReferenceCostUSD = c.CostUSD
		return
	}
	if x.reference != nil {
		c.ReferenceCostUSD = x.reference.Cost(c.PromptTokens, c.CompletionTokens, c.CachedTokens)
		c.ReferenceCostEstimated = true
	}
}

// upstreamResponse is a backend's answer that has passed the point of no return: for
// a stream, its first event has arrived; otherwise, its whole body.
type upstreamResponse struct {
	header http.Header
	status int
	body   io.ReadCloser
	whole  []byte        // non-streamed body
	sse    eventSource   // streamed body, positioned after first
	first  *openai.Event // first event of a stream
}

// eventSource is where a relay reads a stream's events: the upstream's SSE reader,
// or a stream held whole to be checked first.
type eventSource interface {
	Next() (openai.Event, error)
	// EventBuffered reports whether Next will return without waiting.
	EventBuffered() bool
}

// send tries m and then its fallbacks until one answers. A failure moves on only when
// it is retryable and nothing has reached the client (nothing has, here: send returns
// before any byte is written).
func (g *Gateway) send(ctx context.Context, x *exchange, m *backend.Model) (*upstreamResponse, *backend.Model, error) {
	candidates := append([]*backend.Model{m}, m.Fallbacks...)
	var lastErr error
	for i, cm := range candidates {
		if i > 0 {
			g.metrics.fallbacks.WithLabelValues(m.Name, cm.Name).Inc()
			g.log.Info("falling back", "call", x.call.ID, "from", candidates[i-1].Name, "to", cm.Name, "err", lastErr)
		}
		resp, err := g.attempt(ctx, x, cm)
		if err == nil {
			return resp, cm, nil
		}
		lastErr = err
		var be *backend.Error
		if ctx.Err() != nil || !errors.As(err, &be) || !be.Retryable() {
			break
		}
	}
	x.call.ServedModel = ""
	return nil, nil, g.upstreamError(ctx, lastErr)
}

// attempt makes one request to one model's backend and reads up to the point of no
// return.
func (g *Gateway) attempt(ctx context.Context, x *exchange, m *backend.Model) (*upstreamResponse, error) {
	// For streams, ask for usage so the call is recorded with real token counts; the
	// extra chunk is stripped again when the client did not ask for it.
	body, err := x.head.Forward(x.body, m.UpstreamName, x.head.Stream)
	if err != nil {
		return nil, &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, msg: "Invalid request body.", cause: err}
	}
	accept := "application/json"
	if x.head.Stream {
		accept = "text/event-stream"
	}
	x.call.Backend = m.Backend.Name()
	resp, err := m.Backend.Post(ctx, "/chat/completions", body, accept)
	if err != nil {
		g.countUpstreamError(m.Backend.Name(), err)
		return nil, err
	}
	u := &upstreamResponse{header: resp.Header, status: resp.StatusCode, body: resp.Body}
	if x.head.Stream && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		u.sse = openai.NewSSEReader(resp.Body)
		ev, err := u.sse.Next()
		if err != nil {
			resp.Body.Close()
			err = &backend.Error{Backend: m.Backend.Name(), Kind: backend.KindConnect}
			g.metrics.upstreamErrors.WithLabelValues(m.Backend.Name(), "stream").Inc()
			return nil, err
		}
		u.first = &ev
		return u, nil
	}
	u.whole, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		resp.Body.Close()
		g.metrics.upstreamErrors.WithLabelValues(m.Backend.Name(), "connect").Inc()
		return nil, &backend.Error{Backend: m.Backend.Name(), Kind: backend.KindConnect}
	}
	return u, nil
}

func (g *Gateway) countUpstreamError(backendName string, err error) {
	var be *backend.Error
	if !errors.As(err, &be) {
		return
	}
	kind := be.Kind.String()
	switch be.Kind {
	case backend.KindCanceled:
		return
	case backend.KindStatus:
		kind = strconv.Itoa(be.Status)
	}
	g.metrics.upstreamErrors.WithLabelValues(backendName, kind).Inc()
}

// upstreamError turns the last backend failure into the client's error. Errors that
// are the request's fault (4xx) and rate limits pass through with the upstream's own
// body; failures of the upstream become 502/504 naming the backend.
func (g *Gateway) upstreamError(ctx context.Context, err error) error {
	var be *backend.Error
	if !errors.As(err, &be) {
		return err
	}
	switch {
	case ctx.Err() != nil || be.Kind == backend.KindCanceled:
		return &apiError{status: statusClientClosed, typ: "client_closed_request", msg: "Client closed the request."}
	case be.Kind == backend.KindTimeout:
		return &apiError{status: http.StatusGatewayTimeout, typ: typeTimeout, code: "upstream_timeout",
			msg: fmt.Sprintf("Backend %q did not respond in time.", be.Backend), cause: err}
	case be.Kind == backend.KindConnect:
		return &apiError{status: http.StatusBadGateway, typ: typeServer, code: "upstream_unreachable",
			msg: fmt.Sprintf("Backend %q is unreachable.", be.Backend), cause: err}
	case be.Status == http.StatusTooManyRequests:
		return &apiError{status: be.Status, typ: typeRateLimit, code: "rate_limit_exceeded", body: openAIBody(be.Body),
			msg: fmt.Sprintf("Backend %q is rate limiting requests.", be.Backend)}
	case be.Status >= 500:
		return &apiError{status: http.StatusBadGateway, typ: typeServer, code: "upstream_error",
			msg: fmt.Sprintf("Backend %q failed with status %d.", be.Backend, be.Status), cause: err}
	default:
		msg := fmt.Sprintf("Backend %q rejected the request with status %d.", be.Backend, be.Status)
		return &apiError{status: be.Status, typ: typeInvalidRequest, msg: msg, body: openAIBody(be.Body)}
	}
}

// openAIBody returns b if it is an OpenAI error body, else nil (so one is built).
func openAIBody(b []byte) []byte {
	var e openai.ErrorResponse
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
		return nil
	}
	return b
}

// setHeaders writes downshift's headers and the upstream headers worth passing on.
func (g *Gateway) setHeaders(w http.ResponseWriter, x *exchange, up http.Header) {
	h := w.Header()
	for _, k := range passHeaders {
		if v := up.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	for k, v := range up {
		if strings.HasPrefix(k, "X-Ratelimit-") {
			h[k] = v
		}
	}
	if x.call.Workload != "" {
		h.Set(HeaderWorkload, x.call.Workload)
	}
	h.Set(HeaderRoute, string(x.call.Route))
	h.Set(HeaderModel, x.call.ServedModel)
	if strings.EqualFold(up.Get(HeaderSimulated), "true") {
		x.call.Simulated = true
	}
}

// relayWhole answers a non-streamed call with the upstream's bytes, unchanged.
func (g *Gateway) relayWhole(w http.ResponseWriter, x *exchange, u *upstreamResponse) error {
	c := x.call
	g.setHeaders(w, x, u.header)
	ct := u.header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(u.whole)))
	c.TTFT = g.now().Sub(c.StartedAt)
	w.WriteHeader(u.status)
	x.headersSent = true
	c.Status = u.status
	c.Response = u.whole
	// The client gets its answer first, flushed, so that it does not wait for what
	// follows here and after the handler (parsing, accounting, tracing, recording).
	if _, err := w.Write(u.whole); err != nil {
		c.Status, c.ErrorType = statusClientClosed, "client_closed_request"
	} else if err := http.NewResponseController(w).Flush(); err != nil {
		c.Status, c.ErrorType = statusClientClosed, "client_closed_request"
	}
	if x.answer == nil {
		var cc openai.ChatCompletion
		if err := json.Unmarshal(u.whole, &cc); err == nil {
			x.answer = &cc
		}
	}
	if cc := x.answer; cc != nil {
		c.Simulated = c.Simulated || cc.Simulated
		g.account(x, cc)
	} else {
		g.log.Warn("upstream answer is not a chat.completion", "call", c.ID, "backend", c.Backend)
	}
	return nil
}

// relayStream answers a streamed call event by event, flushing each at once, and
// reassembles the stream for the record.
func (g *Gateway) relayStream(w http.ResponseWriter, r *http.Request, x *exchange, u *upstreamResponse) error {
	c := x.call
	rc := http.NewResponseController(w)
	g.setHeaders(w, x, u.header)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(u.status)
	x.headersSent = true
	c.Status = u.status

	// Events go to the client as they come; the accumulator reassembles them for the
	// record only after the client has the whole stream, so parsing chunks costs the
	// client nothing. Events that arrived together are flushed together.
	var chunks [][]byte
	done := false
	var werr, rerr error
	for ev := u.first; ; {
		if openai.IsDone(*ev) {
			werr = openai.WriteDone(w)
			done = true
			break
		}
		first := false // the first piece of the answer: the client must have it at once
		if !x.head.IncludeUsage && openai.ChunkIsUsageOnly(ev.Data) {
			chunks = append(chunks, ev.Data) // asked for by the gateway, not the client
		} else {
			at := g.now()
			if werr = openai.WriteEvent(w, ev.Data); werr != nil {
				break
			}
			if c.TTFT == 0 && openai.ChunkCarriesAnswer(ev.Data) {
				c.TTFT = at.Sub(c.StartedAt)
				first = true
			}
			chunks = append(chunks, ev.Data)
		}
		if first || !u.sse.EventBuffered() {
			if werr = rc.Flush(); werr != nil {
				break
			}
		}
		next, err := u.sse.Next()
		if err != nil {
			rerr = err
			break
		}
		ev = &next
	}
	if werr == nil {
		werr = rc.Flush()
	}

	acc := openai.NewAccumulator()
	for _, data := range chunks {
		_, _ = acc.AddData(data) // an upstream's own events were passed on untouched
	}
	cc := acc.Completion()
	x.answer = cc
	c.Simulated = c.Simulated || cc.Simulated
	g.account(x, cc)
	c.Response, _ = json.Marshal(cc)
	switch {
	case done && werr == nil:
		// Complete. The client may hang up at once after [DONE]; that is not an error.
	case werr != nil || r.Context().Err() != nil:
		c.Status, c.ErrorType, c.ErrorMessage = statusClientClosed, "client_closed_request", "Client closed the connection during the stream."
		return nil
	case !done:
		// The upstream stopped before [DONE]: whatever the client has is incomplete.
		if rerr == nil || errors.Is(rerr, io.EOF) {
			rerr = io.ErrUnexpectedEOF
		}
		g.metrics.upstreamErrors.WithLabelValues(c.Backend, "stream").Inc()
		g.log.Warn("upstream stream ended early", "call", c.ID, "backend", c.Backend, "err", rerr)
		c.Status, c.ErrorType = http.StatusBadGateway, typeServer
		c.ErrorMessage = fmt.Sprintf("Backend %q ended the stream before it was complete.", c.Backend)
		return errAborted
	}
	return nil
}

// account fills tokens and cost from the upstream's usage, or estimates tokens when
// there is none.
func (g *Gateway) account(x *exchange, cc *openai.ChatCompletion) {
	c := x.call
	if u := cc.Usage; u != nil {
		c.PromptTokens, c.CompletionTokens = u.PromptTokens, u.CompletionTokens
		if u.PromptTokensDetails != nil {
			c.CachedTokens = u.PromptTokensDetails.CachedTokens
		}
	} else {
		// Off the hot path in practice: upstreams report usage, and streams are asked to.
		if req, err := openai.DecodeChatRequest(x.body); err == nil {
			c.PromptTokens = g.tokens.Prompt(req)
		}
		c.CompletionTokens = g.tokens.Completion(cc)
		c.TokensEstimated = true
	}
	if x.model != nil {
		c.CostUSD = x.model.Cost(c.PromptTokens, c.CompletionTokens, c.CachedTokens)
	}
}
