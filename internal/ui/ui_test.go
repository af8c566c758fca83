package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The composition root passes its store.Store; SQLite is one.
var (
	_ Store = store.Store(nil)
	_ Store = (*sqlite.DB)(nil)
)

// t0 is the tests' "now"; calls start in the hour before it.
var t0 = time.Date(2025, 6, 1, 12, 0, 30, 0, time.UTC)

// secretPayload is in every recorded request, so tests can tell where payloads went.
const secretPayload = "patient Jane Roe, DOB 1970-01-01"

// shadowAnswer is what the candidate answered the shadowed calls: a payload, shown
// escaped on a call's page and never on a list.
const shadowAnswer = "maybe <i>Lyon</i>, says the candidate"

// evilName is a workload tag that must never reach a page unescaped.
const evilName = `<script>alert("x")</script>`

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return t0.Add(time.Duration(c.ns.Load())) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is the dashboard on a real SQLite store behind a real HTTP server, with one
// key of each kind: admin, viewer, a revoked admin key and a gateway key.
type env struct {
	t       *testing.T
	db      *sqlite.DB
	store   Store // what the dashboard uses; db unless a test wraps it
	keys    *auth.Keys
	clock   *clock
	srv     *httptest.Server
	logs    *syncBuffer
	secrets map[string]string // credential name -> secret
	ids     map[string]string // credential name -> key id
	changed atomic.Int32      // PolicyChanged calls
}

type envOption func(e *env, o *Options)

func newEnv(t *testing.T, withData bool, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "downshift.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, store: db, clock: &clock{}, logs: &syncBuffer{},
		secrets: map[string]string{}, ids: map[string]string{}}
	for name, k := range map[string]store.Key{
		"admin":         {Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "alice"},
		"viewer":        {Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "bob"},
		"revoked admin": {Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "eve"},
		"gateway key":   {Kind: store.KeyGateway, Name: "agent"},
	} {
		k, secret, err := auth.NewKey(k, t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		e.secrets[name], e.ids[name] = secret, k.ID
	}
	if err := db.RevokeKey(ctx, e.ids["revoked admin"], t0); err != nil {
		t.Fatal(err)
	}
	e.keys = auth.NewKeys(db, auth.Options{})
	if err := e.keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if withData {
		seed(t, db)
	}
	o := Options{Keys: e.keys, Now: e.clock.now,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Models:        testModels,
		PolicyChanged: func(context.Context) { e.changed.Add(1) },
		KnownModel: func(name string) bool {
			for _, m := range testModels() {
				if m.Name == name {
					return true
				}
			}
			return false
		},
	}
	for _, opt := range opts {
		opt(e, &o)
	}
	o.Store = e.store
	if o.Rollups == nil {
		o.Rollups = rollupsOf(t, e.store)
	}
	u, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", u)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func testModels() []Model {
	return []Model{
		{Name: "gpt-4o", Role: "reference", Backend: "openai", InputPerMTok: 2.5, OutputPerMTok: 10, Licence: "proprietary"},
		{Name: "qwen2.5-7b", Role: "candidate", Backend: "local", ParamsB: 7.6, ContextTokens: 32768,
			Licence: "Apache-2.0", InputPerMTok: 0.05, OutputPerMTok: 0.2},
		{Name: "llama-3.2-1b", Role: "candidate", Backend: "local", ParamsB: 1.2, GPUHourUSD: 1.1},
	}
}

// seedCalls are the gateway's calls of the last hour, plus an imported one: workload
// "route" on every route, the evil tag, and a call with no workload.
func seedCalls() []store.Call {
	req := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"` + secretPayload + `"}]}`)
	resp := []byte(`{"choices":[{"message":{"role":"assistant","content":"ok <b>bold</b>"}}]}`)
	shadowResp := []byte(`{"choices":[{"message":{"role":"assistant","content":"` + shadowAnswer + `"}}]}`)
	var calls []store.Call
	add := func(i int, wl string, route store.Route, model string, lat time.Duration, cost, ref float64, second *store.SecondAnswer) {
		start := t0.Add(-time.Duration(55-i) * time.Minute)
		calls = append(calls, store.Call{
			ID: "01JX00000000000000000000" + string(rune('A'+i/10)) + string(rune('0'+i%10)), StartedAt: start,
			FinishedAt: start.Add(lat), Latency: lat, Workload: wl, WorkloadID: wl, RequestedModel: "gpt-4o",
			ServedModel: model, Route: route, Status: 200, PromptTokens: 100 + i, CompletionTokens: 10,
			CostUSD: cost, ReferenceCostUSD: ref, Second: second, Request: req, Response: resp,
		})
	}
	for i := range 10 {
		add(i, "route", store.RouteReference, "gpt-4o", time.Duration(400+10*i)*time.Millisecond, 0.002, 0.002,
			&store.SecondAnswer{Kind: store.SecondShadow, Model: "qwen2.5-7b", CostUSD: 0.0001, Compared: true, Agreement: 0.9, Pass: true,
				Response: shadowResp})
	}
	for i := 10; i < 20; i++ {
		add(i, "route", store.RouteCandidate, "qwen2.5-7b", time.Duration(100+i)*time.Millisecond, 0.0002, 0.002, nil)
	}
	add(20, "route", store.RouteEscalated, "gpt-4o", 900*time.Millisecond, 0.0021, 0.002,
		&store.SecondAnswer{Kind: store.SecondRejected, Model: "qwen2.5-7b", CostUSD: 0.0001})
	add(21, evilName, store.RouteReference, "gpt-4o", 300*time.Millisecond, 0.001, 0.001, nil)
	add(22, "", store.RouteReference, "gpt-4o", 200*time.Millisecond, 0.001, 0.001, nil)
	imported := calls[0]
	imported.ID, imported.Source, imported.Second = "01JX0000000000000000000IMP", store.SourceOpenAI, nil
	return append(calls, imported)
}

// seed fills db: calls, an analysis, a leaderboard, a runtime model, a tuning job.
func seed(t testing.TB, db *sqlite.DB) {
	t.Helper()
	ctx := context.Background()
	if err := db.InsertCalls(ctx, seedCalls()); err != nil {
		t.Fatal(err)
	}
	err := db.SaveWorkloads(ctx, store.WorkloadRun{ID: "run1", At: t0.Add(-2 * time.Hour)}, []store.Workload{
		{ID: "route", Label: "route ticket", Tools: []string{"route_ticket"}, Terms: []string{"ticket", "queue"}, Calls: 21, Readiness: 87},
		{ID: "summarise", Label: "summarise <thread>", Calls: 5, Readiness: 31},
	})
	if err != nil {
		t.Fatal(err)
	}
	set := store.EvalSet{ID: "set1", WorkloadID: "route", CreatedAt: t0.Add(-time.Hour),
		Members: []store.EvalMember{{CallID: seedCalls()[0].ID, Split: store.SplitTest, Stratum: "text"}}}
	if err := db.SaveEvalSet(ctx, set); err != nil {
		t.Fatal(err)
	}
	lb, _ := json.Marshal(eval.Leaderboard{RunID: "evrun1", SetID: "set1", WorkloadID: "route", Workload: "route ticket",
		At: t0.Add(-time.Hour), Threshold: 0.95,
		Reference: eval.ReferenceRow{Model: "gpt-4o", Calls: 1, Quality: 1, CostPer1K: 2},
		Rows: []eval.Row{{Candidate: "qwen2.5-7b", Variant: eval.VariantZeroShot, Calls: 1, Answered: 1, Quality: 0.97,
			QualityCI: eval.Interval{Lo: 0.95, Hi: 0.99}, PassRate: 1, CostPer1K: 0.2, Saving: 0.9}},
		Recommendation: eval.Recommendation{Candidate: "qwen2.5-7b", Variant: eval.VariantZeroShot, Reason: "cheapest good enough"}})
	run := store.EvalRun{ID: "evrun1", SetID: "set1", WorkloadID: "route", StartedAt: t0.Add(-time.Hour),
		FinishedAt: t0.Add(-50 * time.Minute), Status: store.EvalFinished, Leaderboard: lb}
	if err := db.SaveEvalRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := db.PutModel(ctx, store.CatalogModel{Name: "llama-3.2-1b", Spec: json.RawMessage(`{}`), AddedAt: t0.Add(-3 * time.Hour), AddedBy: "cli:ops"}); err != nil {
		t.Fatal(err)
	}
	err = db.CreateTuneJob(ctx, store.TuneJob{ID: "tune1", Workload: "route", Base: "llama-3.2-1b", Trainer: "peft",
		Status: store.TuneSubmitted, CreatedAt: t0.Add(-30 * time.Minute), UpdatedAt: t0.Add(-30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
type browser struct {
	e      *env
	client *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) location() string { return r.header.Get("Location") }

func (b *browser) do(method, path string, form url.Values) response {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(out)}
}

func (b *browser) get(path string) response { return b.do(http.MethodGet, path, nil) }

func (b *browser) post(path string, form url.Values) response {
	return b.do(http.MethodPost, path, form)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the first form on a page.
func csrf(t testing.TB, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// login logs the browser in with the named credential and checks it worked.
func (b *browser) login(cred string) {
	b.e.t.Helper()
	page := b.get("/ui/login")
	r := b.post("/ui/login", url.Values{"csrf": {csrf(b.e.t, page.body)}, "key": {b.e.secrets[cred]}, "next": {"/ui/"}})
	if r.status != http.StatusSeeOther || r.location() != "/ui/" {
		b.e.t.Fatalf("login as %s: %d %s\n%s", cred, r.status, r.location(), r.body)
	}
}

// ok GETs a page and fails unless it is a 200 HTML page.
func (b *browser) ok(path string) string {
	b.e.t.Helper()
	r := b.get(path)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		b.e.t.Fatalf("GET %s: %d %s\nlog:\n%s", path, r.status, r.header.Get("Content-Type"), b.e.logs.String())
	}
	return r.body
}

// testid returns the data-value of the first element with this data-testid.
func testid(t testing.TB, page, id string) string {
	t.Helper()
	re := regexp.MustCompile(`data-testid="` + regexp.QuoteMeta(id) + `"[^>]*?data-value="([^"]*)"`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no data-testid=%q with a data-value on the page", id)
	}
	return m[1]
}
