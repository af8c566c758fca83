package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
)

// policyJSON is a policy version as the API shows it. Shares and windows are shown
// with their defaults applied, as the gateway uses them. The client's address is not
// shown (viewers read policies); the audit trail has it.
type policyJSON struct {
	Workload     string    `json:"workload"`
	Version      int       `json:"version"`
	Mode         string    `json:"mode"`
	Candidate    string    `json:"candidate"`
	Description  string    `json:"description"`
	CanaryShare  float64   `json:"canary_share"`
	ShadowShare  float64   `json:"shadow_share"`
	VerifyShare  float64   `json:"verify_share"`
	Guards       []string  `json:"guards"` // empty: every guard
	MinAgreement float64   `json:"min_agreement"`
	MinGuardPass float64   `json:"min_guard_pass"`
	Window       int       `json:"window"`
	MinSamples   int       `json:"min_samples"`
	PromoteAfter int       `json:"promote_after"`
	At           time.Time `json:"at"`
	Actor        string    `json:"actor"`
	ActorName    string    `json:"actor_name"`
	Reason       string    `json:"reason"`
	Automatic    bool      `json:"automatic"`
}

func newPolicyJSON(p *store.Policy) policyJSON {
	guards := p.Guards
	if guards == nil {
		guards = []string{}
	}
	return policyJSON{
		Workload: p.Workload, Version: p.Version, Mode: p.Mode, Candidate: p.Candidate, Description: p.Describe(),
		CanaryShare: p.CanaryShare, ShadowShare: p.ShadowShare, VerifyShare: p.VerifyShare, Guards: guards,
		MinAgreement: p.MinAgreement, MinGuardPass: p.MinGuardPass, Window: p.Window, MinSamples: p.MinSamples,
		PromoteAfter: p.PromoteAfter, At: p.At, Actor: p.Actor, ActorName: p.ActorName, Reason: p.Reason,
		Automatic: p.Automatic,
	}
}

func policiesJSON(ps []store.Policy) []policyJSON {
	out := make([]policyJSON, 0, len(ps))
	for i := range ps {
		out = append(out, newPolicyJSON(&ps[i]))
	}
	return out
}

// listPolicies answers GET /api/policies: the current policy of every workload that
// has one, ordered by workload.
func (a *API) listPolicies(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	ps, err := a.store.CurrentPolicies(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		Policies []policyJSON `json:"policies"`
	}{policiesJSON(ps)})
}

// getPolicy answers GET /api/policies/{workload}: the current policy and every
// version, newest first (the current one included).
func (a *API) getPolicy(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	history, err := a.store.PolicyHistory(r.Context(), r.PathValue("workload"))
	if err != nil {
		return err
	}
	if len(history) == 0 {
		return noPolicy()
	}
	return writeJSON(w, http.StatusOK, struct {
		Policy  policyJSON   `json:"policy"`
		History []policyJSON `json:"history"`
	}{newPolicyJSON(&history[0]), policiesJSON(history)})
}

func noPolicy() *apiError {
	return &apiError{status: http.StatusNotFound, typ: openai.TypeNotFound, code: "policy_not_found",
		msg: "This workload has no policy."}
}

// policyRequest is the body of POST /api/policies/{workload}. Fields left out keep
// the current policy's values (see policy.Change).
type policyRequest struct {
	Mode         *string   `json:"mode"`
	Candidate    *string   `json:"candidate"`
	CanaryShare  *float64  `json:"canary_share"`
	ShadowShare  *float64  `json:"shadow_share"`
	VerifyShare  *float64  `json:"verify_share"`
	Guards       *[]string `json:"guards"`
	MinAgreement *float64  `json:"min_agreement"`
	MinGuardPass *float64  `json:"min_guard_pass"`
	Window       *int      `json:"window"`
	MinSamples   *int      `json:"min_samples"`
	PromoteAfter *int      `json:"promote_after"`
	// Reason is required: the audit trail says why.
	Reason string `json:"reason"`
	// ExpectedVersion, when given, is the version the change was decided on (0: the
	// workload has no policy yet); any other current version refuses the change.
	ExpectedVersion *int `json:"expected_version"`
}

// backRequest is the body of POST /api/policies/{workload}/back.
type backRequest struct {
	Reason          string `json:"reason"`
	ExpectedVersion *int   `json:"expected_version"`
}

// maxPolicyRequest caps the body of the policy POSTs.
const maxPolicyRequest = 64 << 10

// changePolicy answers POST /api/policies/{workload} with the version it saved.
func (a *API) changePolicy(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req policyRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	c := policy.Change{
		Mode: req.Mode, Candidate: req.Candidate, CanaryShare: req.CanaryShare, ShadowShare: req.ShadowShare,
		VerifyShare: req.VerifyShare, Guards: req.Guards, MinAgreement: req.MinAgreement,
		MinGuardPass: req.MinGuardPass, Window: req.Window, MinSamples: req.MinSamples, PromoteAfter: req.PromoteAfter,
	}
	return a.savePolicy(w, r, p, c, req.Reason, req.ExpectedVersion)
}

// backPolicy answers POST /api/policies/{workload}/back: the workload returns to
// observe, as `downshift shift --back` does, with the version it saved.
func (a *API) backPolicy(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req backRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	return a.savePolicy(w, r, p, policy.Change{Back: true}, req.Reason, req.ExpectedVersion)
}

// savePolicy applies c to the workload's current policy and saves the result as the
// next version; the store writes its audit entry in the same transaction. A workload
// without a policy can go back nowhere.
func (a *API) savePolicy(w http.ResponseWriter, r *http.Request, p *auth.Principal, c policy.Change, reason string, expected *int) error {
	ctx := r.Context()
	workload := r.PathValue("workload")
	if strings.TrimSpace(reason) == "" {
		return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, code: openai.CodeMissingRequired,
			param: "reason", msg: "A policy change needs a reason, for the audit trail."}
	}
	history, err := a.store.PolicyHistory(ctx, workload)
	if err != nil {
		return err
	}
	var cur *store.Policy
	current := 0
	if len(history) > 0 {
		cur, current = &history[0], history[0].Version
	}
	if c.Back && cur == nil {
		return noPolicy()
	}
	if expected != nil && *expected != current {
		return versionConflict(current, fmt.Sprintf("not %d as expected_version says", *expected), "expected_version")
	}
	next, err := policy.Next(cur, workload, c)
	if fe, ok := errors.AsType[*policy.FieldError](err); ok {
		return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, code: openai.CodeInvalidValue,
			param: fe.Field, msg: fmt.Sprintf("Invalid policy: %s.", fe)}
	}
	if err != nil {
		return err
	}
	if next.Mode != store.ModeObserve && a.knownModel != nil && !a.knownModel(next.Candidate) {
		return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, code: openai.CodeModelNotFound,
			param: "candidate", msg: fmt.Sprintf("Unknown candidate model %q.", next.Candidate)}
	}
	next.At, next.Reason = a.now(), reason
	next.Actor, next.ActorName, next.Remote = p.KeyID, p.Name, r.RemoteAddr
	// next.Version is current + 1, so a version saved meanwhile (by a person or an
	// automatic step) refuses this one rather than being overwritten.
	saved, err := a.store.SavePolicy(ctx, next)
	if errors.Is(err, store.ErrConflict) {
		now := current + 1
		if h, herr := a.store.PolicyHistory(ctx, workload); herr == nil && len(h) > 0 {
			now = h[0].Version
		}
		return versionConflict(now, fmt.Sprintf("saved while this change to version %d was being made", current), "")
	}
	if err != nil {
		return err
	}
	if a.policyChanged != nil {
		// Context-free: the version is saved, so the server should apply it even if
		// the client has gone.
		a.policyChanged(context.WithoutCancel(ctx))
	}
	out := struct {
		Policy   policyJSON  `json:"policy"`
		Previous *policyJSON `json:"previous,omitempty"`
	}{Policy: newPolicyJSON(&saved)}
	if cur != nil {
		prev := newPolicyJSON(cur)
		out.Previous = &prev
	}
	return writeJSON(w, http.StatusCreated, out)
}

// versionConflict is the 409 for a change decided on another version than current.
func versionConflict(current int, why, param string) *apiError {
	return &apiError{status: http.StatusConflict, typ: openai.TypeInvalidRequest, code: "version_conflict", param: param,
		msg: fmt.Sprintf("The workload's policy is at version %d, %s: read it again and decide on that version.", current, why)}
}

// decodeBody decodes a policy request's body into v strictly: one JSON object of
// known fields, within maxPolicyRequest bytes.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPolicyRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		ae := badRequest("Invalid policy request: %v.", err)
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			ae.param = te.Field
		}
		return ae
	}
	if dec.More() {
		return badRequest("Invalid policy request: more than one JSON value.")
	}
	return nil
}
