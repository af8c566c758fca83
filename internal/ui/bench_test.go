package ui

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// BenchmarkPages measures the server time of every page (no network: the handler is
// called directly), for the 24h and 30d periods.
//
// The store is DOWNSHIFT_UI_BENCH_DB when set: an existing SQLite store is used as it
// is (nothing is written to it: the call page's audit entries are discarded), and a
// path that does not exist yet is filled first with DOWNSHIFT_UI_BENCH_CALLS synthetic
// gateway calls (default 20,000) spread over 30 days and kept, so that a store of a
// million calls is built once:
//
//	DOWNSHIFT_UI_BENCH_DB=/tmp/ui-1m.db DOWNSHIFT_UI_BENCH_CALLS=1000000 \
//	  go test -run '^$' -bench BenchmarkPages -benchtime 20x ./internal/ui
//
// Without the variable, a store of DOWNSHIFT_UI_BENCH_CALLS calls is built in a
// temporary directory. The pages' "now" is just after the store's newest call.
func BenchmarkPages(b *testing.B) {
	ctx := context.Background()
	path := os.Getenv("DOWNSHIFT_UI_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.db")
	}
	_, statErr := os.Stat(path)
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rollups, ok := any(db).(store.RollupStore)
	if !ok {
		b.Skip("the SQLite store keeps no rollups yet; the pages would have no figures to read")
	}
	if os.IsNotExist(statErr) {
		n := 20_000
		if s := os.Getenv("DOWNSHIFT_UI_BENCH_CALLS"); s != "" {
			if n, err = strconv.Atoi(s); err != nil {
				b.Fatalf("DOWNSHIFT_UI_BENCH_CALLS=%q: %v", s, err)
			}
		}
		start := time.Now()
		if err := fillBench(ctx, db, n, time.Now().UTC()); err != nil {
			b.Fatal(err)
		}
		b.Logf("wrote %d calls to %s in %v", n, path, time.Since(start).Round(time.Millisecond))
	}
	newest, err := db.ListCalls(ctx, store.Filter{Limit: 1})
	if err != nil || len(newest) == 0 {
		b.Fatalf("the store has no calls (%v)", err)
	}
	now := newest[0].StartedAt.Add(time.Minute)

	keys := benchKeys(b)
	u, err := New(Options{Store: noAudit{db}, Rollups: rollups, Keys: keys, Models: testModels, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := keys.AdminByID("key_bench")
	cookie := u.sessions.start(p.KeyID, false)

	// The busiest workload of the last 30 days gets its page measured.
	rs, err := rollups.Rollups(ctx, store.RollupFilter{Since: now.Add(-30 * 24 * time.Hour), ByWorkload: true})
	if err != nil {
		b.Fatal(err)
	}
	busiest, most := store.NoWorkload, int64(-1)
	for key, t := range group(rs, func(r *store.Rollup) string { return r.Workload }) {
		if t.all.Calls > most {
			busiest, most = key, t.all.Calls
		}
	}
	paths := []string{"/ui/", "/ui/workloads", "/ui/workloads/" + url.PathEscape(busiest), "/ui/models"}
	names := []string{"overview", "workloads", "workload", "models"}
	for i, path := range paths {
		for _, period := range []string{"24h", "30d"} {
			b.Run(names[i]+"/"+period, func(b *testing.B) { benchPage(b, u, cookie, path+"?period="+period) })
		}
	}
	b.Run("call", func(b *testing.B) { benchPage(b, u, cookie, "/ui/calls/"+newest[0].ID) })
}

func benchPage(b *testing.B, u *UI, cookie *http.Cookie, path string) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.AddCookie(cookie)
		w := httptest.NewRecorder()
		u.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d\n%s", path, w.Code, w.Body)
		}
	}
}

// noAudit is the store with its audit trail left alone: benchmarking the call page
// must not write to a store it was pointed at.
type noAudit struct{ *sqlite.DB }

func (noAudit) AppendAudit(context.Context, store.AuditEntry) error { return nil }

// keyList is an in-memory key store with one admin key, "key_bench".
type keyList []store.Key

func (l keyList) ListKeys(context.Context) ([]store.Key, error) { return l, nil }

func benchKeys(b *testing.B) *auth.Keys {
	k, _, err := auth.NewKey(store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "bench"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	k.ID = "key_bench"
	keys := auth.NewKeys(keyList{k}, auth.Options{})
	if err := keys.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	return keys
}

// fillBench writes n gateway calls spread evenly over the 30 days before end: 20
// workloads of very different sizes, the routes of workloads being shifted, second
// answers, small payloads.
func fillBench(ctx context.Context, db *sqlite.DB, n int, end time.Time) error {
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.2, 1, 19)
	models := []string{"gpt-4o", "qwen2.5-7b", "llama-3.2-1b"}
	req := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"route this ticket: my order has not arrived and I would like a refund please"}]}`)
	resp := []byte(`{"choices":[{"message":{"role":"assistant","tool_calls":[{"function":{"name":"route_ticket","arguments":"{\"queue\":\"refunds\"}"}}]}}]}`)
	span := 30 * 24 * time.Hour
	const batch = 5000
	calls := make([]store.Call, 0, batch)
	for i := range n {
		start := end.Add(-span + time.Duration(float64(span)*float64(i)/float64(n)))
		wl := fmt.Sprintf("wl-%02d", zipf.Uint64())
		c := store.Call{
			ID: fmt.Sprintf("01BENCH%019d", i), StartedAt: start, Workload: wl, WorkloadID: wl,
			RequestedModel: "gpt-4o", ServedModel: "gpt-4o", Route: store.RouteReference, Status: 200,
			PromptTokens: 200 + rng.IntN(800), CompletionTokens: 20 + rng.IntN(200),
			Latency: time.Duration(200+rng.ExpFloat64()*600) * time.Millisecond, Request: req, Response: resp,
		}
		c.FinishedAt = start.Add(c.Latency)
		c.CostUSD = float64(c.PromptTokens)*2.5e-6 + float64(c.CompletionTokens)*10e-6
		c.ReferenceCostUSD = c.CostUSD
		if wl < "wl-05" { // the busiest workloads are being shifted
			c.Mode, c.PolicyVersion, c.Candidate = store.ModeCanary, 1, models[1+rng.IntN(2)]
			switch x := rng.Float64(); {
			case x < 0.5:
				c.Route, c.ServedModel = store.RouteCandidate, c.Candidate
				c.CostUSD /= 20
				c.Guard = store.GuardPass
			case x < 0.55:
				c.Route, c.Guard = store.RouteEscalated, "schema_valid"
				c.Second = &store.SecondAnswer{Kind: store.SecondRejected, Model: c.Candidate, CostUSD: c.CostUSD / 20}
			default:
				c.Second = &store.SecondAnswer{Kind: store.SecondShadow, Model: c.Candidate, CostUSD: c.CostUSD / 20,
					Compared: true, Agreement: 0.8 + 0.2*rng.Float64(), Pass: rng.Float64() < 0.9}
			}
		}
		calls = append(calls, c)
		if len(calls) == batch || i == n-1 {
			if err := db.InsertCalls(ctx, calls); err != nil {
				return err
			}
			calls = calls[:0]
		}
	}
	return nil
}
