package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
)

// Changing a workload's policy takes two POSTs: the form (mode, candidate, canary
// share, reason) goes to /policy, which saves nothing and shows the change from the
// current version to the next, with a Confirm button; Confirm posts the same fields
// to /policy/save. Both carry the version the change was decided on, so that a
// version saved meanwhile (by another person or an automatic step) refuses the
// change instead of being overwritten. The change is made by policy.Next and saved
// by SavePolicy, which writes the audit entry, as the admin API does.

// modes are the policy modes, from the reference alone to the candidate alone.
var modes = []string{store.ModeObserve, store.ModeShadow, store.ModeCanary, store.ModeServe}

// policyForm is what the policy form holds, as typed.
type policyForm struct {
	Mode        string
	Candidate   string
	CanaryShare string // a percentage; "" keeps the current share (or the default)
	Reason      string
	Expected    int // the version the change was decided on; 0: the workload had none
}

// formFor is the form prefilled from the current policy.
func formFor(cur *store.Policy) policyForm {
	f := policyForm{Mode: store.ModeShadow}
	if cur != nil {
		f.Mode, f.Candidate, f.Expected = cur.Mode, cur.Candidate, cur.Version
		if cur.CanaryShare > 0 {
			f.CanaryShare = strconv.FormatFloat(cur.CanaryShare*100, 'f', -1, 64)
		}
	}
	return f
}

// readForm reads the policy form from a POST.
func readForm(r *http.Request) (policyForm, error) {
	f := policyForm{
		Mode:        r.PostFormValue("mode"),
		Candidate:   strings.TrimSpace(r.PostFormValue("candidate")),
		CanaryShare: strings.TrimSpace(r.PostFormValue("canary_share")),
		Reason:      strings.TrimSpace(r.PostFormValue("reason")),
	}
	n, err := strconv.Atoi(r.PostFormValue("expected_version"))
	if err != nil || n < 0 {
		return f, badRequest("The form has no valid expected version: open the workload's page again.")
	}
	f.Expected = n
	return f, nil
}

// change is the policy.Change the form asks for.
func (f *policyForm) change() (policy.Change, *policy.FieldError) {
	c := policy.Change{Mode: &f.Mode}
	if f.Candidate != "" {
		c.Candidate = &f.Candidate
	}
	if f.CanaryShare != "" {
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f.CanaryShare, "%"), 64)
		if err != nil {
			return c, &policy.FieldError{Field: "canary_share", Msg: fmt.Sprintf("%q is not a percentage", f.CanaryShare)}
		}
		share := pct / 100
		c.CanaryShare = &share
	}
	return c, nil
}

// fieldLabels name the form's fields as a person reads them.
var fieldLabels = map[string]string{
	"mode": "Mode", "candidate": "Candidate", "canary_share": "Canary share", "reason": "Reason",
}

// formView is what the policy form template shows: the workload, the form as typed
// or prefilled, and what is wrong with it.
type formView struct {
	Key        string
	Form       policyForm
	Error      string // what is wrong with the form; "" when nothing is
	Field      string // the form field at fault
	Modes      []string
	Candidates []string
}

// policyView is the review page: the change from the current version to the next
// with a Confirm button, or the form again with what is wrong.
type policyView struct {
	common
	formView
	Current *store.Policy
	Next    *store.Policy
	Changes []fieldChange
}

// fieldChange is one line of the review: a field's value now and after the change.
type fieldChange struct {
	Field    string
	From, To string
	Changed  bool
}

// prepared is a change checked against the current policy, ready to be confirmed
// or saved.
type prepared struct {
	view policyView
	next store.Policy
}

// prepare reads the form and makes the next version from the current one. A form a
// person can correct comes back as view.Error (status 400); a version saved
// meanwhile as a 409 pageError.
func (u *UI) prepare(ctx context.Context, r *http.Request, s *session) (*prepared, int, error) {
	key := r.PathValue("id")
	if key == store.NoWorkload {
		return nil, 0, badRequest("Calls with neither a workload nor a tag cannot be given a policy.")
	}
	f, err := readForm(r)
	if err != nil {
		return nil, 0, err
	}
	v := policyView{common: u.common(r, s, "Change the policy of "+key, "workloads"),
		formView: formView{Key: key, Form: f, Modes: modes, Candidates: u.candidates()}}
	history, err := u.store.PolicyHistory(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	current := 0
	if len(history) > 0 {
		v.Current, current = &history[0], history[0].Version
	}
	if f.Expected != current {
		return nil, 0, conflict(key, v.Current, f.Expected)
	}
	p := &prepared{view: v}
	bad := func(field, msg string) (*prepared, int, error) {
		p.view.Field, p.view.Error = field, msg
		return p, http.StatusBadRequest, nil
	}
	if f.Reason == "" {
		return bad("reason", "Say why: the reason goes into the policy's history and the audit trail.")
	}
	c, fe := f.change()
	if fe == nil {
		p.next, err = policy.Next(v.Current, key, c)
		if e, ok := errors.AsType[*policy.FieldError](err); ok {
			fe = e
		} else if err != nil {
			return nil, 0, err
		}
	}
	if fe != nil {
		return bad(fe.Field, fmt.Sprintf("%s: %s.", label(fe.Field), fe.Msg))
	}
	if p.next.Mode != store.ModeObserve && u.knownModel != nil && !u.knownModel(p.next.Candidate) {
		return bad("candidate", fmt.Sprintf("Candidate: %q is not a model of the catalog.", p.next.Candidate))
	}
	p.view.Next = &p.next
	p.view.Changes = changes(v.Current, &p.next)
	return p, http.StatusOK, nil
}

func label(field string) string {
	if l, ok := fieldLabels[field]; ok {
		return l
	}
	return strings.ReplaceAll(field, "_", " ")
}

// changes lists what the review shows, from cur (nil: none) to next.
func changes(cur, next *store.Policy) []fieldChange {
	get := []struct {
		field string
		value func(*store.Policy) string
	}{
		{"Mode", func(p *store.Policy) string { return p.Mode }},
		{"Candidate", func(p *store.Policy) string { return p.Candidate }},
		{"Canary share", func(p *store.Policy) string { return fmtPct(p.CanaryShare) }},
		{"Shadow share", func(p *store.Policy) string { return fmtPct(p.ShadowShare) }},
		{"Verify share", func(p *store.Policy) string { return fmtPct(p.VerifyShare) }},
		{"Routing", func(p *store.Policy) string { return p.Describe() }},
		{"Version", func(p *store.Policy) string { return strconv.Itoa(p.Version) }},
	}
	var out []fieldChange
	for _, g := range get {
		c := fieldChange{Field: g.field, From: "none: observed", To: g.value(next)}
		if cur != nil {
			c.From = g.value(cur)
		}
		c.Changed = c.From != c.To
		out = append(out, c)
	}
	return out
}

// conflict is the 409 of a change decided on another version than the current one.
func conflict(key string, cur *store.Policy, expected int) *pageError {
	msg := fmt.Sprintf("The policy of %s changed while you were deciding: you decided on version %d, and it is now ", key, expected)
	if cur == nil {
		msg += "without a policy."
	} else {
		who := cur.ActorName
		if who == "" {
			who = cur.Actor
		}
		msg += fmt.Sprintf("at version %d (%s), saved by %s", cur.Version, cur.Describe(), who)
		if cur.Reason != "" {
			msg += fmt.Sprintf(" because %q", cur.Reason)
		}
		msg += "."
	}
	msg += " Nothing was saved: open the workload's page again and decide on the current version."
	return &pageError{status: http.StatusConflict, msg: msg}
}

// reviewPolicy answers POST /ui/workloads/{id}/policy: the change to confirm, or the
// form again with what is wrong. Nothing is saved.
func (u *UI) reviewPolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	p, status, err := u.prepare(r.Context(), r, s)
	if err != nil {
		return err
	}
	return u.render(w, status, "policy", p.view)
}

// savePolicy answers POST /ui/workloads/{id}/policy/save: the confirmed change is
// saved as the next version, with the person's key, name, address and reason, and
// the workload's page is shown again.
func (u *UI) savePolicy(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	p, status, err := u.prepare(ctx, r, s)
	if err != nil {
		return err
	}
	if p.view.Error != "" {
		return u.render(w, status, "policy", p.view)
	}
	next := p.next
	next.At, next.Reason = u.now(), p.view.Form.Reason
	next.Actor, next.ActorName, next.Remote = s.principal.KeyID, s.principal.Name, r.RemoteAddr
	saved, err := u.store.SavePolicy(ctx, next)
	if errors.Is(err, store.ErrConflict) {
		var cur *store.Policy
		if h, herr := u.store.PolicyHistory(ctx, p.view.Key); herr == nil && len(h) > 0 {
			cur = &h[0]
		}
		return conflict(p.view.Key, cur, p.view.Form.Expected)
	}
	if err != nil {
		return err
	}
	u.log.Info("dashboard policy change", "workload", saved.Workload, "version", saved.Version,
		"mode", saved.Mode, "key", s.principal.KeyID)
	if u.policyChanged != nil {
		// The version is saved: the server should apply it even if the browser left.
		u.policyChanged(context.WithoutCancel(ctx))
	}
	http.Redirect(w, r, "/ui/workloads/"+url.PathEscape(saved.Workload)+"?saved="+strconv.Itoa(saved.Version)+"#policy",
		http.StatusSeeOther)
	return nil
}
