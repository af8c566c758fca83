package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/store"
)

// Step saves to, the version after from, as the workload's policy. The composition root
// wires it to the store (see SaveStep); to.Version is from.Version+1, so a step decided
// on a version that a person has replaced meanwhile fails with store.ErrConflict and
// the person's version stands.
type Step func(ctx context.Context, from, to store.Policy) error

// Snapshots gives the current policy snapshot: a Refresher does.
type Snapshots interface {
	Snapshot() *Snapshot
}

// DefaultCanaryShare is the share a step into canary mode gives the candidate when the
// policy it steps from has no canary share of its own.
const DefaultCanaryShare = 0.1

// Automatic steps' actor and actor names, as the policy history and audit trail show.
const (
	AutoActor         = "downshift"
	AutoRollbackName  = "automatic rollback"
	AutoPromotionName = "automatic promotion"
)

// MonitorOptions configure a Monitor. Policies and Step are required.
type MonitorOptions struct {
	// Policies gives the current policies, whose thresholds the windows are held to.
	Policies Snapshots
	// Step takes an automatic rollback or promotion.
	Step Step
	// Logger receives every step, flag and failure. nil: discard.
	Logger *slog.Logger
	// Registerer receives the monitor's metrics. nil: not registered.
	Registerer prometheus.Registerer
	// Now stamps the versions the monitor saves. nil: time.Now.
	Now func() time.Time
	// StepTimeout bounds one Step. 0: 30 seconds.
	StepTimeout time.Duration
}

// Monitor keeps, per workload, rolling windows of the candidate's agreement with the
// reference and of its guard results, under the workload's current policy version, and
// steps the policy when they say so:
//
//   - Once a window holds MinSamples results, a mean agreement below MinAgreement or a
//     guard pass rate below MinGuardPass steps a serve policy back to canary and a
//     canary back to shadow. A shadow policy stays in shadow, flagged (Status, log,
//     metric) until its windows meet the thresholds again.
//   - With PromoteAfter set and at least one threshold, a shadow policy steps forward to
//     canary, and a canary to serve, once PromoteAfter of the candidate's calls in a
//     row met the thresholds (shadowed calls in shadow mode, candidate-answered calls
//     with their guard results in canary) and every checked window holds MinSamples
//     results (the guard window only in canary: shadow answers need not be guarded).
//
// Results under any version but the workload's current one are ignored, so a late
// shadow result cannot judge a newer policy; a new version starts with empty windows.
// Once a step from a version is decided, that version's later results are ignored too.
//
// Observe* take a per-workload lock and write a ring buffer; the Step runs in Run,
// never in the caller. Monitor is safe for concurrent use.
type Monitor struct {
	policies Snapshots
	step     Step
	log      *slog.Logger
	now      func() time.Time
	timeout  time.Duration
	metrics  *monitorMetrics

	watches sync.Map // workload -> *watch
	steps   chan stepRequest
}

// stepRequest is a step decided by an Observe call, for Run to take.
type stepRequest struct {
	w        *watch
	from, to store.Policy
	kind     string // "rollback" or "promotion"
}

// NewMonitor returns a Monitor; call Run to have its steps taken.
func NewMonitor(o MonitorOptions) (*Monitor, error) {
	if o.Policies == nil || o.Step == nil {
		return nil, errors.New("policy: monitor needs Policies and Step")
	}
	m := &Monitor{policies: o.Policies, step: o.Step, log: o.Logger, now: o.Now,
		timeout: o.StepTimeout, steps: make(chan stepRequest, 64)}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.timeout <= 0 {
		m.timeout = 30 * time.Second
	}
	m.metrics = newMonitorMetrics(m)
	if o.Registerer != nil {
		if err := m.metrics.register(o.Registerer); err != nil {
			return nil, fmt.Errorf("policy: register metrics: %w", err)
		}
	}
	return m, nil
}

// watch is one workload's windows under one policy version.
type watch struct {
	workload string

	mu      sync.Mutex
	version int
	agree   ring   // agreement scores, and compare's pass verdicts
	guard   ring   // guard results: score 1 for a pass
	held    int    // the candidate's calls in a row that met the thresholds
	pending bool   // a step from version is decided and not yet taken
	done    bool   // a step from version was taken (or lost to a newer version)
	flagged string // why a shadow candidate is below the thresholds; "" when it is not
}

// ring is a fixed-size window of results with running sums. Scores are kept in
// millionths so that the sums stay exact however long the window rolls.
type ring struct {
	scores []uint32
	passes []bool
	next   int
	n      int
	sum    int64
	passed int
}

const scoreUnit = 1_000_000

func (r *ring) reset(size int) {
	if cap(r.scores) >= size {
		r.scores, r.passes = r.scores[:size], r.passes[:size]
	} else {
		r.scores, r.passes = make([]uint32, size), make([]bool, size)
	}
	r.next, r.n, r.sum, r.passed = 0, 0, 0, 0
}

func (r *ring) add(score float64, pass bool) {
	if !(score > 0) { // NaN too
		score = 0
	}
	v := uint32(math.Round(min(score, 1) * scoreUnit))
	if r.n == len(r.scores) {
		r.sum -= int64(r.scores[r.next])
		if r.passes[r.next] {
			r.passed--
		}
	} else {
		r.n++
	}
	r.scores[r.next], r.passes[r.next] = v, pass
	r.sum += int64(v)
	if pass {
		r.passed++
	}
	if r.next++; r.next == len(r.scores) {
		r.next = 0
	}
}

func (r *ring) clear() { r.next, r.n, r.sum, r.passed = 0, 0, 0, 0 }

func (r *ring) mean() float64 {
	if r.n == 0 {
		return 0
	}
	return float64(r.sum) / scoreUnit / float64(r.n)
}

func (r *ring) passRate() float64 {
	if r.n == 0 {
		return 0
	}
	return float64(r.passed) / float64(r.n)
}

// ObserveAgreement records the agreement of the candidate's answer with the
// reference's on one call of workload decided under policy version version (a shadow
// or verification comparison): score in 0..1, and compare's pass verdict.
func (m *Monitor) ObserveAgreement(workload string, version int, score float64, pass bool) {
	m.observe(workload, version, true, score, pass)
}

// ObserveGuard records whether the candidate's answer on one call of workload decided
// under policy version version passed its guards.
func (m *Monitor) ObserveGuard(workload string, version int, pass bool) {
	score := 0.0
	if pass {
		score = 1
	}
	m.observe(workload, version, false, score, pass)
}

func (m *Monitor) observe(workload string, version int, agreement bool, score float64, pass bool) {
	r := m.policies.Snapshot().rules[workload]
	if r == nil || r.p.Mode == store.ModeObserve {
		return
	}
	if r.p.Version != version {
		m.metrics.stale.Inc()
		return
	}
	w := m.watch(workload)
	w.mu.Lock()
	if w.version != version {
		w.start(&r.p)
	}
	if w.pending || w.done {
		w.mu.Unlock()
		return
	}
	if agreement {
		w.agree.add(score, pass)
	} else {
		w.guard.add(score, pass)
	}
	req, flag, unflag := m.judge(w, &r.p, agreement)
	w.mu.Unlock()

	switch {
	case flag != "":
		m.metrics.flags.WithLabelValues(workload).Inc()
		m.log.Warn("shadow candidate is below its policy's thresholds; the workload stays in shadow",
			"workload", workload, "version", version, "candidate", r.p.Candidate, "why", flag)
	case unflag:
		m.log.Info("shadow candidate meets its policy's thresholds again",
			"workload", workload, "version", version, "candidate", r.p.Candidate)
	}
	if req == nil {
		return
	}
	select {
	case m.steps <- *req:
	default:
		w.mu.Lock()
		if w.version == version {
			w.pending = false
		}
		w.mu.Unlock()
		m.metrics.stepFailures.WithLabelValues(workload, "queue_full").Inc()
		m.log.Error("automatic policy step not taken: too many steps waiting",
			"workload", workload, "version", version, "kind", req.kind)
	}
}

// watch returns workload's watch, creating it on first use.
func (m *Monitor) watch(workload string) *watch {
	if w, ok := m.watches.Load(workload); ok {
		return w.(*watch)
	}
	w, _ := m.watches.LoadOrStore(workload, &watch{workload: workload})
	return w.(*watch)
}

// start empties w's windows for policy p, a version w has not seen. w.mu is held.
func (w *watch) start(p *store.Policy) {
	w.version = p.Version
	w.agree.reset(p.Window)
	w.guard.reset(p.Window)
	w.held, w.pending, w.done, w.flagged = 0, false, false, ""
}

// judge holds w's windows to p after one more result and returns the step to take, if
// any, or the reason a shadow policy is newly flagged, or whether its flag was
// cleared. w.mu is held.
func (m *Monitor) judge(w *watch, p *store.Policy, agreement bool) (req *stepRequest, flag string, unflag bool) {
	var below []string
	if p.MinAgreement > 0 && w.agree.n >= p.MinSamples && w.agree.mean() < p.MinAgreement {
		v, floor := below2(w.agree.mean(), p.MinAgreement)
		below = append(below, fmt.Sprintf("agreement %s < %s over the last %d calls", v, floor, w.agree.n))
	}
	if p.MinGuardPass > 0 && w.guard.n >= p.MinSamples && w.guard.passRate() < p.MinGuardPass {
		v, floor := below2(w.guard.passRate(), p.MinGuardPass)
		below = append(below, fmt.Sprintf("guard pass rate %s < %s over the last %d calls", v, floor, w.guard.n))
	}
	if len(below) > 0 {
		w.held = 0
		why := strings.Join(below, ", ")
		if p.Mode == store.ModeShadow {
			was := w.flagged
			w.flagged = why
			if was == "" {
				return nil, why, false
			}
			return nil, "", false
		}
		to := m.next(p, stepBack(p.Mode), AutoRollbackName,
			fmt.Sprintf("automatic rollback: %s (version %d)", why, p.Version))
		return m.decide(w, p, to, "rollback"), "", false
	}
	if w.flagged != "" { // the window that was below holds MinSamples still, and meets its threshold
		w.flagged, unflag = "", true
	}
	// The candidate's calls: shadowed ones in shadow mode, answered ones (each with its
	// guard result) in canary and serve.
	if agreement == (p.Mode == store.ModeShadow) {
		w.held++
	}
	if forward := stepForward(p.Mode); forward != "" && m.promotable(w, p) {
		to := m.next(p, forward, AutoPromotionName, fmt.Sprintf("automatic promotion: %s, held for %d calls (version %d)",
			m.held(w, p), w.held, p.Version))
		return m.decide(w, p, to, "promotion"), "", unflag
	}
	return nil, "", unflag
}

// below2 formats v and the threshold it is below with the fewest decimals, from two,
// that tell them apart, so that a reason never reads "0.90 < 0.90".
func below2(v, threshold float64) (string, string) {
	for prec := 2; ; prec++ {
		a, b := strconv.FormatFloat(v, 'f', prec, 64), strconv.FormatFloat(threshold, 'f', prec, 64)
		if a != b || prec == 6 {
			return a, b
		}
	}
}

// promotable reports whether p's thresholds have held long enough, on enough
// evidence, to step forward. w.mu is held.
func (m *Monitor) promotable(w *watch, p *store.Policy) bool {
	if p.PromoteAfter == 0 || w.held < p.PromoteAfter || (p.MinAgreement == 0 && p.MinGuardPass == 0) {
		return false
	}
	if p.MinAgreement > 0 && w.agree.n < p.MinSamples {
		return false
	}
	if p.MinGuardPass > 0 && p.Mode != store.ModeShadow && w.guard.n < p.MinSamples {
		return false
	}
	return true
}

// held says which thresholds held, for a promotion's reason. w.mu is held.
func (m *Monitor) held(w *watch, p *store.Policy) string {
	var held []string
	if p.MinAgreement > 0 {
		held = append(held, fmt.Sprintf("agreement %.2f ≥ %.2f over the last %d calls", w.agree.mean(), p.MinAgreement, w.agree.n))
	}
	if p.MinGuardPass > 0 && w.guard.n > 0 {
		held = append(held, fmt.Sprintf("guard pass rate %.2f ≥ %.2f over the last %d calls", w.guard.passRate(), p.MinGuardPass, w.guard.n))
	}
	return strings.Join(held, ", ")
}

// decide marks a step from p pending and empties the windows. w.mu is held.
func (m *Monitor) decide(w *watch, p *store.Policy, to store.Policy, kind string) *stepRequest {
	w.pending = true
	w.agree.clear()
	w.guard.clear()
	w.held = 0
	return &stepRequest{w: w, from: *p, to: to, kind: kind}
}

// next returns the version after p in mode, as the monitor saves it.
func (m *Monitor) next(p *store.Policy, mode, actorName, reason string) store.Policy {
	to := *p
	to.Version = p.Version + 1
	to.Mode = mode
	if mode == store.ModeCanary && to.CanaryShare == 0 {
		to.CanaryShare = DefaultCanaryShare
	}
	to.At = m.now()
	to.Actor, to.ActorName, to.Remote = AutoActor, actorName, ""
	to.Reason = reason
	to.Automatic = true
	return to
}

// stepBack is the mode a rollback from mode goes to; shadow is the floor.
func stepBack(mode string) string {
	switch mode {
	case store.ModeServe:
		return store.ModeCanary
	default:
		return store.ModeShadow
	}
}

// stepForward is the mode a promotion from mode goes to; "" when there is none.
func stepForward(mode string) string {
	switch mode {
	case store.ModeShadow:
		return store.ModeCanary
	case store.ModeCanary:
		return store.ModeServe
	}
	return ""
}

// Run takes the steps Observe* decide, one at a time, until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-m.steps:
			m.take(ctx, req)
		}
	}
}

// take runs one step and settles its watch: a taken step (or one a newer version beat)
// ends the old version's watch; a failed one empties the windows, so the next try
// waits for MinSamples new results instead of hammering a failing store.
func (m *Monitor) take(ctx context.Context, req stepRequest) {
	sctx, cancel := context.WithTimeout(ctx, m.timeout)
	err := m.step(sctx, req.from, req.to)
	cancel()

	w := req.w
	w.mu.Lock()
	if w.version == req.from.Version {
		w.pending = false
		w.done = err == nil || errors.Is(err, store.ErrConflict)
	}
	w.mu.Unlock()

	attrs := []any{"workload", req.from.Workload, "from", req.from.Describe(), "from_version", req.from.Version,
		"to", req.to.Describe(), "reason", req.to.Reason}
	switch {
	case err == nil:
		m.metrics.steps.WithLabelValues(req.from.Workload, req.kind, req.from.Mode, req.to.Mode).Inc()
		if req.kind == "rollback" {
			m.log.Warn("policy rolled back", attrs...)
		} else {
			m.log.Info("policy promoted", attrs...)
		}
	case errors.Is(err, store.ErrConflict):
		m.metrics.stepFailures.WithLabelValues(req.from.Workload, "conflict").Inc()
		m.log.Info("automatic policy step not taken: a newer version was saved meanwhile and stands",
			append(attrs, "kind", req.kind)...)
	default:
		m.metrics.stepFailures.WithLabelValues(req.from.Workload, "error").Inc()
		m.log.Error("automatic policy step failed; it will be decided again on new results",
			append(attrs, "kind", req.kind, "err", err)...)
	}
}

// Status is what a Monitor knows of one workload's candidate.
type Status struct {
	Workload string
	Version  int // the policy version the windows are for
	// Agreement is the mean agreement over AgreementResults results, and
	// AgreementPass the share compare passed.
	Agreement        float64
	AgreementPass    float64
	AgreementResults int
	// GuardPass is the share of GuardResults guard results that passed.
	GuardPass    float64
	GuardResults int
	// Held counts the candidate's calls in a row that met the thresholds.
	Held int
	// Flagged says why a shadow policy's candidate is below its thresholds; empty
	// when it is not.
	Flagged string
	// Stepping is true while a step from Version is decided and not yet taken;
	// Stepped once it was taken (or a newer version beat it).
	Stepping, Stepped bool
}

// Status returns what the monitor knows of workload; false when no result of its
// current policy has come yet.
func (m *Monitor) Status(workload string) (Status, bool) {
	v, ok := m.watches.Load(workload)
	if !ok {
		return Status{}, false
	}
	return v.(*watch).status(), true
}

func (w *watch) status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Status{
		Workload: w.workload, Version: w.version,
		Agreement: w.agree.mean(), AgreementPass: w.agree.passRate(), AgreementResults: w.agree.n,
		GuardPass: w.guard.passRate(), GuardResults: w.guard.n,
		Held: w.held, Flagged: w.flagged, Stepping: w.pending, Stepped: w.done,
	}
}
