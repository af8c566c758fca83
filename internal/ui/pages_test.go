package ui

import (
	"context"
	"errors"
	"fmt"
	"html"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// pages are the dashboard's GET pages and a data-testid each must show.
var pages = []struct{ path, testid string }{
	{"/ui/", "tile-calls"},
	{"/ui/workloads", "nav-workloads"},
	{"/ui/workloads/route", "policy-mode"},
	{"/ui/workloads/" + url.PathEscape(store.NoWorkload), "policy-mode"},
	{"/ui/models", "nav-models"},
}

func TestEveryPageRendersWithAnEmptyStoreAndWithData(t *testing.T) {
	for _, withData := range []bool{false, true} {
		t.Run(fmt.Sprintf("data=%v", withData), func(t *testing.T) {
			e := newEnv(t, withData)
			b := e.browser()
			b.login("viewer")
			for _, p := range pages {
				for _, period := range periods {
					body := b.ok(p.path + "?period=" + period.Name)
					if !strings.Contains(body, `data-testid="`+p.testid+`"`) {
						t.Errorf("%s?period=%s lacks data-testid=%q", p.path, period.Name, p.testid)
					}
					current := `data-testid="period-` + period.Name + `" href="` + p.path + `?period=` + period.Name + `" aria-current="page"`
					if !strings.Contains(body, current) {
						t.Errorf("%s?period=%s: the period selector does not mark %s", p.path, period.Name, period.Name)
					}
				}
			}
			if withData {
				b.ok("/ui/calls/" + seedCalls()[0].ID)
			}
		})
	}
}

func TestPagesSetHeadersThatKeepThemPrivate(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("viewer")
	r := b.get("/ui/calls/" + seedCalls()[0].ID)
	for name, want := range map[string]string{
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s: %q; want %q", name, got, want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q: want no script and nothing from elsewhere", csp)
	}
	if !strings.HasPrefix(r.header.Get("Server-Timing"), "app;dur=") {
		t.Errorf("Server-Timing %q", r.header.Get("Server-Timing"))
	}
	if strings.Contains(r.body, "<script") {
		t.Error("a page has a script")
	}
}

func TestUnknownPagesAndPeriodsAreRefused(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login("viewer")
	for path, want := range map[string]int{
		"/ui/nope":             http.StatusNotFound,
		"/ui/calls/nope":       http.StatusNotFound,
		"/ui/?period=2y":       http.StatusBadRequest,
		"/ui/models?period=1d": http.StatusBadRequest,
	} {
		r := b.get(path)
		if r.status != want || !strings.Contains(r.body, `data-testid="error" data-status="`+strconv.Itoa(want)+`"`) {
			t.Errorf("GET %s: %d; want %d with an error page\n%s", path, r.status, want, r.body)
		}
	}
}

// overviewWant is the overview of seedCalls, computed here from the calls: the
// gateway's calls only (the imported one is left out).
func overviewWant() map[string]float64 {
	var calls, cand, esc, paid, ref float64
	for _, c := range seedCalls() {
		if c.Source != store.SourceGateway {
			continue
		}
		calls++
		switch c.Route {
		case store.RouteCandidate:
			cand++
		case store.RouteEscalated:
			esc++
		}
		paid += c.CostUSD
		if c.Second != nil {
			paid += c.Second.CostUSD
		}
		ref += c.ReferenceCostUSD
	}
	return map[string]float64{
		"tile-calls": calls, "tile-candidate-share": cand / calls, "tile-escalation-rate": esc / (cand + esc),
		"tile-saved-period": ref - paid, "tile-saved-total": ref - paid, "tile-cost-period": paid,
	}
}

func TestOverviewFiguresAreTheStores(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("viewer")
	for _, period := range []string{"1h", "24h", "30d"} {
		page := b.ok("/ui/?period=" + period)
		for id, want := range overviewWant() {
			got, err := strconv.ParseFloat(testid(t, page, id), 64)
			if err != nil || math.Abs(got-want) > 1e-9 {
				t.Errorf("period %s: %s = %v; want %v", period, id, got, want)
			}
		}
		if !strings.Contains(page, `data-testid="chart-calls"`) || !strings.Contains(page, `<svg viewBox=`) {
			t.Errorf("period %s: no calls chart", period)
		}
	}
	// The calls are an hour old: after a day, the period is empty but the total stays.
	e.clock.advance(25 * time.Hour)
	b.login("viewer") // the session ended after 12 hours
	page := b.ok("/ui/?period=24h")
	if got := testid(t, page, "tile-calls"); got != "0" {
		t.Errorf("a day later, calls in the last 24h = %s; want 0", got)
	}
	if got, _ := strconv.ParseFloat(testid(t, page, "tile-saved-total"), 64); math.Abs(got-overviewWant()["tile-saved-total"]) > 1e-9 {
		t.Errorf("a day later, saved since the first call = %v; want it unchanged", got)
	}
	if got := testid(t, page, "tile-candidate-share"); got != "" {
		t.Errorf("a share of no calls = %q; want none", got)
	}
}

func TestWorkloadsListEveryWorkloadWithItsFigures(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("viewer")
	page := b.ok("/ui/workloads?period=1h")
	// route: 21 gateway calls; summarise: analysed, no calls; the evil tag; no workload.
	for _, key := range []string{"route", "summarise", html.EscapeString(evilName), html.EscapeString(store.NoWorkload)} {
		if !strings.Contains(page, `data-workload="`+key+`"`) {
			t.Errorf("no row for %s", key)
		}
	}
	row := page[strings.Index(page, `data-workload="route"`):]
	row = row[:strings.Index(row, "</tr>")]
	for id, want := range map[string]string{
		"wl-calls": "21", "wl-readiness": "87", "wl-mode": "observe", "wl-escalations": "1",
		"wl-agreement": "0.9", "wl-label": "route ticket",
	} {
		if got := testid(t, row, id); got != want && !(id == "wl-agreement" && closeTo(got, 0.9)) {
			t.Errorf("route's %s = %q; want %q", id, got, want)
		}
	}
	var all, route float64
	for _, c := range seedCalls() {
		if c.Source != store.SourceGateway {
			continue
		}
		paid := c.CostUSD
		if c.Second != nil {
			paid += c.Second.CostUSD
		}
		all += paid
		if c.WorkloadID == "route" {
			route += paid
		}
	}
	if got := testid(t, row, "wl-cost-share"); !closeTo(got, route/all) {
		t.Errorf("route's cost share = %s; want %v", got, route/all)
	}
}

func closeTo(s string, want float64) bool {
	got, err := strconv.ParseFloat(s, 64)
	return err == nil && math.Abs(got-want) < 1e-9
}

func TestWorkloadPageShowsLeaderboardHistoryAndCallsWithoutPayloads(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("viewer")
	page := b.ok("/ui/workloads/route?period=1h")
	for _, want := range []string{
		`data-testid="leaderboard"`, `data-candidate="qwen2.5-7b"`, `data-testid="recommendation"`,
		`data-testid="recent-calls"`, `data-testid="chart-agreement"`, `data-testid="chart-escalations"`,
		`data-testid="policy-readonly"`, `<h1>route ticket</h1>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the workload page lacks %s", want)
		}
	}
	if strings.Contains(page, `data-testid="policy-form"`) {
		t.Error("a viewer is shown the policy form")
	}
	if n := strings.Count(page, `data-testid="call-row"`); n != 22 { // 21 from the gateway, 1 imported
		t.Errorf("%d recent calls; want the workload's 22", n)
	}
	if got := testid(t, page, "wl-escalations"); got != "1" {
		t.Errorf("escalations = %s; want 1", got)
	}
}

func TestListPagesShowNoPayload(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("admin")
	for _, p := range pages {
		if body := b.ok(p.path + "?period=1h"); strings.Contains(body, "Jane Roe") || strings.Contains(body, "bold") || strings.Contains(body, "Lyon") {
			t.Errorf("%s shows a payload", p.path)
		}
	}
	audit, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditReadPayload})
	if err != nil || len(audit) != 0 {
		t.Errorf("list pages wrote %d payload reads to the audit trail (%v); want none", len(audit), err)
	}
}

func TestCallPageShowsTheRedactedPayloadsAndIsAudited(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("viewer")
	id := seedCalls()[0].ID
	page := b.ok("/ui/calls/" + id)
	if !strings.Contains(page, html.EscapeString(secretPayload)) || !strings.Contains(page, "ok &lt;b&gt;bold&lt;/b&gt;") {
		t.Errorf("the call page does not show the payloads, escaped:\n%s", page)
	}
	entries, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditReadPayload})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d audit entries; want 1", len(entries))
	}
	got := entries[0]
	if got.Actor != e.ids["viewer"] || got.ActorName != "bob" || got.Target != id || got.Remote == "" || !got.At.Equal(t0) {
		t.Errorf("audit entry %+v: want the viewer's key, name, the call, an address and the time", got)
	}
}

// textOf returns the text of the first element with this data-testid, up to its first
// child element.
func textOf(t testing.TB, page, id string) string {
	t.Helper()
	re := regexp.MustCompile(`data-testid="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no data-testid=%q on the page", id)
	}
	return html.UnescapeString(m[1])
}

func TestCallPageShowsBothAnswersSideBySide(t *testing.T) {
	e := newEnv(t, true)
	verified := store.Call{ID: "01JX0000000000000000000VER", StartedAt: t0.Add(-time.Minute), RequestedModel: "gpt-4o",
		ServedModel: "qwen2.5-7b", Route: store.RouteCandidate, Status: 200, Mode: store.ModeServe, PolicyVersion: 2, Candidate: "qwen2.5-7b",
		Request:  []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"where?"}]}`),
		Response: []byte(`{"choices":[{"message":{"role":"assistant","content":"Lyon, from the candidate"}}]}`),
		Second: &store.SecondAnswer{Kind: store.SecondVerify, Model: "gpt-4o", Status: 200, Compared: true, Agreement: 0.25,
			Response: []byte(`{"choices":[{"message":{"role":"assistant","content":"Paris & Tokyo, from the reference"}}]}`)}}
	if err := e.db.InsertCalls(context.Background(), []store.Call{verified}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.login("viewer")

	cases := []struct {
		id                                          string
		kind, answerModel, secondModel, agreement   string
		verdict                                     string
		clientText, secondText, clientRole, secRole string
	}{
		{id: seedCalls()[0].ID, kind: store.SecondShadow, answerModel: "gpt-4o", secondModel: "qwen2.5-7b",
			agreement: "0.9", verdict: "<strong>pass</strong>",
			clientText: "ok <b>bold</b>", secondText: shadowAnswer, clientRole: "(reference)", secRole: "(candidate)"},
		{id: verified.ID, kind: store.SecondVerify, answerModel: "qwen2.5-7b", secondModel: "gpt-4o",
			agreement: "0.25", verdict: "<strong>fail</strong>",
			clientText: "Lyon, from the candidate", secondText: "Paris & Tokyo, from the reference", clientRole: "(candidate)", secRole: "(reference)"},
	}
	for _, tc := range cases {
		page := b.ok("/ui/calls/" + tc.id)
		if !strings.Contains(page, `data-testid="call-answers"`) {
			t.Fatalf("call %s: no answers side by side:\n%s", tc.id, page)
		}
		if got := textOf(t, page, "answer-model"); got != tc.answerModel {
			t.Errorf("call %s: the client's answer is labelled %q, want %q", tc.id, got, tc.answerModel)
		}
		if got := textOf(t, page, "second-model"); got != tc.secondModel {
			t.Errorf("call %s: the second answer is labelled %q, want %q", tc.id, got, tc.secondModel)
		}
		if got := testid(t, page, "second-kind"); got != tc.kind {
			t.Errorf("call %s: second answer kind %q, want %q", tc.id, got, tc.kind)
		}
		if got := textOf(t, page, "call-response"); !strings.Contains(got, tc.clientText) {
			t.Errorf("call %s: the client's answer shows %q, want it to hold %q", tc.id, got, tc.clientText)
		}
		if got := textOf(t, page, "call-second-response"); !strings.Contains(got, tc.secondText) || strings.Contains(got, tc.clientText) {
			t.Errorf("call %s: the second answer shows %q, want it to hold %q", tc.id, got, tc.secondText)
		}
		if strings.Contains(page, tc.secondText) { // each holds a '<' or an '&'
			t.Errorf("call %s: the second answer is not escaped", tc.id)
		}
		agreement := regexp.MustCompile(`data-testid="second-verdict" data-agreement="([^"]*)"`).FindStringSubmatch(page)
		if agreement == nil || agreement[1] != tc.agreement || !strings.Contains(page, tc.verdict) {
			t.Errorf("call %s: agreement %v, want %s with %s", tc.id, agreement, tc.agreement, tc.verdict)
		}
		for _, role := range []string{tc.clientRole, tc.secRole} {
			if !strings.Contains(page, role) {
				t.Errorf("call %s: no %s label", tc.id, role)
			}
		}
	}
	// A refused candidate answer with its body: the reference's answer beside the
	// refused one, and which guard checks refused it.
	refused := store.Call{ID: "01JX0000000000000000000REF", StartedAt: t0.Add(-2 * time.Minute), RequestedModel: "gpt-4o",
		ServedModel: "gpt-4o", Route: store.RouteEscalated, Status: 200, Mode: store.ModeServe, PolicyVersion: 2,
		Candidate: "qwen2.5-7b", Guard: "tool_known",
		Request:  []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}]}`),
		Response: []byte(`{"choices":[{"message":{"role":"assistant","content":"Sunny, from the reference"}}]}`),
		Second: &store.SecondAnswer{Kind: store.SecondRejected, Model: "qwen2.5-7b", Status: 200,
			Response: []byte(`{"choices":[{"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"drop_tables","arguments":"{}"}}]}}]}`)}}
	if err := e.db.InsertCalls(context.Background(), []store.Call{refused}); err != nil {
		t.Fatal(err)
	}
	page := b.ok("/ui/calls/" + refused.ID)
	if got := textOf(t, page, "second-refused"); got != "tool_known" {
		t.Errorf("refused call: failed checks %q, want tool_known", got)
	}
	if !strings.Contains(textOf(t, page, "call-second-response"), "drop_tables") ||
		!strings.Contains(textOf(t, page, "call-response"), "Sunny, from the reference") ||
		testid(t, page, "second-kind") != store.SecondRejected || textOf(t, page, "second-model") != "qwen2.5-7b" {
		t.Errorf("refused call: the two answers are not shown as they should be:\n%s", page)
	}

	// A second answer without a body (a refused candidate's) leaves the response alone.
	page = b.ok("/ui/calls/" + seedCalls()[20].ID)
	if strings.Contains(page, `data-testid="call-answers"`) || strings.Contains(page, `data-testid="call-second-response"`) ||
		!strings.Contains(page, `<pre data-testid="call-response"`) {
		t.Errorf("a call whose second answer has no body shows the answers section:\n%s", page)
	}
	// Every view is audited, as any call page.
	if n := len(mustAudit(t, e)); n != 4 {
		t.Errorf("%d read_payload entries; want 4, one per view", n)
	}
}

func mustAudit(t *testing.T, e *env) []store.AuditEntry {
	t.Helper()
	entries, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditReadPayload})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// failingAudit is a store whose audit trail cannot be written.
type failingAudit struct{ Store }

func (failingAudit) AppendAudit(context.Context, store.AuditEntry) error {
	return errors.New("disk full")
}

func TestCallPageShowsNothingWhenTheReadCannotBeAudited(t *testing.T) {
	e := newEnv(t, true, func(e *env, o *Options) { e.store = failingAudit{e.db} })
	b := e.browser()
	b.login("admin")
	r := b.get("/ui/calls/" + seedCalls()[0].ID)
	if r.status != http.StatusInternalServerError || strings.Contains(r.body, "Jane Roe") {
		t.Errorf("%d; want 500 without the payload\n%s", r.status, r.body)
	}
	if !strings.Contains(e.logs.String(), "disk full") {
		t.Error("the cause is not in the log")
	}
}

func TestCallPageOpensPayloadsWithOpenCall(t *testing.T) {
	e := newEnv(t, true, func(e *env, o *Options) {
		o.OpenCall = func(c *store.Call) error {
			c.Request = []byte(`{"opened":true}`)
			return nil
		}
	})
	b := e.browser()
	b.login("viewer")
	if page := b.ok("/ui/calls/" + seedCalls()[0].ID); !strings.Contains(page, "&#34;opened&#34;: true") {
		t.Errorf("the page does not show the opened payload:\n%s", page)
	}
}

func TestWorkloadNamesAreEscapedEverywhere(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser()
	b.login("admin")
	evil := "/ui/workloads/" + url.PathEscape(evilName)
	for _, path := range []string{"/ui/?period=1h", "/ui/workloads?period=1h", evil, evil + "?period=1h", "/ui/models"} {
		body := b.ok(path)
		if strings.Contains(body, evilName) || strings.Contains(body, "<script") || strings.Contains(body, "summarise <thread>") {
			t.Errorf("%s shows a name unescaped", path)
		}
	}
	page := b.ok(evil + "?period=1h")
	if got := testid(t, page, "wl-calls"); got != "1" {
		t.Errorf("the evil workload's calls = %s; want 1 (its page is found by its escaped path)", got)
	}
	escaped := url.PathEscape(evilName)
	if !strings.Contains(page, `action="/ui/workloads/`+escaped+`/policy"`) {
		t.Error("the policy form does not post to the evil workload's escaped path")
	}
	if !strings.Contains(page, `href="/ui/workloads/`+escaped+`?period=7d"`) {
		t.Error("the period selector does not link to the evil workload's escaped path")
	}
}
