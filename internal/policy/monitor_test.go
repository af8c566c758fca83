package policy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// rig is a monitor over a real store, its steps saved through SaveStep and reported on
// steps as they finish.
type rig struct {
	db    *sqlite.DB
	r     *policy.Refresher
	m     *policy.Monitor
	reg   *prometheus.Registry
	steps chan error
}

// newRig saves ps (each as the next version of its workload), loads them, and runs a
// monitor whose clock reads t0+1h.
func newRig(t *testing.T, ps ...store.Policy) *rig {
	t.Helper()
	g := &rig{db: openStore(t), reg: prometheus.NewRegistry(), steps: make(chan error, 16)}
	for _, p := range ps {
		p.Version = 0
		save(t, g.db, p)
	}
	g.r = policy.NewRefresher(g.db, policy.RefresherOptions{})
	refresh(t, g.r)
	saveStep := policy.SaveStep(g.db, g.r)
	g.m = g.monitor(t, func(ctx context.Context, from, to store.Policy) error {
		err := saveStep(ctx, from, to)
		g.steps <- err
		return err
	})
	return g
}

// monitor starts a monitor over g's policies with step, stopped when the test ends.
func (g *rig) monitor(t *testing.T, step policy.Step) *policy.Monitor {
	t.Helper()
	m, err := policy.NewMonitor(policy.MonitorOptions{Policies: g.r, Step: step, Registerer: g.reg,
		Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	return m
}

// run runs m until the test ends.
func run(t *testing.T, m *policy.Monitor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitStep waits for the next step to finish and returns its error.
func (g *rig) waitStep(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.steps:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no step was taken")
		return nil
	}
}

// stepping reports whether a step from workload's watched version has been decided.
func (g *rig) stepping(workload string) bool {
	s, ok := g.m.Status(workload)
	return ok && (s.Stepping || s.Stepped)
}

func (g *rig) history(t *testing.T, workload string) []store.Policy {
	t.Helper()
	h, err := g.db.PolicyHistory(context.Background(), workload)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// metric returns the value of the counter or gauge name with labels, 0 when absent.
// metricSoon is metric read until it equals want or a second has passed: the monitor
// counts a step after its Step returns, so a test that has just seen Step return may
// read the counter a moment too early.
func (g *rig) metricSoon(t *testing.T, name string, labels map[string]string, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		got := g.metric(t, name, labels)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

func (g *rig) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// thresholds returns p with a window of 100 that checks from 50 results, agreement
// 0.9 and guard pass 0.95.
func thresholds(p store.Policy) store.Policy {
	p.Window, p.MinSamples, p.MinAgreement, p.MinGuardPass = 100, 50, 0.9, 0.95
	return p
}

// agreeUntilStep feeds score results under version until a step is decided, and
// returns how many it took; 0 when none was decided after max.
func (g *rig) agreeUntilStep(workload string, version int, score float64, max int) int {
	for i := 1; i <= max; i++ {
		g.m.ObserveAgreement(workload, version, score, score >= 0.9)
		if g.stepping(workload) {
			return i
		}
	}
	return 0
}

func TestDegradedCandidateIsRolledBackStepByStep(t *testing.T) {
	g := newRig(t, thresholds(pol("w", store.ModeServe)))
	if n := g.agreeUntilStep("w", 1, 0.98, 100); n != 0 {
		t.Fatalf("a good candidate was stepped after %d results", n)
	}
	// 0.98 over 100-k results and 0.5 over k falls below 0.9 at k = 17.
	if n := g.agreeUntilStep("w", 1, 0.5, 100); n != 17 {
		t.Fatalf("rollback decided after %d degraded results, want 17", n)
	}
	if err := g.waitStep(t); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	h := g.history(t, "w")
	v2 := h[0]
	wantReason := "automatic rollback: agreement 0.898 < 0.900 over the last 100 calls (version 1)"
	if len(h) != 2 || v2.Version != 2 || v2.Mode != store.ModeCanary || v2.CanaryShare != policy.DefaultCanaryShare ||
		!v2.Automatic || v2.Actor != policy.AutoActor || v2.Reason != wantReason || !v2.At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after rollback: version %d %s %v automatic %v by %s at %v: %q\nwant version 2 canary %v, automatic, by %s: %q",
			v2.Version, v2.Mode, v2.CanaryShare, v2.Automatic, v2.Actor, v2.At, v2.Reason,
			policy.DefaultCanaryShare, policy.AutoActor, wantReason)
	}
	if v2.Candidate != "slm" || v2.MinAgreement != 0.9 || v2.Window != 100 {
		t.Errorf("rollback changed more than the mode: %+v", v2)
	}
	audit, err := g.db.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditSetPolicy, Target: "w"})
	if err != nil || len(audit) != 2 || !strings.Contains(audit[0].Detail, wantReason) {
		t.Errorf("audit trail: %+v, %v; want the rollback on top, with its reason", audit, err)
	}
	if d := g.r.Decide("w", 1); d.Version != 2 {
		t.Errorf("the snapshot was not refreshed after the step: %+v", d)
	}
	if got := g.metricSoon(t, "downshift_policy_steps_total", map[string]string{"workload": "w", "kind": "rollback", "from": "serve", "to": "canary"}, 1); got != 1 {
		t.Errorf("steps_total{rollback serve->canary} = %v, want 1", got)
	}

	// Late results of version 1 no longer count; version 2 starts empty.
	g.m.ObserveAgreement("w", 1, 0, false)
	if got := g.metric(t, "downshift_policy_stale_results_total", nil); got != 1 {
		t.Errorf("stale_results_total = %v, want 1", got)
	}
	if n := g.agreeUntilStep("w", 2, 0.1, 100); n != 50 {
		t.Fatalf("canary rollback decided after %d results, want 50 (MinSamples)", n)
	}
	if err := g.waitStep(t); err != nil {
		t.Fatalf("second rollback: %v", err)
	}
	if v3 := g.history(t, "w")[0]; v3.Version != 3 || v3.Mode != store.ModeShadow {
		t.Fatalf("after the second rollback: version %d %s, want 3 shadow", v3.Version, v3.Mode)
	}

	// Shadow is the floor: a bad shadow candidate is flagged, not stepped.
	if n := g.agreeUntilStep("w", 3, 0.1, 100); n != 0 {
		t.Fatalf("shadow stepped after %d results", n)
	}
	s, _ := g.m.Status("w")
	if !strings.Contains(s.Flagged, "agreement 0.10 < 0.90") {
		t.Errorf("shadow status %+v: want it flagged with the agreement", s)
	}
	if got := g.metric(t, "downshift_policy_shadow_flags_total", map[string]string{"workload": "w"}); got != 1 {
		t.Errorf("shadow_flags_total = %v, want 1 (once per flagging)", got)
	}
	g.agreeUntilStep("w", 3, 1, 100)
	if s, _ := g.m.Status("w"); s.Flagged != "" {
		t.Errorf("after 100 good results: still flagged: %q", s.Flagged)
	}
	if h := g.history(t, "w"); len(h) != 3 {
		t.Errorf("history has %d versions, want 3", len(h))
	}
	select {
	case err := <-g.steps:
		t.Errorf("an unexpected step was taken: %v", err)
	default:
	}
}

func TestNoRollbackBeforeMinSamples(t *testing.T) {
	for _, tt := range []struct {
		name    string
		observe func(m *policy.Monitor)
	}{
		{"agreement", func(m *policy.Monitor) { m.ObserveAgreement("w", 1, 0, false) }},
		{"guards", func(m *policy.Monitor) { m.ObserveGuard("w", 1, false) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := thresholds(pol("w", store.ModeCanary))
			p.MinSamples = 40
			g := newRig(t, p)
			for i := range 39 {
				tt.observe(g.m)
				if g.stepping("w") {
					t.Fatalf("stepped after %d failed results, before MinSamples (40)", i+1)
				}
			}
			tt.observe(g.m)
			if !g.stepping("w") {
				t.Fatal("no step after MinSamples failed results")
			}
			if err := g.waitStep(t); err != nil {
				t.Fatal(err)
			}
			if v2 := g.history(t, "w")[0]; v2.Mode != store.ModeShadow || !strings.Contains(v2.Reason, tt.name[:5]) {
				t.Errorf("after rollback: %s %q, want shadow with a reason about %s", v2.Mode, v2.Reason, tt.name)
			}
		})
	}
}

func TestResultsOfAnotherVersionAreIgnored(t *testing.T) {
	g := newRig(t, thresholds(pol("w", store.ModeServe)))
	human := thresholds(pol("w", store.ModeServe))
	human.Version, human.Candidate, human.Actor = 2, "other-slm", "key_ad01"
	save(t, g.db, human)
	refresh(t, g.r)
	for range 200 {
		g.m.ObserveAgreement("w", 1, 0, false) // a slow shadow of the old candidate
		g.m.ObserveGuard("w", 1, false)
		g.m.ObserveAgreement("w", 3, 0, false) // a version that never was
	}
	if g.stepping("w") {
		t.Fatal("results of other versions stepped the policy")
	}
	if got := g.metric(t, "downshift_policy_stale_results_total", nil); got != 600 {
		t.Errorf("stale_results_total = %v, want 600", got)
	}
	g.m.ObserveAgreement("w", 2, 1, true)
	if s, ok := g.m.Status("w"); !ok || s.Version != 2 || s.AgreementResults != 1 || s.GuardResults != 0 {
		t.Errorf("status %+v, %v: want version 2 with the one result of version 2", s, ok)
	}
	g.m.ObserveAgreement("nobody", 1, 0, false) // no policy: ignored, not tracked
	if _, ok := g.m.Status("nobody"); ok {
		t.Error("a workload without a policy is tracked")
	}
}

func TestRollbackDoesNotOverwriteAHumanChange(t *testing.T) {
	g := newRig(t, thresholds(pol("w", store.ModeServe)))
	// A person moves the workload on while the gateway still holds version 1.
	human := pol("w", store.ModeCanary)
	human.Version, human.CanaryShare, human.Reason = 2, 0.5, "try the new adapter"
	save(t, g.db, human)
	if n := g.agreeUntilStep("w", 1, 0, 100); n != 50 {
		t.Fatalf("rollback decided after %d results, want 50", n)
	}
	if err := g.waitStep(t); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rollback over a newer version: err = %v, want ErrConflict", err)
	}
	h := g.history(t, "w")
	if len(h) != 2 || h[0].Automatic || h[0].Reason != "try the new adapter" {
		t.Fatalf("history %+v: want the person's version 2 on top and nothing after", h)
	}
	if got := g.metricSoon(t, "downshift_policy_step_failures_total", map[string]string{"workload": "w", "reason": "conflict"}, 1); got != 1 {
		t.Errorf("step_failures_total{conflict} = %v, want 1", got)
	}
	if d := g.r.Decide("w", 1); d.Version != 2 {
		t.Errorf("after the conflict the snapshot holds version %d, want the person's 2", d.Version)
	}
	g.agreeUntilStep("w", 1, 0, 100)
	select {
	case err := <-g.steps:
		t.Errorf("version 1 was stepped again: %v", err)
	default:
	}
}

func TestPromotionAfterThresholdsHeld(t *testing.T) {
	shadow := thresholds(pol("w", store.ModeShadow))
	shadow.PromoteAfter = 300
	never := thresholds(pol("never", store.ModeShadow)) // PromoteAfter 0
	g := newRig(t, shadow, never)

	for range 1000 {
		g.m.ObserveAgreement("never", 1, 1, true)
	}
	if n := g.agreeUntilStep("w", 1, 0.95, 299); n != 0 {
		t.Fatalf("promoted after %d results, before PromoteAfter (300)", n)
	}
	if g.stepping("never") {
		t.Fatal("a policy without PromoteAfter was promoted")
	}
	if n := g.agreeUntilStep("w", 1, 0.95, 1); n != 1 {
		t.Fatal("not promoted after PromoteAfter results that met the thresholds")
	}
	if err := g.waitStep(t); err != nil {
		t.Fatal(err)
	}
	v2 := g.history(t, "w")[0]
	if v2.Mode != store.ModeCanary || v2.CanaryShare != policy.DefaultCanaryShare || !v2.Automatic ||
		v2.ActorName != policy.AutoPromotionName ||
		v2.Reason != "automatic promotion: agreement 0.95 ≥ 0.90 over the last 100 calls, held for 300 calls (version 1)" {
		t.Fatalf("after promotion: %+v", v2)
	}

	// In canary the candidate's calls are its guarded answers; agreement comes from
	// the verification sample and must fill its window too.
	for i := range 400 {
		g.m.ObserveGuard("w", 2, true)
		if g.stepping("w") {
			t.Fatalf("promoted to serve after %d guarded calls with no agreement results", i+1)
		}
	}
	g.m.ObserveAgreement("w", 2, 0.97, true)
	for range 48 {
		g.m.ObserveAgreement("w", 2, 0.97, true)
	}
	if g.stepping("w") {
		t.Fatal("promoted with 49 agreement results, below MinSamples (50)")
	}
	g.m.ObserveAgreement("w", 2, 0.97, true)
	if !g.stepping("w") {
		t.Fatal("not promoted once the agreement window held MinSamples")
	}
	if err := g.waitStep(t); err != nil {
		t.Fatal(err)
	}
	if v3 := g.history(t, "w")[0]; v3.Version != 3 || v3.Mode != store.ModeServe || !strings.Contains(v3.Reason, "guard pass rate 1.00 ≥ 0.95") {
		t.Fatalf("after the second promotion: %+v", v3)
	}
	if got := g.metricSoon(t, "downshift_policy_steps_total", map[string]string{"workload": "w", "kind": "promotion", "from": "canary", "to": "serve"}, 1); got != 1 {
		t.Errorf("steps_total{promotion canary->serve} = %v, want 1", got)
	}
	// Serve is as far as it goes.
	for range 500 {
		g.m.ObserveGuard("w", 3, true)
		g.m.ObserveAgreement("w", 3, 1, true)
	}
	if g.stepping("w") {
		t.Error("a serve policy was stepped on good results")
	}
}

func TestFailedStepIsDecidedAgainOnNewResults(t *testing.T) {
	p := pol("w", store.ModeServe)
	p.Window, p.MinSamples, p.MinAgreement = 20, 20, 0.9
	calls := make(chan error, 4)
	fail := true
	m, err := policy.NewMonitor(policy.MonitorOptions{
		Policies: fixed{policy.NewSnapshot(1, []store.Policy{p})},
		Step: func(ctx context.Context, from, to store.Policy) error {
			var err error
			if fail { // Run takes one step at a time
				err, fail = errors.New("database is locked"), false
			}
			calls <- err
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	for range 20 {
		m.ObserveAgreement("w", 1, 0, false)
	}
	if err := <-calls; err == nil {
		t.Fatal("the first step should have failed")
	}
	// The failed step leaves the version open; the windows start again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s, _ := m.Status("w"); !s.Stepping {
			if s.Stepped || s.AgreementResults != 0 {
				t.Fatalf("after a failed step: %+v, want open and empty", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed step never settled")
		}
		time.Sleep(time.Millisecond)
	}
	for range 19 {
		m.ObserveAgreement("w", 1, 0, false)
	}
	select {
	case <-calls:
		t.Fatal("decided again before MinSamples new results")
	case <-time.After(10 * time.Millisecond):
	}
	m.ObserveAgreement("w", 1, 0, false)
	select {
	case err := <-calls:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the step was not decided again")
	}
}

func TestConcurrentObservationsAreAllCounted(t *testing.T) {
	const workloads, writers, each = 4, 8, 2000
	var ps []store.Policy
	for i := range workloads {
		p := pol(fmt.Sprintf("w%d", i), store.ModeServe)
		p.Window, p.MinSamples, p.MinAgreement, p.MinGuardPass = 100_000, 100_000, 0.9, 0.9
		ps = append(ps, p)
	}
	g := newRig(t, ps...)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() { // a scrape, a refresh and a status read while results arrive
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := g.reg.Gather(); err != nil {
				t.Error(err)
			}
			if err := g.r.Refresh(context.Background()); err != nil {
				t.Error(err)
			}
			g.m.Status("w0")
		}
	})
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				wl := fmt.Sprintf("w%d", (w+i)%workloads)
				if i%2 == 0 {
					g.m.ObserveAgreement(wl, 1, float64(i%10)/10, i%3 == 0)
				} else {
					g.m.ObserveGuard(wl, 1, i%5 != 0)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	total := 0
	for i := range workloads {
		s, _ := g.m.Status(fmt.Sprintf("w%d", i))
		total += s.AgreementResults + s.GuardResults
		if s.Stepping || s.Stepped {
			t.Errorf("w%d stepped before MinSamples", i)
		}
	}
	if total != writers*each {
		t.Errorf("%d results counted, want %d", total, writers*each)
	}
}

func TestConcurrentFailuresDecideOneStep(t *testing.T) {
	p := thresholds(pol("w", store.ModeServe))
	g := newRig(t, p)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				g.m.ObserveAgreement("w", 1, 0, false)
				g.m.ObserveGuard("w", 1, false)
			}
		})
	}
	wg.Wait()
	if err := g.waitStep(t); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.steps:
		t.Fatalf("a second step from version 1 was taken: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if h := g.history(t, "w"); len(h) != 2 || h[0].Mode != store.ModeCanary {
		t.Errorf("history %v, want one rollback to canary", len(h))
	}
}

func TestMonitorExportsItsWindows(t *testing.T) {
	g := newRig(t, thresholds(pol("w", store.ModeCanary)))
	for i := range 10 {
		g.m.ObserveAgreement("w", 1, 0.8, true)
		g.m.ObserveGuard("w", 1, i < 9)
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"downshift_policy_agreement", map[string]string{"workload": "w"}, 0.8},
		{"downshift_policy_guard_pass_ratio", map[string]string{"workload": "w"}, 0.9},
		{"downshift_policy_window_results", map[string]string{"workload": "w", "kind": "guard"}, 10},
	} {
		if got := g.metric(t, tt.name, tt.labels); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}

	// Back to observe: the workload is no longer shifted, and its window is not shown.
	back := pol("w", store.ModeObserve)
	back.Version = 0
	save(t, g.db, back)
	refresh(t, g.r)
	if n := g.series(t, "w"); n != 0 {
		t.Errorf("%d policy-monitor series for a workload in observe, want none", n)
	}
	// Shifted again (version 3): nothing until a result of version 3 comes in.
	again := thresholds(pol("w", store.ModeCanary))
	again.Version = 0
	save(t, g.db, again)
	refresh(t, g.r)
	if n := g.series(t, "w"); n != 0 {
		t.Errorf("%d policy-monitor series from an older version's window, want none", n)
	}
	g.m.ObserveAgreement("w", 3, 0.6, true)
	if got := g.metric(t, "downshift_policy_agreement", map[string]string{"workload": "w"}); got < 0.6-1e-9 || got > 0.6+1e-9 {
		t.Errorf("agreement under version 3 = %v, want 0.6", got)
	}
}

// series counts the window gauges (downshift_policy_agreement, _guard_pass_ratio,
// _window_results) exported for workload.
func (g *rig) series(t *testing.T, workload string) int {
	t.Helper()
	fams, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		switch f.GetName() {
		case "downshift_policy_agreement", "downshift_policy_guard_pass_ratio", "downshift_policy_window_results":
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "workload" && l.GetValue() == workload {
					n++
				}
			}
		}
	}
	return n
}

func TestNewMonitorNeedsPoliciesAndStep(t *testing.T) {
	r := policy.NewRefresher(openStore(t), policy.RefresherOptions{})
	step := func(context.Context, store.Policy, store.Policy) error { return nil }
	for name, o := range map[string]policy.MonitorOptions{
		"no policies": {Step: step},
		"no step":     {Policies: r},
	} {
		if _, err := policy.NewMonitor(o); err == nil {
			t.Errorf("%s: NewMonitor succeeded", name)
		}
	}
}

func BenchmarkObserveAgreement(b *testing.B) {
	p := pol("w", store.ModeServe)
	p.Window, p.MinSamples, p.MinAgreement = 1000, 1000, 0.5
	m, err := policy.NewMonitor(policy.MonitorOptions{
		Policies: fixed{policy.NewSnapshot(1, []store.Policy{p})},
		Step:     func(context.Context, store.Policy, store.Policy) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveAgreement("w", 1, 0.9, true)
	}
}

// fixed is a snapshot that never changes.
type fixed struct{ s *policy.Snapshot }

func (f fixed) Snapshot() *policy.Snapshot { return f.s }

func TestShadowPromotionCountsShadowedCallsSinceTheLastFlag(t *testing.T) {
	p := pol("w", store.ModeShadow)
	p.Window, p.MinSamples, p.MinAgreement, p.MinGuardPass, p.PromoteAfter = 50, 50, 0.9, 0.9, 100
	g := newRig(t, p)
	for range 50 {
		g.m.ObserveAgreement("w", 1, 0, false)
	}
	if s, _ := g.m.Status("w"); s.Flagged == "" {
		t.Fatalf("not flagged after a window of failures: %+v", s)
	}
	// The flag clears once 45 of the last 50 agree; from there 100 shadowed calls
	// must hold. Guard results in shadow are not shadowed calls and do not count.
	if n := g.agreeUntilStep("w", 1, 1, 45); n != 0 {
		t.Fatalf("promoted after %d good results following the flag", n)
	}
	if s, _ := g.m.Status("w"); s.Flagged != "" || s.Held != 1 {
		t.Fatalf("after 45 good results: %+v, want the flag cleared and 1 call held", s)
	}
	for range 200 {
		g.m.ObserveGuard("w", 1, true)
	}
	if n := g.agreeUntilStep("w", 1, 1, 500); n != 99 {
		t.Fatalf("promoted after %d more good results, want 99 (100 held in all)", n)
	}
	if err := g.waitStep(t); err != nil {
		t.Fatal(err)
	}
}
