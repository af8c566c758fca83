package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// Snapshot is every workload's current policy at one moment. It never changes once
// made, so any number of requests may read it without locks.
type Snapshot struct {
	seq   int64
	rules map[string]*rule
}

// rule is one policy with its shares turned into draw cuts.
type rule struct {
	p                      store.Policy
	canary, shadow, verify uint64
}

// NewSnapshot returns a snapshot of policies (one per workload; of two for the same
// workload the higher version wins), with their defaults applied. seq is the store's
// LastPolicySeq the policies were read at.
func NewSnapshot(seq int64, policies []store.Policy) *Snapshot {
	s := &Snapshot{seq: seq, rules: make(map[string]*rule, len(policies))}
	for _, p := range policies {
		p = p.WithDefaults()
		if old := s.rules[p.Workload]; old != nil && old.p.Version > p.Version {
			continue
		}
		if p.MinSamples > p.Window {
			p.MinSamples = p.Window
		}
		s.rules[p.Workload] = &rule{p: p, canary: cut(p.CanaryShare), shadow: cut(p.ShadowShare), verify: cut(p.VerifyShare)}
	}
	return s
}

// Seq is the store's LastPolicySeq the snapshot was read at.
func (s *Snapshot) Seq() int64 { return s.seq }

// Policy returns the current policy of workload, if it has one.
func (s *Snapshot) Policy(workload string) (store.Policy, bool) {
	r := s.rules[workload]
	if r == nil {
		return store.Policy{}, false
	}
	return r.p, true
}

// Policies returns every policy in the snapshot, ordered by workload.
func (s *Snapshot) Policies() []store.Policy {
	out := make([]store.Policy, 0, len(s.rules))
	for _, r := range s.rules {
		out = append(out, r.p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out
}

// Source is where a Refresher reads policies: a store.PolicyStore does.
type Source interface {
	CurrentPolicies(ctx context.Context) ([]store.Policy, error)
	LastPolicySeq(ctx context.Context) (int64, error)
}

// RefresherOptions configure a Refresher. The zero value is useful.
type RefresherOptions struct {
	// Logger receives refresh failures. nil: discard.
	Logger *slog.Logger
}

// Refresher holds the current Snapshot and replaces it when the store's policies
// change. Until the first Refresh every workload is observed.
type Refresher struct {
	src    Source
	log    *slog.Logger
	snap   atomic.Pointer[Snapshot]
	mu     sync.Mutex // serialises Refresh
	loaded bool       // a Refresh has succeeded; guarded by mu
}

var _ Snapshots = (*Refresher)(nil)

// NewRefresher returns a Refresher that loads from src. Call Refresh before serving.
func NewRefresher(src Source, o RefresherOptions) *Refresher {
	r := &Refresher{src: src, log: o.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.snap.Store(NewSnapshot(0, nil))
	return r
}

// Snapshot returns the current snapshot.
func (r *Refresher) Snapshot() *Snapshot { return r.snap.Load() }

// Decide returns how a call is handled under the current snapshot (see
// Snapshot.Decide).
func (r *Refresher) Decide(workload string, callKey uint64) Decision {
	return r.snap.Load().Decide(workload, callKey)
}

// Refresh reads the store's policy sequence number and, when it moved since the last
// load, loads the current policies and swaps in a new snapshot. On an error the old
// snapshot stays.
func (r *Refresher) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The number is read before the policies: a save in between is loaded now and
	// loaded again next time, never missed.
	seq, err := r.src.LastPolicySeq(ctx)
	if err != nil {
		return fmt.Errorf("policy: refresh: %w", err)
	}
	if r.loaded && seq == r.snap.Load().seq {
		return nil
	}
	ps, err := r.src.CurrentPolicies(ctx)
	if err != nil {
		return fmt.Errorf("policy: refresh: %w", err)
	}
	r.snap.Store(NewSnapshot(seq, ps))
	r.loaded = true
	return nil
}

// Run refreshes every interval until ctx ends. A failed refresh is logged and the
// policies loaded before stay in force.
func (r *Refresher) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("refreshing policies failed; the policies loaded before stay in force", "err", err)
		}
	}
}

// Saver saves a policy version: a store.PolicyStore does.
type Saver interface {
	SavePolicy(ctx context.Context, p store.Policy) (store.Policy, error)
}

// SaveStep returns the Step a Monitor takes through s: it saves to, and then
// refreshes r so that the step takes effect now rather than at r's next interval. A
// conflict (a newer version saved meanwhile) refreshes r too, so the newer version is
// the one watched. A failed refresh after a save is logged, not returned: the step
// was taken, and r's Run will load it.
func SaveStep(s Saver, r *Refresher) Step {
	return func(ctx context.Context, _, to store.Policy) error {
		_, err := s.SavePolicy(ctx, to)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		if rerr := r.Refresh(ctx); rerr != nil {
			r.log.Warn("refreshing policies after an automatic step failed", "workload", to.Workload, "err", rerr)
		}
		return err
	}
}

// Len returns how many workloads have a policy in s.
func (s *Snapshot) Len() int { return len(s.rules) }
