package ui

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
)

var expectedField = regexp.MustCompile(`name="expected_version" value="(\d+)"`)

// policyForm returns the CSRF token and expected version of a workload page's form.
func policyFormOf(t *testing.T, page string) (token, expected string) {
	t.Helper()
	m := expectedField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no policy form on the page")
	}
	return csrf(t, page), m[1]
}

func TestAdminChangesModeThroughTheConfirmation(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	b := e.browser()
	b.login("admin")
	page := b.ok("/ui/workloads/route")
	if !strings.Contains(page, `data-testid="policy-form"`) {
		t.Fatal("an admin is not shown the policy form")
	}
	for _, want := range []string{`<option value="observe">`, `<option value="shadow" selected>`, `<option value="canary">`,
		`<option value="serve">`, `<option value="qwen2.5-7b">`, `<option value="llama-3.2-1b">`} {
		if !strings.Contains(page, want) {
			t.Errorf("the policy form lacks %s", want)
		}
	}
	token, expected := policyFormOf(t, page)
	if expected != "0" {
		t.Fatalf("expected version %s; want 0 for a workload without a policy", expected)
	}
	form := url.Values{"csrf": {token}, "expected_version": {expected}, "mode": {"shadow"},
		"candidate": {"qwen2.5-7b"}, "reason": {"leaderboard says qwen is good enough"}}

	// The review shows the change and saves nothing.
	review := b.post("/ui/workloads/route/policy", form)
	if review.status != http.StatusOK || !strings.Contains(review.body, `data-testid="policy-confirm"`) {
		t.Fatalf("review: %d\n%s", review.status, review.body)
	}
	for _, want := range []string{
		`<tr data-field="Mode" class="changed">`, `<td data-testid="change-from">none: observed</td>`,
		`<td data-testid="change-to">shadow`, `leaderboard says qwen is good enough`, `Confirm: save version 1`,
	} {
		if !strings.Contains(review.body, want) {
			t.Errorf("the review lacks %s", want)
		}
	}
	if h, _ := e.db.PolicyHistory(ctx, "route"); len(h) != 0 {
		t.Fatalf("the review saved %d versions", len(h))
	}

	// Confirming posts the review's hidden fields.
	confirm := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`).FindAllStringSubmatch(
		review.body[strings.Index(review.body, `data-testid="policy-confirm"`):], -1) {
		confirm.Set(m[1], unescape(m[2]))
	}
	r := b.post("/ui/workloads/route/policy/save", confirm)
	if r.status != http.StatusSeeOther || r.location() != "/ui/workloads/route?saved=1#policy" {
		t.Fatalf("save: %d to %q\n%s", r.status, r.location(), r.body)
	}
	h, err := e.db.PolicyHistory(ctx, "route")
	if err != nil || len(h) != 1 {
		t.Fatalf("history %v, %v; want one version", h, err)
	}
	p := h[0]
	if p.Mode != store.ModeShadow || p.Candidate != "qwen2.5-7b" || p.Actor != e.ids["admin"] || p.ActorName != "alice" ||
		p.Reason != "leaderboard says qwen is good enough" || p.Remote == "" || p.Automatic {
		t.Errorf("saved %+v: want shadow qwen2.5-7b by alice's key with the reason", p)
	}
	audit, err := e.db.ListAudit(ctx, store.AuditFilter{Action: store.AuditSetPolicy, Target: "route"})
	if err != nil || len(audit) != 1 || audit[0].Actor != e.ids["admin"] || !strings.Contains(audit[0].Detail, "leaderboard says qwen") {
		t.Errorf("audit %+v, %v; want one set_policy entry by alice with the reason", audit, err)
	}
	if n := e.changed.Load(); n != 1 {
		t.Errorf("PolicyChanged called %d times; want 1", n)
	}
	page = b.ok(r.location())
	for _, want := range []string{`data-testid="notice">Saved version 1`, `data-testid="policy-mode">shadow`,
		`data-testid="ph-actor" data-value="` + e.ids["admin"] + `">alice`, `data-testid="ph-reason">leaderboard says qwen`} {
		if !strings.Contains(page, want) {
			t.Errorf("the workload page after saving lacks %s", want)
		}
	}
	// The workloads list shows the new mode.
	if list := b.ok("/ui/workloads"); !strings.Contains(list, `data-testid="wl-mode" data-value="shadow"`) {
		t.Error("the workloads page does not show the new mode")
	}

	// The same confirmation again is decided on version 0, which is gone: refused.
	r = b.post("/ui/workloads/route/policy/save", confirm)
	if r.status != http.StatusConflict || !strings.Contains(r.body, "now at version 1") || !strings.Contains(r.body, "Nothing was saved") {
		t.Errorf("a second save: %d; want 409 saying the version moved\n%s", r.status, r.body)
	}
	if h, _ := e.db.PolicyHistory(ctx, "route"); len(h) != 1 {
		t.Errorf("%d versions after a refused save; want 1", len(h))
	}
}

func unescape(s string) string {
	return strings.NewReplacer("&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

func TestAVersionSavedMeanwhileRefusesTheChange(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	b := e.browser()
	b.login("admin")
	token, expected := policyFormOf(t, b.ok("/ui/workloads/route"))
	form := url.Values{"csrf": {token}, "expected_version": {expected}, "mode": {"canary"},
		"candidate": {"qwen2.5-7b"}, "canary_share": {"20"}, "reason": {"try it"}}
	if r := b.post("/ui/workloads/route/policy", form); r.status != http.StatusOK {
		t.Fatalf("review: %d", r.status)
	}
	// Someone else saves a version between the review and the confirmation.
	if _, err := e.db.SavePolicy(ctx, store.Policy{Workload: "route", Mode: store.ModeShadow, Candidate: "llama-3.2-1b",
		At: t0, Actor: "cli", ActorName: "ops", Reason: "shadow the tiny one first"}); err != nil {
		t.Fatal(err)
	}
	r := b.post("/ui/workloads/route/policy/save", form)
	if r.status != http.StatusConflict {
		t.Fatalf("%d; want 409\n%s", r.status, r.body)
	}
	for _, want := range []string{"decided on version 0", "now at version 1", "saved by ops", "shadow the tiny one first"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the conflict page does not say %q", want)
		}
	}
	if h, _ := e.db.PolicyHistory(ctx, "route"); len(h) != 1 || h[0].Actor != "cli" {
		t.Errorf("history %+v: want only the other version", h)
	}
	if e.changed.Load() != 0 {
		t.Error("PolicyChanged was called for a refused change")
	}
}

func TestPolicyFormErrorsNameTheField(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("admin")
	token, expected := policyFormOf(t, b.ok("/ui/workloads/route"))
	for _, c := range []struct {
		name  string
		set   url.Values
		field string
	}{
		{"no reason", url.Values{"mode": {"shadow"}, "candidate": {"qwen2.5-7b"}}, "reason"},
		{"blank reason", url.Values{"mode": {"shadow"}, "candidate": {"qwen2.5-7b"}, "reason": {"   "}}, "reason"},
		{"no candidate", url.Values{"mode": {"canary"}, "reason": {"x"}}, "candidate"},
		{"unknown candidate", url.Values{"mode": {"shadow"}, "candidate": {"gpt-5-nano"}, "reason": {"x"}}, "candidate"},
		{"unknown mode", url.Values{"mode": {"yolo"}, "candidate": {"qwen2.5-7b"}, "reason": {"x"}}, "mode"},
		{"share not a number", url.Values{"mode": {"canary"}, "candidate": {"qwen2.5-7b"}, "canary_share": {"half"}, "reason": {"x"}}, "canary_share"},
		{"share above 100%", url.Values{"mode": {"canary"}, "candidate": {"qwen2.5-7b"}, "canary_share": {"150"}, "reason": {"x"}}, "canary_share"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/ui/workloads/route/policy", "/ui/workloads/route/policy/save"} {
				form := url.Values{"csrf": {token}, "expected_version": {expected}}
				for k, v := range c.set {
					form[k] = v
				}
				r := b.post(path, form)
				if r.status != http.StatusBadRequest || !strings.Contains(r.body, `data-testid="policy-error" data-field="`+c.field+`"`) {
					t.Errorf("POST %s: %d; want 400 naming %s\n%s", path, r.status, c.field, r.body)
				}
			}
		})
	}
	if h, _ := e.db.PolicyHistory(context.Background(), "route"); len(h) != 0 {
		t.Errorf("%d versions saved by wrong forms", len(h))
	}
}

func TestViewerCannotChangeAPolicy(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("viewer")
	page := b.ok("/ui/workloads/route")
	if strings.Contains(page, `data-testid="policy-form"`) || !strings.Contains(page, `data-testid="policy-readonly"`) {
		t.Error("a viewer is shown the policy form")
	}
	form := url.Values{"csrf": {csrf(t, page)}, "expected_version": {"0"}, "mode": {"shadow"},
		"candidate": {"qwen2.5-7b"}, "reason": {"x"}}
	for _, path := range []string{"/ui/workloads/route/policy", "/ui/workloads/route/policy/save"} {
		if r := b.post(path, form); r.status != http.StatusForbidden || !strings.Contains(r.body, "role is viewer") {
			t.Errorf("viewer POST %s: %d; want 403\n%s", path, r.status, r.body)
		}
	}
	if h, _ := e.db.PolicyHistory(context.Background(), "route"); len(h) != 0 {
		t.Errorf("a viewer saved %d versions", len(h))
	}
}

func TestFormsWithoutTheSessionsCSRFTokenAreRefused(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("admin")
	_, expected := policyFormOf(t, b.ok("/ui/workloads/route"))
	other := e.browser()
	other.login("admin")
	otherToken := csrf(t, other.ok("/ui/"))
	for name, token := range map[string]string{"none": "", "another session's": otherToken, "garbage": "abc"} {
		form := url.Values{"expected_version": {expected}, "mode": {"shadow"}, "candidate": {"qwen2.5-7b"}, "reason": {"x"}}
		if token != "" {
			form.Set("csrf", token)
		}
		for _, path := range []string{"/ui/workloads/route/policy", "/ui/workloads/route/policy/save", "/ui/logout"} {
			if r := b.post(path, form); r.status != http.StatusForbidden {
				t.Errorf("%s token, POST %s: %d; want 403", name, path, r.status)
			}
		}
	}
	if h, _ := e.db.PolicyHistory(context.Background(), "route"); len(h) != 0 {
		t.Errorf("%d versions saved without a CSRF token", len(h))
	}
	b.ok("/ui/") // the refused logout left the session open
}

func TestNoWorkloadKeyCannotBeGivenAPolicy(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("admin")
	path := "/ui/workloads/" + url.PathEscape(store.NoWorkload)
	page := b.ok(path)
	if strings.Contains(page, `data-testid="policy-form"`) {
		t.Error("the calls without a workload are offered a policy form")
	}
	r := b.post(path+"/policy", url.Values{"csrf": {csrf(t, page)}, "expected_version": {"0"}, "mode": {"shadow"},
		"candidate": {"qwen2.5-7b"}, "reason": {"x"}})
	if r.status != http.StatusBadRequest {
		t.Errorf("%d; want 400", r.status)
	}
}
