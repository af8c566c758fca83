// Package policy turns the workloads' stored policies into a routing decision per call,
// and watches the candidates' results to step a policy back, or forward, by itself.
//
// A Refresher keeps an immutable Snapshot of every workload's current policy behind an
// atomic pointer, reloaded from the store when it changed; Decide reads only the
// snapshot, so the request path never waits for the store. A decision is a pure
// function of the policy and a hash of the call's id: a given call always takes the
// same route, and raising a canary's share keeps every call that went to the candidate
// going there. The Monitor keeps rolling windows of agreement (from shadow and
// verification comparisons) and guard results per workload, and when a window falls
// below its policy's thresholds it hands a one-step rollback (serve → canary → shadow)
// to a Step the composition root wires to the store; promotion (shadow → canary →
// serve) is optional.
//
// It is a hot-path package: it imports no cold-path package. It does not call models,
// compare answers or run guards (the gateway, compare and guard do), and it never
// writes a policy but through its Step.
package policy

import "github.com/downshift-dev/downshift/internal/store"

// Decision is how one call of a workload is handled.
type Decision struct {
	// Mode is the policy's mode; store.ModeObserve when the workload has no policy.
	Mode string
	// Version is the policy version the decision was made under (0 without a policy).
	// Results of the call go back to the Monitor with it, so that results decided
	// under an older version never judge a newer one.
	Version int
	// Candidate is the candidate model; empty in observe.
	Candidate string
	// Route says who answers the client: store.RouteReference or store.RouteCandidate.
	Route store.Route
	// Shadow (shadow mode): the reference answers; also send the call to the
	// candidate and compare, never delaying or changing the client's answer.
	Shadow bool
	// Verify (canary, serve): the candidate answers; also send the call to the
	// reference in the background and compare.
	Verify bool
	// Guards names the guard checks for the candidate's answer; nil means all. It is
	// shared with the snapshot: do not modify it.
	Guards []string
}

// CallKey returns the key Decide draws a call's route from: a 64-bit FNV-1a hash of
// the call's id. Any stable per-call number will do; this one needs no allocation.
func CallKey(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// mix is SplitMix64's finaliser: every bit of x moves about half the bits of the
// result, so consecutive or FNV-hashed keys give evenly spread draws.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// verifySalt separates the verification draw from the route draw of the same key, so
// that which candidate-served calls are verified does not depend on the canary share.
const verifySalt = 0x9e3779b97f4a7c15

// One draw is a 53-bit number, below a share's cut with probability share.
const drawBits = 53

func draw(key uint64) uint64 { return mix(key) >> (64 - drawBits) }

// cut is the draw below which a call is in a share: 0 for none, 2^53 for all.
func cut(share float64) uint64 {
	if !(share > 0) { // NaN too
		return 0
	}
	if share >= 1 {
		return 1 << drawBits
	}
	return uint64(share * (1 << drawBits))
}

// Decide returns how the call with key callKey of workload is handled under s.
func (s *Snapshot) Decide(workload string, callKey uint64) Decision {
	r := s.rules[workload]
	if r == nil {
		return Decision{Mode: store.ModeObserve, Route: store.RouteReference}
	}
	d := Decision{Mode: r.p.Mode, Version: r.p.Version, Route: store.RouteReference}
	if r.p.Mode == store.ModeObserve {
		return d
	}
	d.Candidate, d.Guards = r.p.Candidate, r.p.Guards
	switch r.p.Mode {
	case store.ModeShadow:
		d.Shadow = draw(callKey) < r.shadow
	case store.ModeCanary:
		if draw(callKey) < r.canary {
			d.Route = store.RouteCandidate
			d.Verify = draw(callKey^verifySalt) < r.verify
		}
	case store.ModeServe:
		d.Route = store.RouteCandidate
		d.Verify = draw(callKey^verifySalt) < r.verify
	}
	return d
}
