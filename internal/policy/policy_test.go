package policy_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// pol returns a valid policy of workload in mode, version 1, with candidate "slm".
func pol(workload, mode string) store.Policy {
	p := store.Policy{Workload: workload, Version: 1, Mode: mode, Candidate: "slm", At: t0, Actor: "cli"}
	if mode == store.ModeCanary {
		p.CanaryShare = 0.1
	}
	return p
}

// shares decides n call keys and returns the share routed to the candidate, shadowed,
// and verified among those routed to the candidate.
func shares(s *policy.Snapshot, workload string, n int, key func(i int) uint64) (candidate, shadow, verified float64) {
	var c, sh, v int
	for i := range n {
		d := s.Decide(workload, key(i))
		if d.Route == store.RouteCandidate {
			c++
			if d.Verify {
				v++
			}
		} else if d.Verify {
			v = math.MinInt // verification of a reference answer: make the test fail loudly
		}
		if d.Shadow {
			sh++
		}
	}
	candidate, shadow = float64(c)/float64(n), float64(sh)/float64(n)
	if c > 0 {
		verified = float64(v) / float64(c)
	}
	return candidate, shadow, verified
}

func TestDecideSharesAreWhatThePolicySays(t *testing.T) {
	const n = 100_000
	ulids := func(i int) uint64 { // the gateway's call ids: time-ordered, one per ms here
		return policy.CallKey(fmt.Sprintf("01J%07dZZZZ%012d", i/1000, i))
	}
	sequential := func(i int) uint64 { return uint64(i) }
	canary10 := pol("w", store.ModeCanary)
	canary10.VerifyShare = 0.05
	canary33 := canary10
	canary33.CanaryShare, canary33.VerifyShare = 0.33, 0.2
	shadow30 := pol("w", store.ModeShadow)
	shadow30.ShadowShare = 0.3
	serve := pol("w", store.ModeServe) // verify share defaults to 5%
	for _, tt := range []struct {
		name                               string
		p                                  store.Policy
		candidate, shadow, verified, slack float64
	}{
		{"canary 10%", canary10, 0.10, 0, 0.05, 0.01},
		{"canary 33%, verify 20%", canary33, 0.33, 0, 0.20, 0.01},
		{"shadow 30%", shadow30, 0, 0.30, 0, 0.01},
		{"shadow default (all)", pol("w", store.ModeShadow), 0, 1, 0, 0},
		{"serve, verify default 5%", serve, 1, 0, 0.05, 0.01},
		{"observe", pol("w", store.ModeObserve), 0, 0, 0, 0},
	} {
		for keyName, key := range map[string]func(int) uint64{"ulid ids": ulids, "sequential keys": sequential} {
			t.Run(tt.name+"/"+keyName, func(t *testing.T) {
				s := policy.NewSnapshot(1, []store.Policy{tt.p})
				c, sh, v := shares(s, "w", n, key)
				for _, f := range []struct {
					name      string
					got, want float64
				}{{"candidate", c, tt.candidate}, {"shadow", sh, tt.shadow}, {"verified", v, tt.verified}} {
					if math.Abs(f.got-f.want) > tt.slack {
						t.Errorf("%s share %.4f, want %.2f ± %.2f", f.name, f.got, f.want, tt.slack)
					}
				}
			})
		}
	}
}

func TestDecideByMode(t *testing.T) {
	guarded := pol("w", store.ModeServe)
	guarded.Version, guarded.Guards, guarded.VerifyShare = 7, []string{"json_valid", "tool_known"}, 1
	allCanary := pol("w", store.ModeCanary)
	allCanary.CanaryShare, allCanary.VerifyShare = 1, 1
	observeWithCandidate := pol("w", store.ModeObserve) // a candidate kept in observe is ignored
	for _, tt := range []struct {
		name string
		ps   []store.Policy
		want policy.Decision
	}{
		{"no policy", nil, policy.Decision{Mode: store.ModeObserve, Route: store.RouteReference}},
		{"other workload's policy", []store.Policy{pol("x", store.ModeServe)},
			policy.Decision{Mode: store.ModeObserve, Route: store.RouteReference}},
		{"observe", []store.Policy{observeWithCandidate},
			policy.Decision{Mode: store.ModeObserve, Version: 1, Route: store.RouteReference}},
		{"shadow, every call", []store.Policy{pol("w", store.ModeShadow)},
			policy.Decision{Mode: store.ModeShadow, Version: 1, Candidate: "slm", Route: store.RouteReference, Shadow: true}},
		{"canary 100%, verify all", []store.Policy{allCanary},
			policy.Decision{Mode: store.ModeCanary, Version: 1, Candidate: "slm", Route: store.RouteCandidate, Verify: true}},
		{"serve, verify all, guards", []store.Policy{guarded},
			policy.Decision{Mode: store.ModeServe, Version: 7, Candidate: "slm", Route: store.RouteCandidate,
				Verify: true, Guards: []string{"json_valid", "tool_known"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := policy.NewSnapshot(1, tt.ps)
			for key := range uint64(50) {
				got := s.Decide("w", key*0x9e3779b97f4a7c15)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("key %d: Decide = %+v, want %+v", key, got, tt.want)
				}
			}
		})
	}
}

func TestDecideIsDeterministicAndGrowingAShareKeepsItsCalls(t *testing.T) {
	p10 := pol("w", store.ModeCanary)
	p20 := p10
	p20.Version, p20.CanaryShare = 2, 0.2
	a, b := policy.NewSnapshot(1, []store.Policy{p10}), policy.NewSnapshot(1, []store.Policy{p10})
	wider := policy.NewSnapshot(2, []store.Policy{p20})
	for i := range 20_000 {
		key := policy.CallKey(fmt.Sprintf("call-%d", i))
		d := a.Decide("w", key)
		if again, other := a.Decide("w", key), b.Decide("w", key); fmt.Sprint(again) != fmt.Sprint(d) || fmt.Sprint(other) != fmt.Sprint(d) {
			t.Fatalf("key %x: decisions differ: %+v, %+v, %+v", key, d, again, other)
		}
		if d.Route == store.RouteCandidate {
			if w := wider.Decide("w", key); w.Route != store.RouteCandidate || w.Verify != d.Verify {
				t.Fatalf("key %x: candidate at 10%% but %s (verify %v) at 20%%", key, w.Route, w.Verify)
			}
		}
	}
}

// The route of a call must not change when downshift is upgraded: CallKey is pinned.
func TestCallKeyIsPinned(t *testing.T) {
	for id, want := range map[string]uint64{
		"":                           0xcbf29ce484222325,
		"01JXQ3V1ZK8J2N3M4P5Q6R7S8T": 0x70d0942cdb611178,
	} {
		if got := policy.CallKey(id); got != want {
			t.Errorf("CallKey(%q) = %#x, want %#x", id, got, want)
		}
	}
}

func TestNewSnapshotKeepsTheHighestVersionAndAppliesDefaults(t *testing.T) {
	v1, v2 := pol("w", store.ModeServe), pol("w", store.ModeObserve)
	v2.Version = 2
	s := policy.NewSnapshot(9, []store.Policy{v2, v1, pol("a", store.ModeShadow)})
	got, ok := s.Policy("w")
	if !ok || got.Version != 2 {
		t.Errorf("Policy(w) = version %d, %v; want 2", got.Version, ok)
	}
	if got.VerifyShare != store.DefaultVerifyShare || got.Window != store.DefaultWindow {
		t.Errorf("defaults not applied: %+v", got)
	}
	if ps := s.Policies(); len(ps) != 2 || ps[0].Workload != "a" || ps[1].Workload != "w" {
		t.Errorf("Policies = %+v, want a and w in order", ps)
	}
	if s.Seq() != 9 {
		t.Errorf("Seq = %d, want 9", s.Seq())
	}
}

// benchSnapshot holds 64 workloads in canary, as a busy gateway might.
func benchSnapshot() *policy.Snapshot {
	var ps []store.Policy
	for i := range 64 {
		p := pol(fmt.Sprintf("workload-%02d", i), store.ModeCanary)
		p.CanaryShare = 0.25
		ps = append(ps, p)
	}
	return policy.NewSnapshot(1, ps)
}

func BenchmarkDecide(b *testing.B) {
	s := benchSnapshot()
	b.ReportAllocs()
	var key uint64
	candidates := 0
	for b.Loop() {
		key++
		if s.Decide("workload-17", key).Route == store.RouteCandidate {
			candidates++
		}
	}
	if candidates == 0 {
		b.Fatal("no call went to the candidate")
	}
}

// BenchmarkDecideCallID is what the gateway pays per request: the key from a ULID and
// the decision.
func BenchmarkDecideCallID(b *testing.B) {
	s := benchSnapshot()
	id := "01JXQ3V1ZK8J2N3M4P5Q6R7S8T"
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Decide("workload-17", policy.CallKey(id))
	}
}

func BenchmarkDecideParallel(b *testing.B) {
	s := benchSnapshot()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var key uint64
		for pb.Next() {
			key++
			_ = s.Decide("workload-17", key)
		}
	})
}
