package web

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
)

// policyEnv is an env whose API reports each saved policy to changed and knows the
// models in models.
type policyEnv struct {
	*env
	mu      sync.Mutex
	changed int
}

func newPolicyEnv(t *testing.T, configure func(e *env, o *Options)) *policyEnv {
	pe := &policyEnv{}
	pe.env = newEnv(t, func(e *env, o *Options) {
		o.PolicyChanged = func(ctx context.Context) {
			if ctx.Err() != nil {
				t.Error("PolicyChanged got a context already done")
			}
			pe.mu.Lock()
			pe.changed++
			pe.mu.Unlock()
		}
		o.KnownModel = func(name string) bool { return name == "llama-3.1-8b" || name == "qwen2.5-7b" }
		if configure != nil {
			configure(e, o)
		}
	})
	return pe
}

func (pe *policyEnv) changes() int {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	return pe.changed
}

// history reads the workload's versions from the store, newest first.
func (pe *policyEnv) history(workload string) []store.Policy {
	pe.t.Helper()
	h, err := pe.db.PolicyHistory(context.Background(), workload)
	if err != nil {
		pe.t.Fatal(err)
	}
	return h
}

// apiErrorBody is OpenAI's error JSON with its param.
type apiErrorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeError(t *testing.T, r response) (typ, param, code, msg string) {
	t.Helper()
	var eb apiErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error.Type == "" || eb.Error.Message == "" {
		t.Fatalf("status %d body %s is not OpenAI's error JSON (%v)", r.status, r.body, err)
	}
	if eb.Error.Param != nil {
		param = *eb.Error.Param
	}
	if eb.Error.Code != nil {
		code = *eb.Error.Code
	}
	return eb.Error.Type, param, code, eb.Error.Message
}

// saved is the answer to a policy POST.
type saved struct {
	Policy   policyJSON  `json:"policy"`
	Previous *policyJSON `json:"previous"`
}

// post saves a change as the admin and returns the version saved.
func (pe *policyEnv) post(path, body string) saved {
	pe.t.Helper()
	r := pe.do("POST", path, pe.secrets["admin"], body)
	if r.status != 201 {
		pe.t.Fatalf("POST %s %s: status %d: %s", path, body, r.status, r.body)
	}
	var s saved
	if err := json.Unmarshal(r.body, &s); err != nil {
		pe.t.Fatal(err)
	}
	return s
}

func TestPolicyEndpointsNeedTheRightKey(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	pe.post("/api/policies/route", `{"mode":"shadow","candidate":"llama-3.1-8b","reason":"start"}`)
	for _, tt := range []struct {
		method, path, body, cred string
		want                     int
	}{
		{"GET", "/api/policies", "", "viewer", 200},
		{"GET", "/api/policies/route", "", "viewer", 200},
		{"GET", "/api/policies", "", "", 401},
		{"GET", "/api/policies/route", "", "gateway key", 403},
		{"GET", "/api/policies/route", "", "revoked admin", 401},
		{"POST", "/api/policies/route", `{"mode":"serve","reason":"go"}`, "viewer", 403},
		{"POST", "/api/policies/route/back", `{"reason":"stop"}`, "viewer", 403},
		{"POST", "/api/policies/route", `{"mode":"serve","reason":"go"}`, "", 401},
		{"POST", "/api/policies/route/back", `{"reason":"stop"}`, "gateway key", 403},
		{"DELETE", "/api/policies/route", "", "admin", 405},
		{"GET", "/api/policies/route/back", "", "admin", 405},
		{"PUT", "/api/policies", "", "viewer", 405},
	} {
		r := pe.do(tt.method, tt.path, pe.secrets[tt.cred], tt.body)
		if r.status != tt.want {
			t.Errorf("%s %s as %q: status %d, want %d: %s", tt.method, tt.path, tt.cred, r.status, tt.want, r.body)
			continue
		}
		if tt.want >= 400 {
			decodeError(t, r)
		}
	}
	if h := pe.history("route"); len(h) != 1 || h[0].Mode != store.ModeShadow {
		t.Errorf("refused writes changed the policy: %+v", h)
	}
	if n := pe.changes(); n != 1 {
		t.Errorf("PolicyChanged called %d times, want 1 (the one save)", n)
	}
}

func TestAdminShiftsAWorkloadStepByStep(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	admin := pe.ids["admin"]

	s := pe.post("/api/policies/route",
		`{"mode":"shadow","candidate":"llama-3.1-8b","reason":"leaderboard ev_1 recommends it","expected_version":0}`)
	if p := s.Policy; p.Version != 1 || p.Mode != store.ModeShadow || p.Candidate != "llama-3.1-8b" || p.ShadowShare != 1 ||
		p.MinAgreement != 0.9 || p.MinGuardPass != 0.95 || p.Window != 200 || s.Previous != nil {
		t.Errorf("shadow: %+v", s)
	}
	if n := pe.changes(); n != 1 {
		t.Errorf("after the first save PolicyChanged was called %d times, want 1", n)
	}

	// The mode and its share are all a step to canary needs; the rest is kept.
	s = pe.post("/api/policies/route", `{"mode":"canary","canary_share":0.1,"reason":"shadow agreed 97%","expected_version":1}`)
	if p := s.Policy; p.Version != 2 || p.Mode != store.ModeCanary || p.CanaryShare != 0.1 || p.Candidate != "llama-3.1-8b" ||
		p.MinAgreement != 0.9 || s.Previous == nil || s.Previous.Version != 1 {
		t.Errorf("canary: %+v", s)
	}
	s = pe.post("/api/policies/route", `{"mode":"serve","min_agreement":0.85,"guards":["json_valid","tool_known"],"reason":"canary held a week"}`)
	if p := s.Policy; p.Version != 3 || p.Mode != store.ModeServe || p.MinAgreement != 0.85 || p.MinGuardPass != 0.95 ||
		strings.Join(p.Guards, ",") != "json_valid,tool_known" || p.Description != "serve llama-3.1-8b, verify 5%" {
		t.Errorf("serve: %+v", s)
	}
	if n := pe.changes(); n != 3 {
		t.Errorf("after three saves PolicyChanged was called %d times, want 3", n)
	}

	// A viewer reads the current policy and its history, newest first, with who and why.
	r := pe.do("GET", "/api/policies/route", pe.secrets["viewer"], "")
	var got struct {
		Policy  policyJSON   `json:"policy"`
		History []policyJSON `json:"history"`
	}
	if err := json.Unmarshal(r.body, &got); r.status != 200 || err != nil {
		t.Fatalf("GET: status %d %s (%v)", r.status, r.body, err)
	}
	if got.Policy.Version != 3 || len(got.History) != 3 {
		t.Fatalf("GET: %s", r.body)
	}
	reasons := []string{"canary held a week", "shadow agreed 97%", "leaderboard ev_1 recommends it"}
	for i, h := range got.History {
		if h.Version != 3-i || h.Actor != admin || h.ActorName != "alice" || h.Reason != reasons[i] ||
			!h.At.Equal(t0.Add(60*60*1e9)) || h.Automatic {
			t.Errorf("history[%d] = %+v", i, h)
		}
	}
	// The store keeps where the change came from.
	if h := pe.history("route"); len(h) != 3 || !strings.HasPrefix(h[0].Remote, "127.0.0.1:") {
		t.Errorf("stored history %+v", h)
	}

	r = pe.do("GET", "/api/policies", pe.secrets["viewer"], "")
	var list struct {
		Policies []policyJSON `json:"policies"`
	}
	if err := json.Unmarshal(r.body, &list); r.status != 200 || err != nil || len(list.Policies) != 1 ||
		list.Policies[0].Workload != "route" || list.Policies[0].Version != 3 {
		t.Errorf("GET /api/policies: status %d %s (%v)", r.status, r.body, err)
	}

	// Every save is in the audit trail, with who, from where and why.
	r = pe.do("GET", "/api/audit?action=set_policy", pe.secrets["admin"], "")
	var audit struct{ Entries []auditJSON }
	if err := json.Unmarshal(r.body, &audit); err != nil || len(audit.Entries) != 3 {
		t.Fatalf("audit: %s (%v)", r.body, err)
	}
	for i, a := range audit.Entries {
		if a.Actor != admin || a.ActorName != "alice" || a.Target != "route" || !strings.HasPrefix(a.Remote, "127.0.0.1:") ||
			!strings.Contains(a.Detail, "reason: "+reasons[i]) {
			t.Errorf("audit entry %d: %+v", i, a)
		}
	}
	if !strings.Contains(audit.Entries[0].Detail, "version 3: serve llama-3.1-8b, verify 5% (was version 2: canary llama-3.1-8b 10%") {
		t.Errorf("audit detail %q", audit.Entries[0].Detail)
	}
}

func TestPolicyJSONFieldNames(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	pe.post("/api/policies/route", `{"mode":"canary","candidate":"qwen2.5-7b","canary_share":0.25,"reason":"try"}`)
	r := pe.do("GET", "/api/policies", pe.secrets["viewer"], "")
	var raw struct {
		Policies []map[string]json.RawMessage `json:"policies"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw.Policies) != 1 {
		t.Fatalf("%s (%v)", r.body, err)
	}
	var names []string
	for k := range raw.Policies[0] {
		names = append(names, k)
	}
	slices.Sort(names)
	// The names the README documents; a change here is a change of the API.
	want := []string{"actor", "actor_name", "at", "automatic", "canary_share", "candidate", "description", "guards",
		"min_agreement", "min_guard_pass", "min_samples", "mode", "promote_after", "reason", "shadow_share",
		"verify_share", "version", "window", "workload"}
	if !slices.Equal(names, want) {
		t.Errorf("fields %v,\nwant %v", names, want)
	}
	if string(raw.Policies[0]["guards"]) != "[]" || string(raw.Policies[0]["canary_share"]) != "0.25" {
		t.Errorf("guards %s canary_share %s", raw.Policies[0]["guards"], raw.Policies[0]["canary_share"])
	}
}

func TestStaleExpectedVersionIsAConflict(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	pe.post("/api/policies/route", `{"mode":"shadow","candidate":"llama-3.1-8b","reason":"start"}`)
	pe.post("/api/policies/route", `{"mode":"canary","canary_share":0.1,"reason":"next"}`)
	for _, tt := range []struct{ path, body string }{
		{"/api/policies/route", `{"mode":"serve","reason":"decided on version 1","expected_version":1}`},
		{"/api/policies/route", `{"mode":"serve","reason":"thought it was new","expected_version":0}`},
		{"/api/policies/route/back", `{"reason":"decided on version 3","expected_version":3}`},
	} {
		r := pe.do("POST", tt.path, pe.secrets["admin"], tt.body)
		if r.status != 409 {
			t.Errorf("%s: status %d, want 409: %s", tt.body, r.status, r.body)
			continue
		}
		typ, param, code, msg := decodeError(t, r)
		if typ != "invalid_request_error" || param != "expected_version" || code != "version_conflict" ||
			!strings.Contains(msg, "at version 2") {
			t.Errorf("%s: type %q param %q code %q message %q", tt.body, typ, param, code, msg)
		}
	}
	if h := pe.history("route"); len(h) != 2 || h[0].Mode != store.ModeCanary {
		t.Errorf("a refused change was saved: %+v", h)
	}
	if n := len(pe.audit(store.AuditFilter{Action: store.AuditSetPolicy})); n != 2 {
		t.Errorf("%d set_policy entries, want 2", n)
	}
	if n := pe.changes(); n != 2 {
		t.Errorf("PolicyChanged called %d times, want 2", n)
	}
	// The right expected version goes through.
	if s := pe.post("/api/policies/route", `{"mode":"serve","reason":"decided on 2","expected_version":2}`); s.Policy.Version != 3 {
		t.Errorf("saved %+v", s.Policy)
	}
}

// racingStore saves a competing version (an automatic rollback) just before each
// policy save it is asked for, as if it had landed between the read and the write.
type racingStore struct{ Store }

func (s racingStore) SavePolicy(ctx context.Context, p store.Policy) (store.Policy, error) {
	h, err := s.Store.PolicyHistory(ctx, p.Workload)
	if err != nil {
		return store.Policy{}, err
	}
	if len(h) > 0 {
		rival := h[0]
		rival.Version, rival.Mode, rival.Actor, rival.ActorName, rival.Automatic = 0, store.ModeShadow, "downshift", "automatic rollback", true
		if _, err := s.Store.SavePolicy(ctx, rival); err != nil {
			return store.Policy{}, err
		}
	}
	return s.Store.SavePolicy(ctx, p)
}

func TestChangeSavedMeanwhileIsAConflict(t *testing.T) {
	pe := newPolicyEnv(t, func(e *env, _ *Options) { e.store = racingStore{e.db} })
	pe.post("/api/policies/route", `{"mode":"canary","candidate":"llama-3.1-8b","canary_share":0.1,"reason":"start"}`)
	r := pe.do("POST", "/api/policies/route", pe.secrets["admin"], `{"mode":"serve","reason":"go"}`)
	if r.status != 409 {
		t.Fatalf("status %d, want 409: %s", r.status, r.body)
	}
	if _, _, code, msg := decodeError(t, r); code != "version_conflict" || !strings.Contains(msg, "at version 2") {
		t.Errorf("code %q message %q", code, msg)
	}
	if h := pe.history("route"); len(h) != 2 || h[0].Mode != store.ModeShadow || !h[0].Automatic {
		t.Errorf("the rival version was overwritten: %+v", h)
	}
	if n := pe.changes(); n != 1 {
		t.Errorf("PolicyChanged called %d times, want 1 (the first save only)", n)
	}
}

func TestBackReturnsToObserve(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	pe.post("/api/policies/route", `{"mode":"serve","candidate":"llama-3.1-8b","reason":"start"}`)
	// The candidate is not checked on the way back, even if it left the catalog.
	pe.post("/api/policies/other", `{"mode":"shadow","candidate":"qwen2.5-7b","reason":"start"}`)

	s := pe.post("/api/policies/route/back", `{"reason":"incident 42","expected_version":1}`)
	if p := s.Policy; p.Version != 2 || p.Mode != store.ModeObserve || p.Candidate != "llama-3.1-8b" ||
		p.Reason != "incident 42" || p.Actor != pe.ids["admin"] || s.Previous == nil || s.Previous.Mode != store.ModeServe {
		t.Errorf("back: %+v", s)
	}
	if n := pe.changes(); n != 3 {
		t.Errorf("PolicyChanged called %d times, want 3", n)
	}
	for _, tt := range []struct {
		path, body  string
		status      int
		param, code string
	}{
		{"/api/policies/never/back", `{"reason":"x"}`, 404, "", "policy_not_found"},
		{"/api/policies/route/back", `{}`, 400, "reason", "missing_required_parameter"},
		{"/api/policies/route/back", `{"reason":"x","mode":"shadow"}`, 400, "", ""},
		{"/api/policies/route/back", ``, 400, "", ""},
	} {
		r := pe.do("POST", tt.path, pe.secrets["admin"], tt.body)
		if r.status != tt.status {
			t.Errorf("%s %s: status %d, want %d: %s", tt.path, tt.body, r.status, tt.status, r.body)
			continue
		}
		if _, param, code, _ := decodeError(t, r); param != tt.param || code != tt.code {
			t.Errorf("%s %s: param %q code %q, want %q %q", tt.path, tt.body, param, code, tt.param, tt.code)
		}
	}
	if h := pe.history("route"); len(h) != 2 {
		t.Errorf("refused backs saved versions: %+v", h)
	}
	if h := pe.history("never"); len(h) != 0 {
		t.Errorf("back saved a policy for a workload that had none: %+v", h)
	}
	if n := pe.changes(); n != 3 {
		t.Errorf("PolicyChanged called %d times after refusals, want still 3", n)
	}
}

func TestBadPolicyRequestsNameTheField(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	pe.post("/api/policies/route", `{"mode":"shadow","candidate":"llama-3.1-8b","reason":"start"}`)
	for _, tt := range []struct {
		name, workload, body string
		param, msg           string
	}{
		{"not json", "route", `{"mode":`, "", "Invalid policy request"},
		{"unknown field", "route", `{"mode":"serve","reason":"r","colour":"red"}`, "", `unknown field "colour"`},
		{"two values", "route", `{"mode":"serve","reason":"r"}{}`, "", "more than one JSON value"},
		{"too large", "route", `{"mode":"serve","reason":"` + strings.Repeat("x", maxPolicyRequest) + `"}`, "", "Invalid policy request"},
		{"share as text", "route", `{"canary_share":"10%","reason":"r"}`, "canary_share", "Invalid policy request"},
		{"no reason", "route", `{"mode":"serve"}`, "reason", "needs a reason"},
		{"blank reason", "route", `{"mode":"serve","reason":"  "}`, "reason", "needs a reason"},
		{"unknown mode", "route", `{"mode":"fast","reason":"r"}`, "mode", `"fast"`},
		{"share out of range", "route", `{"mode":"canary","canary_share":1.5,"reason":"r"}`, "canary_share", "from 0 to 1"},
		{"zero canary share", "route", `{"mode":"canary","canary_share":0,"reason":"r"}`, "canary_share", "above 0"},
		{"threshold out of range", "route", `{"min_agreement":95,"reason":"r"}`, "min_agreement", "from 0 to 1"},
		{"window out of range", "route", `{"window":-1,"reason":"r"}`, "window", "want 1 to"},
		{"min samples above the window", "route", `{"window":50,"min_samples":60,"reason":"r"}`, "min_samples", "want 1 to 50"},
		{"unknown guard", "route", `{"guards":["json_valid","vibes"],"reason":"r"}`, "guards", `unknown guard "vibes"`},
		{"unknown candidate", "route", `{"candidate":"gpt-9","reason":"r"}`, "candidate", `Unknown candidate model "gpt-9"`},
		{"new workload without a candidate", "fresh", `{"mode":"shadow","reason":"r"}`, "candidate", "needs a candidate"},
		{"new workload without a mode", "fresh", `{"candidate":"llama-3.1-8b","reason":"r"}`, "mode", "needs a mode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := pe.do("POST", "/api/policies/"+tt.workload, pe.secrets["admin"], tt.body)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %.300s", r.status, r.body)
			}
			typ, param, _, msg := decodeError(t, r)
			if typ != "invalid_request_error" || param != tt.param || !strings.Contains(msg, tt.msg) {
				t.Errorf("type %q param %q message %.200q; want param %q and a message with %q", typ, param, msg, tt.param, tt.msg)
			}
		})
	}
	if h := pe.history("route"); len(h) != 1 {
		t.Errorf("refused requests saved versions: %d", len(h))
	}
	if h := pe.history("fresh"); len(h) != 0 {
		t.Errorf("refused requests saved a new workload's policy: %+v", h)
	}
	if n := len(pe.audit(store.AuditFilter{Action: store.AuditSetPolicy})); n != 1 {
		t.Errorf("%d set_policy entries, want 1", n)
	}
	if n := pe.changes(); n != 1 {
		t.Errorf("PolicyChanged called %d times, want 1", n)
	}
}

func TestWorkloadWithoutPolicyIsNotFound(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	r := pe.do("GET", "/api/policies/never", pe.secrets["viewer"], "")
	if r.status != 404 {
		t.Fatalf("status %d, want 404", r.status)
	}
	if typ, _, code, _ := decodeError(t, r); typ != "not_found_error" || code != "policy_not_found" {
		t.Errorf("type %q code %q", typ, code)
	}
	r = pe.do("GET", "/api/policies", pe.secrets["viewer"], "")
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"policies":[]}` {
		t.Errorf("no policies: status %d %s", r.status, r.body)
	}
}

func TestWorkloadNamesAreEscapedInThePath(t *testing.T) {
	pe := newPolicyEnv(t, nil)
	const workload = "team a/route"
	path := "/api/policies/" + url.PathEscape(workload)
	pe.post(path, `{"mode":"shadow","candidate":"llama-3.1-8b","reason":"start"}`)
	pe.post(path+"/back", `{"reason":"stop"}`)
	if h := pe.history(workload); len(h) != 2 || h[0].Mode != store.ModeObserve {
		t.Errorf("history of %q: %+v", workload, h)
	}
	if r := pe.do("GET", path, pe.secrets["viewer"], ""); r.status != 200 || !strings.Contains(string(r.body), `"workload":"team a/route"`) {
		t.Errorf("GET %s: %d %s", path, r.status, r.body)
	}
}

func TestAnyCandidateWithoutKnownModel(t *testing.T) {
	pe := newPolicyEnv(t, func(_ *env, o *Options) { o.KnownModel = nil })
	if s := pe.post("/api/policies/route", `{"mode":"shadow","candidate":"anything-goes","reason":"r"}`); s.Policy.Candidate != "anything-goes" {
		t.Errorf("saved %+v", s.Policy)
	}
}
