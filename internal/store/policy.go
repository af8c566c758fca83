package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Policy modes, from the reference alone to the candidate alone. A workload without a
// policy is observed.
const (
	// ModeObserve: the reference answers every call; nothing else happens.
	ModeObserve = "observe"
	// ModeShadow: the reference answers; a share of calls also goes to the candidate,
	// whose answer is compared with the reference's and never reaches the client.
	ModeShadow = "shadow"
	// ModeCanary: the candidate answers a share of calls (behind guards), the reference
	// the rest.
	ModeCanary = "canary"
	// ModeServe: the candidate answers every call (behind guards).
	ModeServe = "serve"
)

// AuditSetPolicy is the audited action of saving a policy (SavePolicy writes it).
const AuditSetPolicy AuditAction = "set_policy"

// Defaults that Policy.WithDefaults fills in for zero fields.
const (
	DefaultShadowShare = 1.0  // every call is shadowed
	DefaultVerifyShare = 0.05 // one candidate-served call in 20 is checked against the reference
	DefaultWindow      = 200  // calls in the rolling window
)

// MaxPolicyWindow bounds Policy.Window, so that the rolling windows a gateway keeps per
// workload stay small.
const MaxPolicyWindow = 100_000

// Policy is one version of a workload's routing state: how its calls are answered, by
// which candidate, and the thresholds under which an automatic step back is taken.
// Policies are never changed once saved: every change is a new version, so the history
// of a workload is its list of versions.
//
// Stores keep At to the microsecond and return it in UTC; empty Guards come back as nil.
type Policy struct {
	Workload string // the workload's tag or discovered id
	// Version numbers a workload's policies from 1; the store assigns it (see
	// PolicyStore.SavePolicy for what a non-zero Version asks).
	Version int
	Mode    string // one of the Mode* constants
	// Candidate is the catalog model that shadows or answers; required unless Mode is
	// observe, where it is ignored (and may be kept to show what was tried).
	Candidate string

	// CanaryShare is the share of calls (0..1) the candidate answers in canary mode;
	// more than 0 there. Other modes keep it for a later step to canary.
	CanaryShare float64
	// ShadowShare is the share of calls (0..1) also sent to the candidate in shadow
	// mode. 0: DefaultShadowShare (a shadow of no calls is observe).
	ShadowShare float64
	// VerifyShare is the share of candidate-answered calls (canary, serve) also sent to
	// the reference in the background, so agreement keeps being measured. 0:
	// DefaultVerifyShare; it cannot be turned off, since rollback depends on it.
	VerifyShare float64
	// Guards names the guard checks applied to the candidate's answers; empty means all.
	Guards []string

	// MinAgreement is the lowest mean agreement (0..1) over the window before an
	// automatic step back; 0 does not check agreement.
	MinAgreement float64
	// MinGuardPass is the lowest share of candidate answers passing the guards (0..1)
	// over the window before an automatic step back; 0 does not check guards.
	MinGuardPass float64
	// Window is how many of the latest results the thresholds are measured over.
	// 0: DefaultWindow; at most MaxPolicyWindow.
	Window int
	// MinSamples is how many results a window needs before the thresholds apply, at
	// most Window. 0: Window (a full window).
	MinSamples int
	// PromoteAfter is how many of the candidate's calls in a row under this version
	// (shadowed calls in shadow mode, answered calls in canary) must meet the
	// thresholds before an automatic step forward (shadow → canary → serve); 0 never
	// promotes, and neither does a policy without thresholds.
	PromoteAfter int

	At        time.Time // when the version was saved
	Actor     string    // the key id that saved it, "cli", or the automatic actor
	ActorName string    // the key's name, or the OS user for "cli"
	Remote    string    // the client's network address, when it was saved over HTTP
	Reason    string    // why, in the actor's words; never a secret
	// Automatic is true for a version saved by an automatic rollback or promotion.
	Automatic bool
}

// WithDefaults returns p with its zero shares and window sizes set to their defaults.
func (p Policy) WithDefaults() Policy {
	if p.ShadowShare == 0 {
		p.ShadowShare = DefaultShadowShare
	}
	if p.VerifyShare == 0 {
		p.VerifyShare = DefaultVerifyShare
	}
	if p.Window == 0 {
		p.Window = DefaultWindow
	}
	if p.MinSamples == 0 {
		p.MinSamples = p.Window
	}
	return p
}

// ValidMode reports whether mode is one of the Mode* constants.
func ValidMode(mode string) bool {
	switch mode {
	case ModeObserve, ModeShadow, ModeCanary, ModeServe:
		return true
	}
	return false
}

// Validate reports the first thing wrong with p, naming the field. It does not apply
// defaults: call it on p.WithDefaults() to check what a store would keep.
func (p *Policy) Validate() error {
	if p.Workload == "" {
		return errors.New("policy: empty workload")
	}
	if !ValidMode(p.Mode) {
		return fmt.Errorf("policy %s: mode %q: want %q, %q, %q or %q", p.Workload, p.Mode,
			ModeObserve, ModeShadow, ModeCanary, ModeServe)
	}
	if p.Mode != ModeObserve && p.Candidate == "" {
		return fmt.Errorf("policy %s: mode %s needs a candidate", p.Workload, p.Mode)
	}
	if p.Version < 0 {
		return fmt.Errorf("policy %s: version %d: must not be negative", p.Workload, p.Version)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"canary share", p.CanaryShare}, {"shadow share", p.ShadowShare},
		{"verify share", p.VerifyShare}, {"min agreement", p.MinAgreement},
		{"min guard pass", p.MinGuardPass},
	} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return fmt.Errorf("policy %s: %s %v: want 0..1", p.Workload, f.name, f.v)
		}
	}
	if p.Mode == ModeCanary && p.CanaryShare == 0 {
		return fmt.Errorf("policy %s: canary share 0: a canary needs a share above 0", p.Workload)
	}
	if p.Window < 1 || p.Window > MaxPolicyWindow {
		return fmt.Errorf("policy %s: window %d: want 1..%d", p.Workload, p.Window, MaxPolicyWindow)
	}
	if p.MinSamples < 1 || p.MinSamples > p.Window {
		return fmt.Errorf("policy %s: min samples %d: want 1..%d (the window)", p.Workload, p.MinSamples, p.Window)
	}
	if p.PromoteAfter < 0 {
		return fmt.Errorf("policy %s: promote after %d: must not be negative", p.Workload, p.PromoteAfter)
	}
	if slices.Contains(p.Guards, "") {
		return fmt.Errorf("policy %s: guards contain an empty name", p.Workload)
	}
	if p.At.IsZero() {
		return fmt.Errorf("policy %s: zero time", p.Workload)
	}
	if p.Actor == "" {
		return fmt.Errorf("policy %s: no actor", p.Workload)
	}
	return nil
}

// Describe says in a few words how p routes: "canary qwen2.5-7b 10%, verify 5%".
func (p *Policy) Describe() string {
	var b strings.Builder
	b.WriteString(p.Mode)
	if p.Mode == ModeObserve {
		return b.String()
	}
	b.WriteString(" ")
	b.WriteString(p.Candidate)
	switch p.Mode {
	case ModeShadow:
		fmt.Fprintf(&b, " %s", percent(p.ShadowShare))
	case ModeCanary:
		fmt.Fprintf(&b, " %s, verify %s", percent(p.CanaryShare), percent(p.VerifyShare))
	case ModeServe:
		fmt.Fprintf(&b, ", verify %s", percent(p.VerifyShare))
	}
	return b.String()
}

func percent(share float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", share*100), "0"), ".") + "%"
}

// PolicyAuditDetail is the audit entry's detail for saving p over prev (nil when p is
// the workload's first version): the version, what changed, and why.
func PolicyAuditDetail(p, prev *Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version %d: %s", p.Version, p.Describe())
	if prev != nil {
		fmt.Fprintf(&b, " (was version %d: %s)", prev.Version, prev.Describe())
	}
	if p.Automatic {
		b.WriteString("; automatic")
	}
	if p.Reason != "" {
		fmt.Fprintf(&b, "; reason: %s", p.Reason)
	}
	return b.String()
}

// PolicyStore keeps the versions of every workload's policy. Implementations are safe
// for concurrent use. Versions are never changed or deleted; a workload is moved back
// to observe by saving an observe version.
type PolicyStore interface {
	// SavePolicy stores p.WithDefaults(), which must pass Validate, as the next version
	// of p.Workload's policy, and in the same transaction appends an AuditSetPolicy
	// entry (actor, name and remote from p, target the workload, detail from
	// PolicyAuditDetail). A zero p.Version takes the next version whatever it is; a
	// non-zero one must be exactly the next (the current version + 1) or the save
	// fails with ErrConflict and writes nothing, so that a change decided on version 3
	// never overwrites a version 4 saved meanwhile. It returns the policy as stored.
	SavePolicy(ctx context.Context, p Policy) (Policy, error)
	// CurrentPolicies returns the latest version of every workload's policy, ordered
	// by workload.
	CurrentPolicies(ctx context.Context) ([]Policy, error)
	// PolicyHistory returns every version of a workload's policy, newest first; none
	// for a workload that never had one.
	PolicyHistory(ctx context.Context, workload string) ([]Policy, error)
	// LastPolicySeq returns a number that grows with every policy saved (0 when none
	// is), so that a reader can tell cheaply whether to load CurrentPolicies again.
	LastPolicySeq(ctx context.Context) (int64, error)
}
