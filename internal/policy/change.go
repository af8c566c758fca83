package policy

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/guard"
	"github.com/downshift-dev/downshift/internal/store"
)

// Thresholds a workload's first policy gets when a person's change does not set them;
// `downshift shift`'s flags default to them too.
const (
	DefaultMinAgreement = 0.9
	DefaultMinGuardPass = 0.95
)

// Change is a change a person asks of a workload's policy, as `downshift shift` and the
// admin API take it. A nil field keeps the current policy's value; for a workload's
// first policy, the default (the store's, and DefaultMinAgreement and
// DefaultMinGuardPass). A field set to zero asks for what zero means on store.Policy
// (a share or window of 0 is its default; a threshold of 0 is not checked).
type Change struct {
	// Back returns the workload to observe: the reference answers every call. It
	// takes neither Mode nor Candidate; the candidate is kept, to show what was tried.
	Back bool

	Mode      *string
	Candidate *string
	// CanaryShare is the canary's share. Left nil on a step into canary from a policy
	// without one, it is DefaultCanaryShare, as an automatic promotion gives.
	CanaryShare  *float64
	ShadowShare  *float64
	VerifyShare  *float64
	Guards       *[]string // an empty list: every guard
	MinAgreement *float64
	MinGuardPass *float64
	Window       *int
	// MinSamples is left to follow Window when nil and the current policy's
	// MinSamples is its whole window.
	MinSamples   *int
	PromoteAfter *int
}

// FieldError is a change that cannot be made. Field names the field at fault by its
// JSON name (mode, candidate, canary_share, ...), so that the admin API can return it
// as the error's param and the command line can name its flag.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Next returns the version of workload's policy after c is applied to cur, its
// current policy (nil when it has none): Version is cur's + 1, defaults are applied,
// and At, Actor, ActorName, Remote, Reason and Automatic are left for the caller to
// set. The error is a *FieldError. Next checks everything store.Policy.Validate does
// but who and when; it does not check that the candidate is a known model, which
// only the caller can tell.
func Next(cur *store.Policy, workload string, c Change) (store.Policy, error) {
	if workload == "" {
		return store.Policy{}, fieldErr("workload", "empty")
	}
	p := store.Policy{Workload: workload, MinAgreement: DefaultMinAgreement, MinGuardPass: DefaultMinGuardPass}
	if cur != nil {
		p = *cur
		p.Guards = slices.Clone(cur.Guards)
		p.At, p.Actor, p.ActorName, p.Remote, p.Reason, p.Automatic = time.Time{}, "", "", "", "", false
	}
	p.Version++

	if c.Back {
		switch {
		case c.Mode != nil:
			return store.Policy{}, fieldErr("mode", "going back takes no mode: it returns to %s", store.ModeObserve)
		case c.Candidate != nil:
			return store.Policy{}, fieldErr("candidate", "going back takes no candidate: it returns to %s", store.ModeObserve)
		}
		p.Mode = store.ModeObserve
	}
	if c.Mode != nil {
		p.Mode = *c.Mode
	}
	switch {
	case cur == nil && c.Mode == nil && !c.Back:
		return store.Policy{}, fieldErr("mode", "a workload's first policy needs a mode: %s", modeList())
	case !store.ValidMode(p.Mode):
		return store.Policy{}, fieldErr("mode", "%q: want %s", p.Mode, modeList())
	}
	if c.Candidate != nil {
		p.Candidate = strings.TrimSpace(*c.Candidate)
	}
	if p.Mode != store.ModeObserve && p.Candidate == "" {
		return store.Policy{}, fieldErr("candidate", "mode %s needs a candidate model", p.Mode)
	}

	shares := []struct {
		field string
		set   *float64
		to    *float64
	}{
		{"canary_share", c.CanaryShare, &p.CanaryShare},
		{"shadow_share", c.ShadowShare, &p.ShadowShare},
		{"verify_share", c.VerifyShare, &p.VerifyShare},
		{"min_agreement", c.MinAgreement, &p.MinAgreement},
		{"min_guard_pass", c.MinGuardPass, &p.MinGuardPass},
	}
	for _, s := range shares {
		if s.set == nil {
			continue
		}
		if v := *s.set; math.IsNaN(v) || v < 0 || v > 1 {
			return store.Policy{}, fieldErr(s.field, "%v: want a share from 0 to 1", v)
		}
		*s.to = *s.set
	}
	if p.Mode == store.ModeCanary && p.CanaryShare == 0 {
		if c.CanaryShare != nil {
			return store.Policy{}, fieldErr("canary_share", "0: a canary needs a share above 0")
		}
		p.CanaryShare = DefaultCanaryShare
	}

	if c.Window != nil {
		if cur != nil && c.MinSamples == nil && cur.MinSamples == cur.Window {
			p.MinSamples = 0 // it was the whole window, and stays so
		}
		p.Window = *c.Window
	}
	if c.MinSamples != nil {
		p.MinSamples = *c.MinSamples
	}
	if c.PromoteAfter != nil {
		p.PromoteAfter = *c.PromoteAfter
	}
	if c.Guards != nil {
		p.Guards = slices.Clone(*c.Guards)
		if len(p.Guards) == 0 {
			p.Guards = nil
		}
	}
	p = p.WithDefaults()
	switch {
	case p.Window < 1 || p.Window > store.MaxPolicyWindow:
		return store.Policy{}, fieldErr("window", "%d: want 1 to %d calls", p.Window, store.MaxPolicyWindow)
	case p.MinSamples < 1 || p.MinSamples > p.Window:
		return store.Policy{}, fieldErr("min_samples", "%d: want 1 to %d (the window)", p.MinSamples, p.Window)
	case p.PromoteAfter < 0:
		return store.Policy{}, fieldErr("promote_after", "%d: must not be negative", p.PromoteAfter)
	}
	for _, g := range p.Guards {
		if !slices.Contains(guard.AllChecks(), guard.Check(g)) {
			return store.Policy{}, fieldErr("guards", "unknown guard %q: want %s", g, guardList())
		}
	}
	return p, nil
}

func modeList() string {
	return strings.Join([]string{store.ModeObserve, store.ModeShadow, store.ModeCanary, store.ModeServe}, ", ")
}

func guardList() string {
	var names []string
	for _, c := range guard.AllChecks() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}
