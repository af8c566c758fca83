package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// secretPayload is in every recorded request, so tests can tell where payloads went.
const secretPayload = "patient Jane Roe, DOB 1970-01-01"

// secondPayload is the text of a second answer: shown with the call, never listed.
const secondPayload = "the candidate's own words"

func testCalls() []store.Call {
	return []store.Call{
		{ID: "01JX0000000000000000000001", StartedAt: t0, FinishedAt: t0.Add(time.Second), ClientID: "billing",
			Workload: "route", RequestedModel: "gpt-4o", ServedModel: "gpt-4o", Status: 200,
			Latency: 1500 * time.Millisecond, Route: store.RouteReference,
			Request:  []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"` + secretPayload + `"}]}`),
			Response: []byte(`{"choices":[{"message":{"role":"assistant","content":"ok"}}]}`),
			Mode:     store.ModeShadow, PolicyVersion: 3, Candidate: "small",
			Second: &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200, PromptTokens: 12,
				CompletionTokens: 4, Latency: 250 * time.Millisecond, CostUSD: 0.0001, Compared: true, Agreement: 0.4,
				Response: []byte(`{"choices":[{"message":{"role":"assistant","content":"` + secondPayload + `"}}]}`)}},
		{ID: "01JX0000000000000000000002", StartedAt: t0.Add(time.Minute), FinishedAt: t0.Add(time.Minute),
			RequestedModel: "claude", Status: 502, ErrorType: "upstream_error",
			Request: []byte(`{"model":"claude","messages":[{"role":"user","content":"` + secretPayload + `"}]}`)},
	}
}

// env is an API on a real SQLite store behind a real HTTP server, with one key of each
// kind: admin, viewer, a revoked admin key and a gateway key.
type env struct {
	t       *testing.T
	db      *sqlite.DB
	store   Store // what the API uses; db unless a test wraps it
	keys    *auth.Keys
	srv     *httptest.Server
	logs    *syncBuffer
	secrets map[string]string // credential name -> secret
	ids     map[string]string // credential name -> key id
}

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

func newEnv(t *testing.T, configure func(e *env, o *Options)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "downshift.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.InsertCalls(ctx, testCalls()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, store: db, logs: &syncBuffer{}, secrets: map[string]string{}, ids: map[string]string{}}
	for name, k := range map[string]store.Key{
		"admin":         {Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "alice"},
		"viewer":        {Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "bob"},
		"revoked admin": {Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "eve"},
		"gateway key":   {Kind: store.KeyGateway, Name: "agent"},
	} {
		e.secrets[name], e.ids[name] = e.createKey(k)
	}
	if err := db.RevokeKey(ctx, e.ids["revoked admin"], t0); err != nil {
		t.Fatal(err)
	}
	e.keys = auth.NewKeys(db, auth.Options{})
	if err := e.keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	o := Options{Keys: e.keys, Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: func() time.Time { return t0.Add(time.Hour) }}
	if configure != nil {
		configure(e, &o)
	}
	o.Store = e.store
	api, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// createKey stores a new key directly and returns its secret and id.
func (e *env) createKey(k store.Key) (secret, id string) {
	e.t.Helper()
	k, secret, err := auth.NewKey(k, t0)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.CreateKey(context.Background(), k); err != nil {
		e.t.Fatal(err)
	}
	return secret, k.ID
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path, secret, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) audit(f store.AuditFilter) []store.AuditEntry {
	e.t.Helper()
	es, err := e.db.ListAudit(context.Background(), f)
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

// errorBody is OpenAI's error JSON.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestEveryEndpointNeedsTheRightKey(t *testing.T) {
	e := newEnv(t, nil)
	unknown, _ := auth.NewSecret(store.KeyAdmin)
	credentials := []struct {
		name   string
		secret string
	}{
		{"no key", ""},
		{"invalid key", unknown},
		{"gateway key", e.secrets["gateway key"]},
		{"revoked admin key", e.secrets["revoked admin"]},
		{"viewer", e.secrets["viewer"]},
		{"admin", e.secrets["admin"]},
	}
	endpoints := []struct {
		method, path, body string
		role               store.Role
		ok                 int
		// path, when set, makes the path afresh for each request (a key to revoke).
		makePath func() string
	}{
		{method: "GET", path: "/api/calls", role: store.RoleViewer, ok: 200},
		{method: "GET", path: "/api/calls/01JX0000000000000000000001", role: store.RoleViewer, ok: 200},
		{method: "GET", path: "/api/keys", role: store.RoleAdmin, ok: 200},
		{method: "POST", path: "/api/keys", body: `{"kind":"gateway","name":"new"}`, role: store.RoleAdmin, ok: 201},
		{method: "DELETE", role: store.RoleAdmin, ok: 204, makePath: func() string {
			_, id := e.createKey(store.Key{Kind: store.KeyGateway})
			return "/api/keys/" + id
		}},
		{method: "GET", path: "/api/audit", role: store.RoleAdmin, ok: 200},
		{method: "GET", path: "/api/nowhere", role: store.RoleViewer, ok: 404},
		{method: "PUT", path: "/api/calls", role: store.RoleViewer, ok: 405},
	}
	for _, ep := range endpoints {
		for _, c := range credentials {
			path := ep.path
			if ep.makePath != nil {
				path = ep.makePath()
			}
			name := ep.method + " " + strings.TrimPrefix(path, "/api/") + " " + c.name
			if ep.makePath != nil {
				name = ep.method + " keys/{id} " + c.name
			}
			t.Run(name, func(t *testing.T) {
				want := ep.ok
				switch c.name {
				case "no key", "invalid key", "revoked admin key":
					want = http.StatusUnauthorized
				case "gateway key":
					want = http.StatusForbidden
				case "viewer":
					if ep.role == store.RoleAdmin {
						want = http.StatusForbidden
					}
				}
				r := e.do(ep.method, path, c.secret, ep.body)
				if r.status != want {
					t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
				}
				if r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
				}
				if want < 400 {
					return
				}
				var eb errorBody
				if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error.Message == "" || eb.Error.Type == "" {
					t.Errorf("error body %s is not OpenAI's error JSON (%v)", r.body, err)
				}
				wantType := map[int]string{401: "authentication_error", 403: "permission_error",
					404: "not_found_error", 405: "invalid_request_error"}[want]
				if eb.Error.Type != wantType {
					t.Errorf("error type %q, want %q", eb.Error.Type, wantType)
				}
				if got := r.header.Get("WWW-Authenticate"); (want == 401) != strings.HasPrefix(got, "Bearer") {
					t.Errorf("status %d with WWW-Authenticate %q", want, got)
				}
			})
		}
	}
}

func TestAzureStyleAPIKeyHeaderWorks(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/calls", nil)
	req.Header.Set("api-key", e.secrets["viewer"])
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d with an api-key header, want 200", resp.StatusCode)
	}
}

func TestListCallsShowsMetadataOnly(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/api/calls", e.secrets["viewer"], "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got struct {
		Calls []map[string]any `json:"calls"`
		Total int              `json:"total"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Calls) != 2 || got.Total != 2 || got.Calls[0]["id"] != "01JX0000000000000000000002" {
		t.Fatalf("listing %s: want both calls, newest first", r.body)
	}
	if bytes.Contains(r.body, []byte(secretPayload)) || bytes.Contains(r.body, []byte(secondPayload)) || got.Calls[0]["request"] != nil {
		t.Errorf("listing shows payloads: %s", r.body)
	}
	if sec, _ := got.Calls[1]["second"].(map[string]any); sec["kind"] != store.SecondShadow || sec["agreement"] != 0.4 {
		t.Errorf("listing: the second answer's metadata is missing: %v", got.Calls[1]["second"])
	}
	if got.Calls[1]["latency_ms"] != 1500.0 || got.Calls[1]["client_id"] != "billing" {
		t.Errorf("call fields: %v", got.Calls[1])
	}
	if n := len(e.audit(store.AuditFilter{})); n != 0 {
		t.Errorf("listing metadata wrote %d audit entries", n)
	}
}

func TestListCallsFilters(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		query  string
		status int
		ids    []string // suffixes of the call ids, in order
		total  int
	}{
		{"?status=error", 200, []string{"2"}, 1},
		{"?status=ok", 200, []string{"1"}, 1},
		{"?status=200", 200, []string{"1"}, 1},
		{"?workload=route", 200, []string{"1"}, 1},
		{"?model=claude", 200, []string{"2"}, 1},
		{"?limit=1", 200, []string{"2"}, 2},
		{"?order=asc", 200, []string{"1", "2"}, 2},
		{"?order=asc&after=01JX0000000000000000000001", 200, []string{"2"}, 1},
		{"?since=2025-06-01T12:00:30Z", 200, []string{"2"}, 1},
		{"?until=2025-06-01T12:00:30Z", 200, []string{"1"}, 1},
		{"?limit=0", 400, nil, 0},
		{"?limit=1001", 400, nil, 0},
		{"?limit=x", 400, nil, 0},
		{"?status=teapot", 400, nil, 0},
		{"?status=999", 400, nil, 0},
		{"?order=sideways", 400, nil, 0},
		{"?since=yesterday", 400, nil, 0},
	} {
		r := e.do("GET", "/api/calls"+tt.query, e.secrets["viewer"], "")
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.query, r.status, tt.status, r.body)
			continue
		}
		if tt.status != 200 {
			var eb errorBody
			if json.Unmarshal(r.body, &eb); eb.Error.Type != "invalid_request_error" {
				t.Errorf("%s: error %s", tt.query, r.body)
			}
			continue
		}
		var got struct {
			Calls []struct{ ID string } `json:"calls"`
			Total int                   `json:"total"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range got.Calls {
			ids = append(ids, c.ID[len(c.ID)-1:])
		}
		if strings.Join(ids, ",") != strings.Join(tt.ids, ",") || got.Total != tt.total {
			t.Errorf("%s: calls %v total %d, want %v total %d", tt.query, ids, got.Total, tt.ids, tt.total)
		}
	}
}

func TestPayloadReadIsAudited(t *testing.T) {
	e := newEnv(t, nil)
	const id = "01JX0000000000000000000001"
	r := e.do("GET", "/api/calls/"+id, e.secrets["viewer"], "")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got struct {
		ID       string          `json:"id"`
		Request  json.RawMessage `json:"request"`
		Response json.RawMessage `json:"response"`
		Second   struct {
			Kind      string          `json:"kind"`
			Model     string          `json:"model"`
			Agreement *float64        `json:"agreement"`
			Pass      *bool           `json:"pass"`
			LatencyMS float64         `json:"latency_ms"`
			Response  json.RawMessage `json:"response"`
		} `json:"second"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != id || !bytes.Contains(got.Request, []byte(secretPayload)) || !bytes.HasPrefix(got.Response, []byte(`{"choices"`)) {
		t.Errorf("call %s: want its request and response embedded as JSON", r.body)
	}
	sec := got.Second
	if want := `{"choices":[{"message":{"role":"assistant","content":"` + secondPayload + `"}}]}`; string(sec.Response) != want {
		t.Errorf("second answer's response %s, want it embedded as JSON: %s", sec.Response, want)
	}
	if sec.Kind != store.SecondShadow || sec.Model != "small" || sec.Agreement == nil || *sec.Agreement != 0.4 ||
		sec.Pass == nil || *sec.Pass || sec.LatencyMS != 250 {
		t.Errorf("second answer %+v", sec)
	}
	es := e.audit(store.AuditFilter{})
	if len(es) != 1 {
		t.Fatalf("%d audit entries, want 1", len(es))
	}
	a := es[0]
	if a.Actor != e.ids["viewer"] || a.ActorName != "bob" || a.Action != store.AuditReadPayload ||
		a.Target != id || !a.At.Equal(t0.Add(time.Hour)) || !strings.HasPrefix(a.Remote, "127.0.0.1:") {
		t.Errorf("audit entry %+v", a)
	}
	// A call that does not exist is a 404 and reads nothing.
	if r := e.do("GET", "/api/calls/01JX000000000000000000000Z", e.secrets["admin"], ""); r.status != 404 {
		t.Errorf("unknown call: status %d", r.status)
	}
	if n := len(e.audit(store.AuditFilter{})); n != 1 {
		t.Errorf("%d audit entries after a miss, want still 1", n)
	}
}

// failingAudit is a store whose audit trail cannot be written.
type failingAudit struct{ Store }

func (failingAudit) AppendAudit(context.Context, store.AuditEntry) error {
	return errors.New("audit disk full")
}

func TestNoPayloadWithoutAuditEntry(t *testing.T) {
	e := newEnv(t, func(e *env, _ *Options) { e.store = failingAudit{e.db} })
	r := e.do("GET", "/api/calls/01JX0000000000000000000001", e.secrets["viewer"], "")
	if r.status != 500 || bytes.Contains(r.body, []byte(secretPayload)) {
		t.Errorf("status %d body %s: want 500 without the payload", r.status, r.body)
	}
	if !strings.Contains(e.logs.String(), "audit disk full") {
		t.Errorf("the cause is not logged: %s", e.logs.String())
	}
	// A key whose creation cannot be audited is revoked again and its secret withheld.
	r = e.do("POST", "/api/keys", e.secrets["admin"], `{"kind":"admin","role":"admin","name":"sneaky"}`)
	if r.status != 500 || bytes.Contains(r.body, []byte(auth.AdminPrefix)) {
		t.Errorf("create without audit: status %d body %s", r.status, r.body)
	}
	keys, err := e.db.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Name == "sneaky" && k.Active() {
			t.Error("a key created without an audit entry is active")
		}
	}
}

func TestOpenCallDecryptsPayloads(t *testing.T) {
	var opened []string
	e := newEnv(t, func(_ *env, o *Options) {
		o.OpenCall = func(c *store.Call) error {
			if c.ID == "01JX0000000000000000000002" {
				return errors.New("no key for key id 7")
			}
			opened = append(opened, c.ID)
			c.Request = []byte(`{"opened":true}`)
			return nil
		}
	})
	r := e.do("GET", "/api/calls/01JX0000000000000000000001", e.secrets["viewer"], "")
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"request":{"opened":true}`)) {
		t.Errorf("status %d body %s: want the opened request", r.status, r.body)
	}
	r = e.do("GET", "/api/calls/01JX0000000000000000000002", e.secrets["viewer"], "")
	if r.status != 500 || bytes.Contains(r.body, []byte(secretPayload)) {
		t.Errorf("failed open: status %d body %s: want 500 without the payload", r.status, r.body)
	}
	if len(opened) != 1 {
		t.Errorf("OpenCall opened %v", opened)
	}
	// Listing never opens payloads.
	e.do("GET", "/api/calls", e.secrets["viewer"], "")
	if len(opened) != 1 {
		t.Errorf("listing opened payloads: %v", opened)
	}
	if n := len(e.audit(store.AuditFilter{Action: store.AuditReadPayload})); n != 1 {
		t.Errorf("%d read_payload entries, want 1 (the read that happened)", n)
	}
}

func TestCreatedKeyWorksAtOnceAndItsSecretIsShownOnce(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/api/keys", e.secrets["admin"],
		`{"kind":"gateway","name":"billing agent","client_id":"billing","allowed_models":["gpt-4o"],"rate_limit":5,"burst":10}`)
	if r.status != 201 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var created struct {
		Key    keyJSON `json:"key"`
		Secret string  `json:"secret"`
	}
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatal(err)
	}
	k := created.Key
	if !strings.HasPrefix(created.Secret, auth.GatewayPrefix) || k.Kind != store.KeyGateway || k.ClientID != "billing" ||
		k.RateLimit != 5 || k.Burst != 10 || len(k.AllowedModels) != 1 || !k.Active || !k.CreatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("created %s", r.body)
	}
	c, err := e.keys.Gateway(created.Secret)
	if err != nil || c.ClientID != "billing" || !c.Allows("gpt-4o") || c.Allows("gpt-5") {
		t.Errorf("the new key right after creation: %v, %+v", err, c)
	}
	es := e.audit(store.AuditFilter{Action: store.AuditCreateKey})
	if len(es) != 1 || es[0].Target != k.ID || es[0].Actor != e.ids["admin"] || !strings.Contains(es[0].Detail, "client=billing") {
		t.Errorf("audit %+v", es)
	}
	// The secret, and every key's hash, appear nowhere else.
	list := e.do("GET", "/api/keys", e.secrets["admin"], "")
	aud := e.do("GET", "/api/audit", e.secrets["admin"], "")
	for _, body := range [][]byte{list.body, aud.body, []byte(e.logs.String())} {
		if bytes.Contains(body, []byte(created.Secret)) || bytes.Contains(body, []byte(`"hash"`)) {
			t.Errorf("secret or hash shown: %s", body)
		}
	}
	var listed struct{ Keys []keyJSON }
	if err := json.Unmarshal(list.body, &listed); err != nil || len(listed.Keys) != 5 {
		t.Errorf("GET /api/keys: %d keys, want 5 (%v)", len(listed.Keys), err)
	}
}

func TestCreateKeyRejectsBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	for name, body := range map[string]string{
		"not json":           `{"kind":`,
		"unknown field":      `{"kind":"gateway","owner":"me"}`,
		"two values":         `{"kind":"gateway"}{}`,
		"no kind":            `{"name":"x"}`,
		"unknown kind":       `{"kind":"root"}`,
		"admin without role": `{"kind":"admin"}`,
		"unknown role":       `{"kind":"admin","role":"owner"}`,
		"gateway with role":  `{"kind":"gateway","role":"admin"}`,
		"negative rate":      `{"kind":"gateway","rate_limit":-1}`,
		"burst without rate": `{"kind":"gateway","burst":3}`,
		"admin with models":  `{"kind":"admin","role":"viewer","allowed_models":["x"]}`,
		"too large":          `{"kind":"gateway","name":"` + strings.Repeat("x", maxKeyRequest) + `"}`,
	} {
		r := e.do("POST", "/api/keys", e.secrets["admin"], body)
		var eb errorBody
		if json.Unmarshal(r.body, &eb); r.status != 400 || eb.Error.Type != "invalid_request_error" {
			t.Errorf("%s: status %d body %.200s, want 400", name, r.status, r.body)
		}
	}
	if n := len(e.audit(store.AuditFilter{})); n != 0 {
		t.Errorf("refused requests wrote %d audit entries", n)
	}
}

func TestRevokedKeyStopsAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	secret, id := e.createKey(store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "temp"})
	if err := e.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/api/calls", secret, ""); r.status != 200 {
		t.Fatalf("before revocation: %d", r.status)
	}
	if r := e.do("DELETE", "/api/keys/"+id, e.secrets["admin"], ""); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/calls", secret, ""); r.status != 401 {
		t.Errorf("after revocation: %d, want 401", r.status)
	}
	// Revoking again is no error; an unknown id is a 404.
	if r := e.do("DELETE", "/api/keys/"+id, e.secrets["admin"], ""); r.status != 204 {
		t.Errorf("second revoke: %d", r.status)
	}
	if r := e.do("DELETE", "/api/keys/key_nope", e.secrets["admin"], ""); r.status != 404 {
		t.Errorf("unknown key: %d, want 404", r.status)
	}
	es := e.audit(store.AuditFilter{Action: store.AuditRevokeKey})
	if len(es) != 2 || es[0].Target != id || es[0].Actor != e.ids["admin"] {
		t.Errorf("audit %+v: want two revoke_key entries for %s", es, id)
	}
}

func TestAuditEndpointFilters(t *testing.T) {
	e := newEnv(t, nil)
	e.do("GET", "/api/calls/01JX0000000000000000000001", e.secrets["viewer"], "")
	e.do("GET", "/api/calls/01JX0000000000000000000002", e.secrets["admin"], "")
	e.do("POST", "/api/keys", e.secrets["admin"], `{"kind":"gateway"}`)
	for _, tt := range []struct {
		query   string
		status  int
		actions []string
	}{
		{"", 200, []string{"create_key", "read_payload", "read_payload"}},
		{"?action=read_payload", 200, []string{"read_payload", "read_payload"}},
		{"?actor=" + e.ids["viewer"], 200, []string{"read_payload"}},
		{"?target=01JX0000000000000000000002", 200, []string{"read_payload"}},
		{"?limit=1", 200, []string{"create_key"}},
		{"?since=2025-06-01T13:00:00Z", 200, []string{"create_key", "read_payload", "read_payload"}},
		{"?until=2025-06-01T13:00:00Z", 200, nil},
		{"?limit=-2", 400, nil},
		{"?before=abc", 400, nil},
		{"?until=soon", 400, nil},
	} {
		r := e.do("GET", "/api/audit"+tt.query, e.secrets["admin"], "")
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.query, r.status, tt.status)
			continue
		}
		if tt.status != 200 {
			continue
		}
		var got struct{ Entries []auditJSON }
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, a := range got.Entries {
			actions = append(actions, string(a.Action))
		}
		if strings.Join(actions, ",") != strings.Join(tt.actions, ",") {
			t.Errorf("%s: %v, want %v", tt.query, actions, tt.actions)
		}
	}
	// Paging back with before.
	var page struct{ Entries []auditJSON }
	json.Unmarshal(e.do("GET", "/api/audit?limit=1", e.secrets["admin"], "").body, &page)
	r := e.do("GET", "/api/audit?before="+itoa(page.Entries[0].ID), e.secrets["admin"], "")
	json.Unmarshal(r.body, &page)
	if len(page.Entries) != 2 || page.Entries[0].Action != store.AuditReadPayload {
		t.Errorf("before: %s", r.body)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestKeysNeverReachTheLog(t *testing.T) {
	e := newEnv(t, nil)
	unknown, _ := auth.NewSecret(store.KeyAdmin)
	for _, s := range []string{unknown, e.secrets["gateway key"], e.secrets["revoked admin"], e.secrets["viewer"]} {
		e.do("GET", "/api/keys", s, "")
	}
	r := e.do("POST", "/api/keys", e.secrets["admin"], `{"kind":"admin","role":"viewer"}`)
	var created struct{ Secret string }
	json.Unmarshal(r.body, &created)
	logs := e.logs.String()
	if !strings.Contains(logs, "admin API request refused") {
		t.Fatalf("refusals are not logged: %s", logs)
	}
	for name, s := range e.secrets {
		if strings.Contains(logs, s) || strings.Contains(logs, s[4:20]) {
			t.Errorf("the %s secret is in the log", name)
		}
	}
	if created.Secret == "" || strings.Contains(logs, created.Secret) || strings.Contains(logs, unknown) {
		t.Errorf("a presented or created secret is in the log")
	}
}

func TestNewNeedsStoreAndKeys(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Store and Keys succeeded")
	}
}
