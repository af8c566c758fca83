package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/guard"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
)

// Shifting a workload: how the gateway acts on a policy decision.
//
//   - observe (or no policy): the reference answers, as for any call.
//   - shadow: the reference answers the client; once it has, the same request goes to
//     the candidate in the background, and the two answers are compared.
//   - canary (the candidate's share) and serve: the candidate answers, and the guards
//     check its answer before the client sees any of it. A failed check, or no answer
//     at all, escalates the call to the reference, whose answer the client gets. A
//     stream is held whole when the request offers tools or asks for JSON (it can only
//     be checked whole); a free-text stream is passed through once its first event has
//     come, so it can be escalated only before that. A verification share of the
//     candidate's answers also goes to the reference in the background.
//
// Second answers (shadow, verification) never delay the client: they run after the
// client has its answer, bounded by SecondConcurrency (a call over it gets none, and
// says so), and the call's one record is enqueued when the second answer is in. Drain
// waits for them at shutdown.

// WorkloadFinder finds the workload of a call its client did not tag, from the
// request as sent: the nearest workload of the latest analysis. It returns "" when
// there is none.
type WorkloadFinder interface {
	FindWorkload(fingerprint string, request []byte) string
}

// Observer receives the candidates' results, to step policies back (or forward): a
// *policy.Monitor.
type Observer interface {
	ObserveAgreement(workload string, version int, score float64, pass bool)
	ObserveGuard(workload string, version int, pass bool)
}

// Defaults of the second answers' bounds.
const (
	DefaultSecondConcurrency = 64
	DefaultSecondTimeout     = 60 * time.Second
)

// shifter is the gateway's state for shifted workloads.
type shifter struct {
	policies  policy.Snapshots // nil: nothing is shifted
	workloads WorkloadFinder   // nil: only tagged calls are shifted
	observer  Observer         // nil: results are recorded, not observed
	schemas   *compare.Schemas
	formats   openai.FormatReader // the tools and response format second answers are compared under
	phrases   []string
	guards    sync.Map // strings.Join(checks, ",") -> *guard.Guards

	timeout time.Duration
	slots   chan struct{} // one per second answer in flight
	wg      sync.WaitGroup
	ctx     context.Context // second answers' context; Drain cancels it when out of time
	cancel  context.CancelFunc
	mu      sync.Mutex // guards draining against wg.Add
	closed  bool
}

func newShifter(o Options) *shifter {
	s := &shifter{policies: o.Policies, workloads: o.Workloads, observer: o.Observer,
		schemas: o.Schemas, phrases: o.RefusalPhrases, timeout: o.SecondTimeout}
	if s.schemas == nil {
		s.schemas = compare.NewSchemas(compare.SchemasOptions{})
	}
	if s.timeout <= 0 {
		s.timeout = DefaultSecondTimeout
	}
	n := o.SecondConcurrency
	if n <= 0 {
		n = DefaultSecondConcurrency
	}
	s.slots = make(chan struct{}, n)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// guardsFor returns the guards running checks (all when empty), built once per list.
func (s *shifter) guardsFor(checks []string) (*guard.Guards, error) {
	key := strings.Join(checks, ",")
	if g, ok := s.guards.Load(key); ok {
		return g.(*guard.Guards), nil
	}
	cs := make([]guard.Check, len(checks))
	for i, c := range checks {
		cs[i] = guard.Check(c)
	}
	g, err := guard.New(guard.Options{Checks: cs, Schemas: s.schemas, RefusalPhrases: s.phrases})
	if err != nil {
		return nil, err
	}
	actual, _ := s.guards.LoadOrStore(key, g)
	return actual.(*guard.Guards), nil
}

// decide finds the call's workload and its policy's decision. It returns the
// candidate model when the policy involves one; nil means the reference answers as
// for any call. The workload is looked for only while some workload has a policy, so
// a gateway that shifts nothing does no more work than before.
func (g *Gateway) decide(x *exchange, ref *backend.Model) (*backend.Model, policy.Decision) {
	s := g.shift
	if s.policies == nil || ref.Role == config.RoleCandidate {
		return nil, policy.Decision{}
	}
	snap := s.policies.Snapshot()
	if snap.Len() == 0 {
		return nil, policy.Decision{}
	}
	c := x.call
	key := c.Workload
	if key == "" && s.workloads != nil {
		key = s.workloads.FindWorkload(x.fingerprint(), x.body)
	}
	c.WorkloadID = key // the recorder keeps what the gateway found
	if key == "" {
		return nil, policy.Decision{}
	}
	d := snap.Decide(key, policy.CallKey(c.ID))
	if d.Version == 0 {
		return nil, d
	}
	c.Mode, c.PolicyVersion, c.Candidate = d.Mode, d.Version, d.Candidate
	if d.Mode == store.ModeObserve {
		return nil, d
	}
	cand, ok := g.catalog.Resolve(d.Candidate)
	if !ok {
		g.metrics.shiftSkipped.WithLabelValues(key, "candidate_unknown").Inc()
		g.log.Warn("the policy's candidate is not in the catalog; the reference answers",
			"workload", key, "candidate", d.Candidate, "version", d.Version)
		return nil, d
	}
	return cand, d
}

// serveCandidate has the candidate answer, checked by the guards, and escalates to
// the reference when it fails.
func (g *Gateway) serveCandidate(w http.ResponseWriter, r *http.Request, x *exchange, ref, cand *backend.Model, d policy.Decision) error {
	c := x.call
	greq, err := guard.ReadRequest(x.body)
	if err != nil {
		// The scan accepted the body, so this does not happen; if it did, the answer
		// could not be checked, and only the reference may answer unchecked.
		g.log.Warn("request unreadable for the guards; the reference answers", "call", c.ID, "err", err)
		return g.serveReference(w, r, x, ref)
	}
	guards, err := g.shift.guardsFor(d.Guards)
	if err != nil {
		g.log.Warn("the policy names an unknown guard; the reference answers", "call", c.ID, "workload", c.WorkloadID, "err", err)
		return g.serveReference(w, r, x, ref)
	}
	ctx := r.Context()
	started := g.now()
	u, err := g.attempt(ctx, x, cand)
	if err != nil {
		if ctx.Err() != nil {
			return g.upstreamError(ctx, err)
		}
		return g.escalate(w, r, x, ref, d, g.rejected(cand, started, nil, nil, err), store.GuardUnanswered)
	}
	if u.first != nil && isErrorEvent(u.first.Data) {
		// An error reported as the stream's first event: nothing has reached the client.
		u.body.Close()
		return g.escalate(w, r, x, ref, d, g.rejected(cand, started, nil, bytes.Clone(u.first.Data), errors.New("the stream reported an error")), store.GuardUnanswered)
	}
	if u.first != nil && !greq.HoldStream() {
		// Free text: the candidate's stream goes through as it comes; it was checked
		// as far as it can be (it answered), and the guards judge the whole for the
		// record and the monitor only.
		defer u.body.Close()
		g.answeredBy(x, cand, d)
		err := g.relayStream(w, r, x, u)
		g.judge(x, guards, &greq, d)
		return err
	}
	var ans *openai.ChatCompletion
	if u.first != nil {
		held, cc, herr := holdStream(u)
		u.body.Close()
		if herr != nil {
			return g.escalate(w, r, x, ref, d, g.rejected(cand, started, cc, marshalAnswer(cc), herr), store.GuardUnanswered)
		}
		u.sse, u.first, ans = held, &held.events[0], cc
		held.i = 1
	} else {
		u.body.Close()
		var cc openai.ChatCompletion
		if err := json.Unmarshal(u.whole, &cc); err != nil {
			return g.escalate(w, r, x, ref, d, g.rejected(cand, started, nil, u.whole, errors.New("the answer is not a chat.completion")), store.GuardUnanswered)
		}
		ans = &cc
	}
	res := guards.Check(&greq, ans)
	if !res.Pass {
		g.log.Info("candidate answer refused by the guards; escalating", "call", c.ID, "workload", c.WorkloadID,
			"candidate", cand.Name, "failed", res.String())
		body := u.whole
		if u.first != nil {
			body = marshalAnswer(ans) // a held stream, reassembled
		}
		return g.escalate(w, r, x, ref, d, g.rejected(cand, started, ans, body, nil), failedChecks(res))
	}
	g.answeredBy(x, cand, d)
	c.Guard = store.GuardPass
	g.observeGuard(x, d, true)
	x.answer = ans
	if u.first != nil {
		return g.relayStream(w, r, x, u)
	}
	return g.relayWhole(w, x, u)
}

// answeredBy marks the call as answered by the candidate and plans its verification.
func (g *Gateway) answeredBy(x *exchange, cand *backend.Model, d policy.Decision) {
	x.call.Route = store.RouteCandidate
	x.model = cand
	x.call.ServedModel, x.call.Backend = cand.Name, cand.Backend.Name()
	if d.Verify {
		x.second = &secondPlan{kind: store.SecondVerify, model: x.reference}
	}
}

// judge runs the guards on a streamed-through candidate answer, for the record and the
// monitor: the client has it already.
func (g *Gateway) judge(x *exchange, guards *guard.Guards, greq *guard.Request, d policy.Decision) {
	c := x.call
	switch {
	case c.Status == statusClientClosed:
		return // the client left: nothing is known of the answer
	case x.answer == nil || c.Status >= 400:
		c.Guard = store.GuardUnanswered // the stream broke off after its first event
		g.observeGuard(x, d, false)
		return
	}
	res := guards.Check(greq, x.answer)
	if res.Pass {
		c.Guard = store.GuardPass
	} else {
		c.Guard = failedChecks(res)
		g.metrics.guardFailures.WithLabelValues(c.WorkloadID).Inc()
	}
	g.observeGuard(x, d, res.Pass)
}

// failedChecks is Call.Guard for a failed result: the failed checks, each once.
func failedChecks(res guard.Result) string {
	var names []string
	for _, f := range res.Failed {
		if n := string(f.Check); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// rejected describes the candidate's refused (or missing) answer as the call's second
// answer: what it cost, its body as received (a held stream reassembled; what came of
// an answer that was not one), and why there is none when there is none.
func (g *Gateway) rejected(cand *backend.Model, started time.Time, ans *openai.ChatCompletion, body []byte, err error) *store.SecondAnswer {
	sa := &store.SecondAnswer{Kind: store.SecondRejected, Model: cand.Name, Latency: g.now().Sub(started)}
	if len(body) > 0 {
		sa.Response = body
	}
	if ans != nil {
		sa.Status = http.StatusOK
		sa.Simulated = ans.Simulated
		if u := ans.Usage; u != nil {
			sa.PromptTokens, sa.CompletionTokens = u.PromptTokens, u.CompletionTokens
			sa.CostUSD = cand.Cost(u.PromptTokens, u.CompletionTokens, cachedOf(u))
		}
	}
	if err != nil {
		sa.Error = errorText(err)
		var be *backend.Error
		if errors.As(err, &be) && be.Kind == backend.KindStatus {
			sa.Status = be.Status
		}
	}
	return sa
}

// marshalAnswer is a reassembled answer as JSON for the record; nil for none.
func marshalAnswer(cc *openai.ChatCompletion) []byte {
	if cc == nil {
		return nil
	}
	b, err := json.Marshal(cc)
	if err != nil {
		return nil
	}
	return b
}

func cachedOf(u *openai.Usage) int {
	if u.PromptTokensDetails != nil {
		return u.PromptTokensDetails.CachedTokens
	}
	return 0
}

// errorText says why a model gave no answer, in words safe for the record: a
// backend's failure kind and status, never its body or key.
func errorText(err error) string {
	var be *backend.Error
	if errors.As(err, &be) {
		if be.Kind == backend.KindStatus {
			return fmt.Sprintf("status %d", be.Status)
		}
		return be.Kind.String()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return err.Error()
}

// escalate has the reference answer a call whose candidate answer was refused (or
// never came); why is Call.Guard.
func (g *Gateway) escalate(w http.ResponseWriter, r *http.Request, x *exchange, ref *backend.Model, d policy.Decision, rejected *store.SecondAnswer, why string) error {
	c := x.call
	c.Guard, c.Second = why, rejected
	g.observeGuard(x, d, false)
	reason := why
	if i := strings.IndexByte(reason, ','); i >= 0 {
		reason = reason[:i] // the first failed check names the escalation
	}
	g.metrics.escalations.WithLabelValues(c.WorkloadID, reason).Inc()
	x.model, x.answer = nil, nil
	c.Route = store.RouteEscalated
	return g.serveReference(w, r, x, ref)
}

func (g *Gateway) observeGuard(x *exchange, d policy.Decision, pass bool) {
	if o := g.shift.observer; o != nil {
		o.ObserveGuard(x.call.WorkloadID, d.Version, pass)
	}
}

// isErrorEvent reports whether a stream event's data is an error object rather than a
// chunk.
func isErrorEvent(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(`{"error"`))
}

// heldEvents replays a held stream to relayStream as if it were arriving: all at
// once, so it is flushed once.
type heldEvents struct {
	events []openai.Event
	i      int
}

func (h *heldEvents) Next() (openai.Event, error) {
	if h.i >= len(h.events) {
		return openai.Event{}, io.EOF
	}
	h.i++
	return h.events[h.i-1], nil
}

func (h *heldEvents) EventBuffered() bool { return h.i < len(h.events) }

// holdStream reads the rest of a stream whose first event has come, and reassembles
// it. A stream that ends before [DONE] or reports an error is no answer.
func holdStream(u *upstreamResponse) (*heldEvents, *openai.ChatCompletion, error) {
	h := &heldEvents{events: []openai.Event{*u.first}}
	acc := openai.NewAccumulator()
	ev := *u.first
	for {
		if openai.IsDone(ev) {
			return h, acc.Completion(), nil
		}
		chunk, err := acc.AddData(ev.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("a stream event is not a chunk: %w", err)
		}
		if chunk != nil && chunk.Error != nil {
			return nil, acc.Completion(), errors.New("the stream reported an error")
		}
		next, err := u.sse.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, acc.Completion(), fmt.Errorf("the stream ended early: %w", err)
		}
		h.events = append(h.events, next)
		ev = next
	}
}

// secondPlan is a second answer to ask for once the client has its answer.
type secondPlan struct {
	kind  string // store.SecondShadow or store.SecondVerify
	model *backend.Model
}

// finishSecond asks for the call's second answer in the background and enqueues the
// call's record once it is in, or at once when there is no second answer to ask for
// or no room for one.
func (g *Gateway) finishSecond(x *exchange) {
	c, plan := x.call, x.second
	s := g.shift
	if plan == nil || c.Status >= 400 || x.answer == nil {
		g.enqueue(x)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Second = &store.SecondAnswer{Kind: plan.kind, Model: plan.model.Name, Error: "skipped: shutting down"}
		g.metrics.seconds.WithLabelValues(plan.kind, "skipped").Inc()
		g.enqueue(x)
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.mu.Unlock()
		c.Second = &store.SecondAnswer{Kind: plan.kind, Model: plan.model.Name, Error: "skipped: too many second answers in flight"}
		g.metrics.seconds.WithLabelValues(plan.kind, "skipped").Inc()
		g.enqueue(x)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		// Start once the client's response is over (its last chunk is written as the
		// handler returns), so that the second answer's work never delays it.
		if x.handled != nil { // nil for a request without a cancelable context
			<-x.handled
		}
		g.second(x, plan)
		g.enqueue(x)
	}()
}

// second asks plan's model for its answer to the call, keeps its body on the record,
// compares the two, and tells the observer.
func (g *Gateway) second(x *exchange, plan *secondPlan) {
	c := x.call
	m := plan.model
	ctx, cancel := context.WithTimeout(g.shift.ctx, g.shift.timeout)
	defer cancel()
	sa := &store.SecondAnswer{Kind: plan.kind, Model: m.Name}
	c.Second = sa
	started := g.now()
	ans, body, err := g.ask(ctx, x, m)
	sa.Latency = g.now().Sub(started)
	if err != nil {
		sa.Error = errorText(err)
		var be *backend.Error
		if errors.As(err, &be) && be.Kind == backend.KindStatus {
			sa.Status = be.Status
		}
		g.metrics.seconds.WithLabelValues(plan.kind, "failed").Inc()
		g.log.Debug("no second answer", "call", c.ID, "kind", plan.kind, "model", m.Name, "err", sa.Error)
		return
	}
	sa.Status, sa.Simulated, sa.Response = http.StatusOK, ans.Simulated, body
	if u := ans.Usage; u != nil {
		sa.PromptTokens, sa.CompletionTokens = u.PromptTokens, u.CompletionTokens
		sa.CostUSD = m.Cost(u.PromptTokens, u.CompletionTokens, cachedOf(u))
	}
	refAns, candAns := x.answer, ans
	if plan.kind == store.SecondVerify {
		refAns, candAns = ans, x.answer
		if ans.Usage != nil { // else the estimate from the candidate's tokens stands
			c.ReferenceCostUSD, c.ReferenceCostEstimated = sa.CostUSD, false
		}
	}
	req, err := g.shift.formats.Read(x.body)
	if err != nil || len(refAns.Choices) == 0 || len(candAns.Choices) == 0 {
		sa.Error = "no answer to compare"
		g.metrics.seconds.WithLabelValues(plan.kind, "failed").Inc()
		return
	}
	score := compare.Answer(&refAns.Choices[0].Message, &candAns.Choices[0].Message,
		compare.Request{Tools: req.Tools, ResponseFormat: req.ResponseFormat, Schemas: g.shift.schemas})
	sa.Compared, sa.Agreement, sa.Pass = true, score.Agreement, score.Pass
	if plan.kind == store.SecondShadow && c.Guard == "" {
		// The shadow's guard verdict, for the record: what would have happened.
		if guards, err := g.shift.guardsFor(x.decision.Guards); err == nil {
			if greq, err := guard.ReadRequest(x.body); err == nil {
				if res := guards.Check(&greq, ans); res.Pass {
					c.Guard = store.GuardPass
				} else {
					c.Guard = failedChecks(res)
				}
			}
		}
	}
	g.metrics.seconds.WithLabelValues(plan.kind, "compared").Inc()
	if o := g.shift.observer; o != nil {
		o.ObserveAgreement(c.WorkloadID, c.PolicyVersion, score.Agreement, score.Pass)
	}
}

// ask sends the call's request to m, not streamed, and returns its answer, decoded and
// as received (at most maxResponseBytes: a longer one is cut, so it is no answer).
func (g *Gateway) ask(ctx context.Context, x *exchange, m *backend.Model) (*openai.ChatCompletion, []byte, error) {
	body, err := openai.PatchScanned(x.body, map[string]any{"model": m.UpstreamName, "stream": nil, "stream_options": nil})
	if err != nil {
		return nil, nil, err
	}
	resp, err := m.Backend.Post(ctx, "/chat/completions", body, "application/json")
	if err != nil {
		g.countUpstreamError(m.Backend.Name(), err)
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, &backend.Error{Backend: m.Backend.Name(), Kind: backend.KindConnect}
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(raw, &cc); err != nil {
		return nil, nil, errors.New("the answer is not a chat.completion")
	}
	if strings.EqualFold(resp.Header.Get(HeaderSimulated), "true") {
		cc.Simulated = true
	}
	return &cc, raw, nil
}

// enqueue hands a finished call to the tracer and the recorder.
func (g *Gateway) enqueue(x *exchange) {
	c := x.call
	g.metrics.settle(c)
	if g.tracer != nil {
		g.tracer.CallFinished(x.parent, c)
	}
	if err := g.recorder.Enqueue(*c); err != nil {
		g.log.Debug("call not recorded", "call", c.ID, "err", err)
	}
}

// Drain waits until every second answer in flight is in and its call enqueued; once
// ctx ends it cancels those left, which are recorded without their second answer. A
// server calls it after its HTTP server has shut down and before it closes the
// recorder. Second answers asked for after Drain are skipped.
func (g *Gateway) Drain(ctx context.Context) error {
	s := g.shift
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return fmt.Errorf("gateway: second answers canceled at shutdown: %w", ctx.Err())
	}
}
