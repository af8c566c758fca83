package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// PolicyStore is what RunPolicies tests: workload policies, and the audit trail their
// saves append to.
type PolicyStore interface {
	store.PolicyStore
	store.AuditLog
	Close() error
}

// RunPolicies runs the conformance suite for workload policies against the stores open
// makes. open must return a new, empty store each time; RunPolicies closes it.
func RunPolicies(t *testing.T, open func(t *testing.T) PolicyStore) {
	tests := []testCase[PolicyStore]{
		{"NothingSavedIsEmpty", testPoliciesEmpty},
		{"PolicyRoundTripEveryField", testPolicyRoundTrip},
		{"ZeroSharesAndWindowsTakeDefaults", testPolicyDefaults},
		{"VersionsCountUpPerWorkload", testPolicyVersions},
		{"ExplicitVersionMustBeTheNext", testPolicyConflict},
		{"SaveAppendsAnAuditEntry", testPolicyAudit},
		{"InvalidPolicyIsRefused", testInvalidPolicy},
		{"SeqGrowsWithEverySave", testPolicySeq},
		{"ConcurrentSavesGetDistinctVersions", testPolicyConcurrent},
		{"ConcurrentSavesOfTheSameVersionOneWins", testPolicyRace},
	}
	runEach(t, open, tests)
}

// fullPolicy returns a canary policy with every field set; At has sub-microsecond
// digits and a zone a store drops.
func fullPolicy(workload string) store.Policy {
	return store.Policy{
		Workload:     workload,
		Mode:         store.ModeCanary,
		Candidate:    "qwen2.5-7b+lora-route",
		CanaryShare:  0.1,
		ShadowShare:  0.5,
		VerifyShare:  0.25,
		Guards:       []string{"json", "tool_exists"},
		MinAgreement: 0.9,
		MinGuardPass: 0.95,
		Window:       300,
		MinSamples:   50,
		PromoteAfter: 1000,
		At:           inZone,
		Actor:        "key_ad01",
		ActorName:    "alice — 管理",
		Remote:       "192.0.2.1:5000",
		Reason:       "eval run ev_01: 0.96 of the reference",
	}
}

// minimalPolicy returns a shadow policy with only what is required set, at base+i s.
func minimalPolicy(workload string, i int) store.Policy {
	return store.Policy{Workload: workload, Mode: store.ModeShadow, Candidate: "phi-4-mini",
		At: base.Add(time.Duration(i) * time.Second), Actor: "cli"}
}

// storedPolicy is what a store gives back for p saved as version v.
func storedPolicy(p store.Policy, v int) store.Policy {
	p = p.WithDefaults()
	p.Version = v
	p.At = utcMicros(p.At)
	if len(p.Guards) == 0 {
		p.Guards = nil
	}
	return p
}

func policyDiff(got, want store.Policy) string {
	if timesDiffer(got.At, want.At) {
		return fmt.Sprintf("At %v, want %v (UTC)", got.At, utcMicros(want.At))
	}
	got.At = want.At
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("\n got %+v\nwant %+v", got, want)
	}
	return ""
}

func savePolicy(t *testing.T, s PolicyStore, p store.Policy) store.Policy {
	t.Helper()
	saved, err := s.SavePolicy(context.Background(), p)
	if err != nil {
		t.Fatalf("SavePolicy %s version %d: %v", p.Workload, p.Version, err)
	}
	return saved
}

func currentPolicies(t *testing.T, s PolicyStore) []store.Policy {
	t.Helper()
	ps, err := s.CurrentPolicies(context.Background())
	if err != nil {
		t.Fatalf("CurrentPolicies: %v", err)
	}
	return ps
}

func policyHistory(t *testing.T, s PolicyStore, workload string) []store.Policy {
	t.Helper()
	ps, err := s.PolicyHistory(context.Background(), workload)
	if err != nil {
		t.Fatalf("PolicyHistory %s: %v", workload, err)
	}
	return ps
}

func lastPolicySeq(t *testing.T, s PolicyStore) int64 {
	t.Helper()
	seq, err := s.LastPolicySeq(context.Background())
	if err != nil {
		t.Fatalf("LastPolicySeq: %v", err)
	}
	return seq
}

// versions lists the workload@version of ps, in order.
func versions(ps []store.Policy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fmt.Sprintf("%s@%d", p.Workload, p.Version)
	}
	return out
}

func policyAudit(t *testing.T, s PolicyStore) []store.AuditEntry {
	t.Helper()
	es, err := s.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditSetPolicy, Limit: 1000})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return es
}

func testPoliciesEmpty(t *testing.T, s PolicyStore) {
	if ps := currentPolicies(t, s); len(ps) != 0 {
		t.Errorf("new store: CurrentPolicies = %v", versions(ps))
	}
	if ps := policyHistory(t, s, "route-ticket"); len(ps) != 0 {
		t.Errorf("new store: PolicyHistory = %v", versions(ps))
	}
	if seq := lastPolicySeq(t, s); seq != 0 {
		t.Errorf("new store: LastPolicySeq = %d, want 0", seq)
	}
}

func testPolicyRoundTrip(t *testing.T, s PolicyStore) {
	p := fullPolicy("route-ticket")
	saved := savePolicy(t, s, p)
	want := storedPolicy(p, 1)
	if d := policyDiff(saved, want); d != "" {
		t.Errorf("SavePolicy returned: %s", d)
	}
	auto := minimalPolicy("route-ticket", 1)
	auto.Mode, auto.Automatic, auto.Reason = store.ModeServe, true, "automatic promotion"
	savePolicy(t, s, auto)
	got := policyHistory(t, s, "route-ticket")
	if len(got) != 2 {
		t.Fatalf("PolicyHistory = %v, want 2 versions", versions(got))
	}
	if d := policyDiff(got[1], want); d != "" {
		t.Errorf("version 1 read back: %s", d)
	}
	if d := policyDiff(got[0], storedPolicy(auto, 2)); d != "" {
		t.Errorf("version 2 read back: %s", d)
	}
	cur := currentPolicies(t, s)
	if len(cur) != 1 {
		t.Fatalf("CurrentPolicies = %v, want [route-ticket@2]", versions(cur))
	}
	if d := policyDiff(cur[0], storedPolicy(auto, 2)); d != "" {
		t.Errorf("current policy: %s", d)
	}
}

func testPolicyDefaults(t *testing.T, s PolicyStore) {
	p := minimalPolicy("extract-order", 0)
	p.Guards = []string{} // empty comes back nil
	saved := savePolicy(t, s, p)
	if saved.ShadowShare != store.DefaultShadowShare || saved.VerifyShare != store.DefaultVerifyShare ||
		saved.Window != store.DefaultWindow || saved.MinSamples != store.DefaultWindow || saved.Guards != nil {
		t.Errorf("saved %+v: want shadow %v, verify %v, window and min samples %d, nil guards",
			saved, store.DefaultShadowShare, store.DefaultVerifyShare, store.DefaultWindow)
	}
	if d := policyDiff(currentPolicies(t, s)[0], saved); d != "" {
		t.Errorf("read back: %s", d)
	}
	// MinSamples defaults to the window the policy has.
	p.Window = 40
	if saved := savePolicy(t, s, p); saved.MinSamples != 40 {
		t.Errorf("window 40: MinSamples = %d, want 40", saved.MinSamples)
	}
}

func testPolicyVersions(t *testing.T, s PolicyStore) {
	for i, wl := range []string{"route-ticket", "extract-order", "route-ticket", "route-ticket"} {
		p := minimalPolicy(wl, i)
		p.Reason = fmt.Sprint("save ", i)
		savePolicy(t, s, p)
	}
	if got, want := versions(policyHistory(t, s, "route-ticket")),
		[]string{"route-ticket@3", "route-ticket@2", "route-ticket@1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("history of route-ticket = %v, want %v", got, want)
	}
	cur := currentPolicies(t, s)
	if got, want := versions(cur), []string{"extract-order@1", "route-ticket@3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("CurrentPolicies = %v, want %v", got, want)
	}
	if cur[1].Reason != "save 3" {
		t.Errorf("current route-ticket has reason %q, want the last saved (save 3)", cur[1].Reason)
	}
	if ps := policyHistory(t, s, "Route-Ticket"); len(ps) != 0 {
		t.Errorf("workloads are case-sensitive: history of Route-Ticket = %v", versions(ps))
	}
}

func testPolicyConflict(t *testing.T, s PolicyStore) {
	ctx := context.Background()
	wl := "route-ticket"
	savePolicy(t, s, minimalPolicy(wl, 0)) // version 1
	second := minimalPolicy(wl, 1)
	second.Version = 2
	if got := savePolicy(t, s, second); got.Version != 2 {
		t.Fatalf("saving version 2 gave version %d", got.Version)
	}
	seq, audits := lastPolicySeq(t, s), len(policyAudit(t, s))
	for _, v := range []int{1, 2, 4} {
		p := minimalPolicy(wl, 2)
		p.Version, p.Mode, p.Candidate = v, store.ModeObserve, ""
		if _, err := s.SavePolicy(ctx, p); !errors.Is(err, store.ErrConflict) {
			t.Errorf("saving version %d over version 2: err = %v, want ErrConflict", v, err)
		}
	}
	first := minimalPolicy("extract-order", 0)
	first.Version = 2
	if _, err := s.SavePolicy(ctx, first); !errors.Is(err, store.ErrConflict) {
		t.Errorf("saving version 2 of a workload without one: err = %v, want ErrConflict", err)
	}
	if got := versions(policyHistory(t, s, wl)); !reflect.DeepEqual(got, []string{wl + "@2", wl + "@1"}) {
		t.Errorf("after conflicts: history %v, want [2 1]", got)
	}
	if cur := currentPolicies(t, s); len(cur) != 1 || cur[0].Mode != store.ModeShadow {
		t.Errorf("after conflicts: current %v (mode %v), want route-ticket@2 in shadow", versions(cur), cur)
	}
	if got := lastPolicySeq(t, s); got != seq {
		t.Errorf("LastPolicySeq moved from %d to %d on refused saves", seq, got)
	}
	if got := len(policyAudit(t, s)); got != audits {
		t.Errorf("refused saves were audited: %d entries, want %d", got, audits)
	}
	// The next version is still 3, explicit or not.
	third := minimalPolicy(wl, 3)
	third.Version = 3
	savePolicy(t, s, third)
}

func testPolicyAudit(t *testing.T, s PolicyStore) {
	human := fullPolicy("route-ticket")
	human.Mode = store.ModeServe
	savePolicy(t, s, human)
	auto := human
	auto.Version, auto.Mode = 2, store.ModeCanary
	auto.At, auto.Actor, auto.ActorName, auto.Remote = base.Add(time.Minute), "downshift", "automatic rollback", ""
	auto.Automatic = true
	auto.Reason = "automatic rollback: agreement 0.81 < 0.90 over the last 300 calls (version 1)"
	savePolicy(t, s, auto)

	es := policyAudit(t, s)
	if len(es) != 2 {
		t.Fatalf("audit has %d set_policy entries, want 2", len(es))
	}
	a, h := es[0], es[1] // newest first
	if h.Actor != human.Actor || h.ActorName != human.ActorName || h.Remote != human.Remote ||
		h.Target != "route-ticket" || !h.At.Equal(utcMicros(human.At)) {
		t.Errorf("human's entry %+v: want actor, name, remote, time and the workload of the save", h)
	}
	if a.Actor != "downshift" || a.ActorName != "automatic rollback" || a.Target != "route-ticket" ||
		!a.At.Equal(utcMicros(auto.At)) {
		t.Errorf("automatic entry %+v: want the automatic actor, its time and the workload", a)
	}
	for _, want := range []string{"version 1", "serve", human.Candidate, human.Reason} {
		if !strings.Contains(h.Detail, want) {
			t.Errorf("human's detail %q does not say %q", h.Detail, want)
		}
	}
	for _, want := range []string{"version 2", "canary", "10%", "was version 1", "automatic", auto.Reason} {
		if !strings.Contains(a.Detail, want) {
			t.Errorf("automatic detail %q does not say %q", a.Detail, want)
		}
	}
}

func testInvalidPolicy(t *testing.T, s PolicyStore) {
	ctx := context.Background()
	good := minimalPolicy("route-ticket", 0)
	savePolicy(t, s, good)
	nan := 0.0
	nan /= nan
	for name, mutate := range map[string]func(p *store.Policy){
		"no workload":               func(p *store.Policy) { p.Workload = "" },
		"unknown mode":              func(p *store.Policy) { p.Mode = "route" },
		"no mode":                   func(p *store.Policy) { p.Mode = "" },
		"shadow without candidate":  func(p *store.Policy) { p.Candidate = "" },
		"serve without candidate":   func(p *store.Policy) { p.Mode, p.Candidate = store.ModeServe, "" },
		"canary without share":      func(p *store.Policy) { p.Mode = store.ModeCanary },
		"canary share above 1":      func(p *store.Policy) { p.Mode, p.CanaryShare = store.ModeCanary, 1.5 },
		"negative shadow share":     func(p *store.Policy) { p.ShadowShare = -0.1 },
		"verify share above 1":      func(p *store.Policy) { p.VerifyShare = 2 },
		"min agreement above 1":     func(p *store.Policy) { p.MinAgreement = 90 },
		"NaN min guard pass":        func(p *store.Policy) { p.MinGuardPass = nan },
		"negative window":           func(p *store.Policy) { p.Window = -1 },
		"window too large":          func(p *store.Policy) { p.Window = store.MaxPolicyWindow + 1 },
		"min samples above window":  func(p *store.Policy) { p.Window, p.MinSamples = 10, 11 },
		"negative min samples":      func(p *store.Policy) { p.MinSamples = -1 },
		"negative promote after":    func(p *store.Policy) { p.PromoteAfter = -1 },
		"empty guard name":          func(p *store.Policy) { p.Guards = []string{"json", ""} },
		"zero time":                 func(p *store.Policy) { p.At = time.Time{} },
		"no actor":                  func(p *store.Policy) { p.Actor = "" },
		"negative version":          func(p *store.Policy) { p.Version = -1 },
		"invalid and conflicting":   func(p *store.Policy) { p.Version, p.Mode = 1, "" },
		"invalid, otherwise next":   func(p *store.Policy) { p.Version, p.Window = 2, -5 },
		"observe with a bad thresh": func(p *store.Policy) { p.Mode, p.MinAgreement = store.ModeObserve, -1 },
	} {
		p := minimalPolicy("route-ticket", 1)
		mutate(&p)
		if _, err := s.SavePolicy(ctx, p); err == nil {
			t.Errorf("%s: SavePolicy succeeded", name)
		}
	}
	if got := versions(policyHistory(t, s, "route-ticket")); !reflect.DeepEqual(got, []string{"route-ticket@1"}) {
		t.Errorf("after refused saves: history %v, want [route-ticket@1]", got)
	}
	if n := len(policyAudit(t, s)); n != 1 {
		t.Errorf("after refused saves: %d audit entries, want 1", n)
	}
	if cur := currentPolicies(t, s); len(cur) != 1 || cur[0].Workload != "route-ticket" {
		t.Errorf("after refused saves: current %v, want [route-ticket@1]", versions(cur))
	}
}

func testPolicySeq(t *testing.T, s PolicyStore) {
	var last int64
	for i, wl := range []string{"a", "b", "a"} {
		savePolicy(t, s, minimalPolicy(wl, i))
		seq := lastPolicySeq(t, s)
		if seq <= last {
			t.Errorf("save %d: LastPolicySeq %d, not above %d", i, seq, last)
		}
		last = seq
	}
	stale := minimalPolicy("a", 9)
	stale.Version = 1
	if _, err := s.SavePolicy(context.Background(), stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale save: err = %v, want ErrConflict", err)
	}
	if seq := lastPolicySeq(t, s); seq != last {
		t.Errorf("a refused save moved LastPolicySeq from %d to %d", last, seq)
	}
}

func testPolicyConcurrent(t *testing.T, s PolicyStore) {
	const writers, each = 8, 10
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				p := minimalPolicy("route-ticket", w*each+i)
				p.Reason = fmt.Sprintf("writer %d save %d", w, i)
				if _, err := s.SavePolicy(ctx, p); err != nil {
					errs <- err
				}
				if _, err := s.CurrentPolicies(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
	hist := policyHistory(t, s, "route-ticket")
	if len(hist) != writers*each {
		t.Fatalf("history has %d versions, want %d", len(hist), writers*each)
	}
	for i, p := range hist {
		if want := writers*each - i; p.Version != want {
			t.Fatalf("history[%d] is version %d, want %d", i, p.Version, want)
		}
	}
	if n := len(policyAudit(t, s)); n != writers*each {
		t.Errorf("%d audit entries, want %d", n, writers*each)
	}
}

func testPolicyRace(t *testing.T, s PolicyStore) {
	const racers = 8
	ctx := context.Background()
	savePolicy(t, s, minimalPolicy("route-ticket", 0))
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won       []string
		conflicts int
	)
	for r := range racers {
		wg.Go(func() {
			p := minimalPolicy("route-ticket", 1)
			p.Version, p.Reason = 2, fmt.Sprint("racer ", r)
			_, err := s.SavePolicy(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, p.Reason)
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("racer %d: %v", r, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 || conflicts != racers-1 {
		t.Fatalf("%d saves of version 2 won (%v) and %d conflicted; want 1 and %d", len(won), won, conflicts, racers-1)
	}
	hist := policyHistory(t, s, "route-ticket")
	if len(hist) != 2 || hist[0].Reason != won[0] {
		t.Errorf("history %v, want version 2 from %s on top of version 1", versions(hist), won[0])
	}
}
