package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestRollupsConformance(t *testing.T) {
	storetest.RunRollups(t, func(t *testing.T) storetest.RollupStore {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "calls.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}

// rollupFilters are the questions the backfill tests ask before and after.
var rollupFilters = []store.RollupFilter{
	{Step: time.Minute, ByWorkload: true, ByModel: true},
	{Step: time.Hour, ByWorkload: true},
	{ByModel: true},
	{Step: 24 * time.Hour, Workload: "wl-3"},
	{Step: 5 * time.Minute, ByModel: true},
	{Since: time.Date(2026, 1, 1, 22, 30, 0, 0, time.UTC), Until: time.Date(2026, 1, 3, 23, 55, 0, 0, time.UTC)},
}

// A store that had calls before rollups existed gets their rollups when it is opened:
// the same ones InsertCalls kept. So does one whose migration ran without its backfill
// (a process stopped between the two), here backfilled a few keys at a time, as a
// workload too large to sum in memory is. Opening it again adds nothing.
func TestBackfillSumsTheStoredCalls(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	calls := randomCalls(1500, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 3*24*time.Hour)
	for chunk := range slices.Chunk(calls, 250) {
		if err := db.InsertCalls(ctx, chunk); err != nil {
			t.Fatal(err)
		}
	}
	// Imported calls are not rolled up by the backfill either, nor counted twice.
	if _, err := db.ImportCalls(ctx, slices.Concat(calls[:10], importedCalls(calls[10:20]))); err != nil {
		t.Fatal(err)
	}
	want := askRollups(t, db)
	if len(want[0]) == 0 {
		t.Fatal("no rollups to compare")
	}
	reopen := func() {
		t.Helper()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if db, err = Open(ctx, path); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := provider(t, db).DownTo(ctx, 10); err != nil {
		t.Fatal(err)
	}
	reopen()
	compareRollups(t, "migrated down, then opened", want, askRollups(t, db))

	p := provider(t, db)
	if _, err := p.DownTo(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 11); err != nil {
		t.Fatal(err)
	}
	var rows, pending int
	db.write.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM call_rollups), (SELECT count(*) FROM call_rollups_backfill)`).
		Scan(&rows, &pending)
	if rows != 0 || pending != 1 {
		t.Fatalf("migrated without the backfill: %d rollup rows and %d pending backfills, want 0 and 1", rows, pending)
	}
	if err := backfillRollups(ctx, db.write, 5); err != nil {
		t.Fatal(err)
	}
	compareRollups(t, "backfilled 5 keys at a time", want, askRollups(t, db))
	reopen()
	compareRollups(t, "opened again", want, askRollups(t, db))
}

// provider is goose's, on db's migrations, to move the schema back and forth.
func provider(t testing.TB, db *DB) *goose.Provider {
	t.Helper()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func askRollups(t *testing.T, db *DB) [][]store.Rollup {
	t.Helper()
	out := make([][]store.Rollup, len(rollupFilters))
	for i, f := range rollupFilters {
		rs, err := db.Rollups(context.Background(), f)
		if err != nil {
			t.Fatalf("Rollups(%+v): %v", f, err)
		}
		out[i] = rs
	}
	return out
}

// compareRollups fails t unless got are want, sums of money within rounding (the
// backfill adds in another order).
func compareRollups(t *testing.T, name string, want, got [][]store.Rollup) {
	t.Helper()
	round := func(rs []store.Rollup) []store.Rollup {
		rs = slices.Clone(rs)
		for i := range rs {
			r := &rs[i]
			for _, x := range []*float64{&r.CostUSD, &r.SecondCostUSD, &r.ReferenceCostUSD, &r.AgreementSum} {
				*x = math.Round(*x * 1e9)
			}
		}
		return rs
	}
	for i := range want {
		w, g := round(want[i]), round(got[i])
		if len(w) != len(g) {
			t.Errorf("%s: Rollups(%+v): %d rows, want %d", name, rollupFilters[i], len(g), len(w))
			continue
		}
		for j := range w {
			if w[j] != g[j] {
				t.Errorf("%s: Rollups(%+v) row %d:\n got %+v\nwant %+v", name, rollupFilters[i], j, g[j], w[j])
				break
			}
		}
	}
}

// randomCalls returns n gateway calls over period from start, with payloads, in
// order of id.
func randomCalls(n int, start time.Time, period time.Duration) []store.Call {
	rng := rand.New(rand.NewPCG(11, uint64(n)))
	routes := []store.Route{store.RouteReference, store.RouteCandidate, store.RouteEscalated}
	models := []string{"gpt-4o", "llama-3.1-8b", "llama-3.3-70b", ""}
	calls := make([]store.Call, n)
	for i := range calls {
		at := start.Add(time.Duration(i) * (period / time.Duration(n)))
		c := store.Call{
			ID:        fmt.Sprintf("01J%023d", i),
			StartedAt: at.Add(time.Duration(rng.Int64N(int64(time.Second)))),
			Route:     routes[rng.IntN(len(routes))], ServedModel: models[rng.IntN(len(models))],
			Status: 200, PromptTokens: rng.IntN(3000), CompletionTokens: rng.IntN(300),
			Latency: time.Duration(rng.ExpFloat64() * float64(400*time.Millisecond)),
			CostUSD: float64(rng.IntN(1000)) / 1e5, ReferenceCostUSD: float64(rng.IntN(1000)) / 1e5,
			Request: []byte(`{"messages":[]}`), Response: []byte(`{"choices":[]}`),
		}
		switch wl := fmt.Sprintf("wl-%d", rng.IntN(6)); rng.IntN(3) {
		case 0:
			c.Workload = wl
		case 1:
			c.WorkloadID, c.Workload = wl, "tag"
		}
		if rng.IntN(8) == 0 {
			c.Status = 502
		}
		if rng.IntN(4) == 0 {
			c.Guard = []string{store.GuardPass, store.GuardUnanswered}[rng.IntN(2)]
			c.Second = &store.SecondAnswer{Kind: store.SecondVerify, CostUSD: float64(rng.IntN(100)) / 1e5,
				Compared: rng.IntN(3) > 0, Agreement: rng.Float64(), Pass: rng.IntN(2) == 0}
		}
		calls[i] = c
	}
	return calls
}

// importedCalls returns copies of calls imported from a file, with new ids.
func importedCalls(calls []store.Call) []store.Call {
	out := slices.Clone(calls)
	for i := range out {
		out[i].ID = "import-" + out[i].ID
		out[i].Source = store.SourceOpenAI
	}
	return out
}

// The backfill reads the calls through calls_savings, in its order: the table only for
// the columns that precede the payloads, never a sort. Rollups read call_rollups by
// seeks in its primary key.
func TestRollupQueriesUseThePrimaryKey(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []struct {
		sql, want string
	}{
		{backfillCalls, "SEARCH calls USING INDEX calls_savings (source=?)"},
		{rollupRows, "SEARCH call_rollups USING PRIMARY KEY (span=? AND workload=? AND minute>? AND minute<?)"},
		{rollupFirst, "SEARCH call_rollups USING PRIMARY KEY (span=? AND workload=? AND minute>? AND minute<?)"},
		{rollupNextWorkload, "SEARCH call_rollups USING PRIMARY KEY (span=? AND workload>?)"},
		{fmt.Sprintf(storedHistograms, valuesList(2, 5)),
			"SEARCH r USING PRIMARY KEY (span=? AND workload=? AND minute=? AND route=? AND model=?)"},
	} {
		args := make([]any, strings.Count(q.sql, "?"))
		for i := range args {
			args[i] = i
		}
		if strings.Contains(q.sql, ":gateway") {
			args = named("gateway")
		}
		rows, err := db.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		got := strings.Join(plan, "\n")
		if !strings.Contains(got, q.want) || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("the plan of\n%s\nis\n%s\nwant %q and no sort", q.sql, got, q.want)
		}
	}
}

func TestRollupRangesCoverThePeriodOnce(t *testing.T) {
	const h, d = 60, 1440
	for _, tc := range []struct {
		lo, hi, step int64
		want         []rollupRange
	}{
		{0, 3 * d, 0, []rollupRange{{d, 0, 3 * d}}},
		{5, 3*d + 7, 0, []rollupRange{{1, 5, h}, {h, h, d}, {d, d, 3 * d}, {1, 3 * d, 3*d + 7}}},
		{5, 50, 0, []rollupRange{{1, 5, 50}}},
		{5, 2*h + 1, 0, []rollupRange{{1, 5, h}, {h, h, 2 * h}, {1, 2 * h, 2*h + 1}}},
		{-d - 1, 0, 0, []rollupRange{{1, -d - 1, -d}, {d, -d, 0}}},
		{-h - 1, 0, 0, []rollupRange{{1, -h - 1, -h}, {h, -h, 0}}},
		{0, 10 * d, 6 * h, []rollupRange{{h, 0, 10 * d}}},
		{0, 10 * d, 2 * d, []rollupRange{{d, 0, 10 * d}}},
		{0, 10 * d, 90, []rollupRange{{1, 0, 10 * d}}},
		{0, 10 * d, 5, []rollupRange{{1, 0, 10 * d}}},
	} {
		if got := rollupRanges(tc.lo, tc.hi, tc.step); !slices.Equal(got, tc.want) {
			t.Errorf("rollupRanges(%d, %d, %d) = %v, want %v", tc.lo, tc.hi, tc.step, got, tc.want)
		}
	}
}

func TestFloorAndCeilDivRoundTheSameWayBefore1970(t *testing.T) {
	for _, tc := range []struct{ a, b, floor, ceil int64 }{
		{7, 2, 3, 4}, {-7, 2, -4, -3}, {6, 3, 2, 2}, {-6, 3, -2, -2}, {0, 5, 0, 0}, {-1, 60, -1, 0},
	} {
		if f, c := floorDiv(tc.a, tc.b), ceilDiv(tc.a, tc.b); f != tc.floor || c != tc.ceil {
			t.Errorf("%d/%d: floor %d ceil %d, want %d %d", tc.a, tc.b, f, c, tc.floor, tc.ceil)
		}
	}
}

// rollupBenchVersion names the cached database of BenchmarkRollups1M; change it when
// the calls it holds or the way rollups are kept change.
const rollupBenchVersion = "v1"

// The dashboard's questions over a million gateway calls of 30 days, 20 workloads and
// four routes and models, answered from rollups, and the same sums (without the
// latency histogram, which SQL cannot build) grouped from the calls table. The first
// four are the overview's; the last two a page per workload and one workload's page.
//
// The store is built through InsertCalls, so rollups are kept as the gateway keeps
// them, and cached in os.TempDir across runs (a few minutes to build).
func BenchmarkRollups1M(b *testing.B) {
	ctx := context.Background()
	end := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	path := rollupBenchStore(b, end.Add(-30*24*time.Hour), end)
	db, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	day, month := end.Add(-24*time.Hour), end.Add(-30*24*time.Hour)
	for _, bc := range []struct {
		name  string
		f     store.RollupFilter
		calls string // the same sums from the calls table
		args  []any
	}{
		{"last 24h by 5m", store.RollupFilter{Since: day, Step: 5 * time.Minute},
			`SELECT started_at / 300000000, route, ` + callSums + ` FROM calls
			WHERE source = '' AND started_at >= ? GROUP BY 1, 2 ORDER BY 1, 2`, []any{day.UnixMicro()}},
		{"last 30d by 6h", store.RollupFilter{Since: month, Step: 6 * time.Hour},
			`SELECT started_at / 21600000000, route, ` + callSums + ` FROM calls
			WHERE source = '' AND started_at >= ? GROUP BY 1, 2 ORDER BY 1, 2`, []any{month.UnixMicro()}},
		{"all by workload", store.RollupFilter{ByWorkload: true},
			`SELECT ` + workloadKey + ` AS wk, route, ` + callSums + ` FROM calls
			WHERE source = '' GROUP BY 1, 2 ORDER BY 1, 2`, nil},
		{"all by model", store.RollupFilter{ByModel: true},
			`SELECT route, served_model, ` + callSums + ` FROM calls
			WHERE source = '' GROUP BY 1, 2 ORDER BY 1, 2`, nil},
		{"last 24h by 5m by workload", store.RollupFilter{Since: day, Step: 5 * time.Minute, ByWorkload: true},
			`SELECT started_at / 300000000, ` + workloadKey + ` AS wk, route, ` + callSums + ` FROM calls
			WHERE source = '' AND started_at >= ? GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, []any{day.UnixMicro()}},
		{"one workload last 30d by 6h", store.RollupFilter{Since: month, Step: 6 * time.Hour, Workload: "wl-07"},
			`SELECT started_at / 21600000000, route, ` + callSums + ` FROM calls
			WHERE source = '' AND ` + workloadKey + ` = 'wl-07' AND started_at >= ? GROUP BY 1, 2 ORDER BY 1, 2`,
			[]any{month.UnixMicro()}},
	} {
		b.Run(bc.name+"/rollups", func(b *testing.B) {
			for b.Loop() {
				got, err := db.Rollups(ctx, bc.f)
				if err != nil || len(got) == 0 {
					b.Fatalf("%d rows, %v", len(got), err)
				}
			}
		})
		b.Run(bc.name+"/calls table", func(b *testing.B) {
			for b.Loop() {
				n, err := countRows(ctx, db.read, bc.calls, bc.args...)
				if err != nil || n == 0 {
					b.Fatalf("%d rows, %v", n, err)
				}
			}
		})
	}
}

// callSums are a rollup's sums but the histogram, in SQL over calls.
const callSums = `count(*), count(*) FILTER (WHERE status >= 400), total(prompt_tokens),
	total(completion_tokens), total(cost_usd), total(second_cost_usd), total(reference_cost_usd),
	count(agreement), count(*) FILTER (WHERE agreement_pass != 0 AND agreement IS NOT NULL),
	total(agreement), count(*) FILTER (WHERE guard != ''), count(*) FILTER (WHERE guard NOT IN ('', 'pass'))`

func countRows(ctx context.Context, db *sql.DB, q string, args ...any) (int, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// rollupBenchStore returns the path of a store of a million gateway calls over
// [start, end), building it if os.TempDir holds none of rollupBenchVersion.
func rollupBenchStore(b *testing.B, start, end time.Time) string {
	path := filepath.Join(os.TempDir(), "downshift-bench-rollups-"+rollupBenchVersion+".db")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx := context.Background()
	tmp := filepath.Join(b.TempDir(), "calls.db")
	db, err := Open(ctx, tmp)
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	routes := []store.Route{store.RouteReference, store.RouteReference, store.RouteCandidate, store.RouteEscalated}
	models := []string{"gpt-4o", "gpt-4o-mini", "llama-3.1-8b", "llama-3.3-70b"}
	every := end.Sub(start) / n
	calls := make([]store.Call, 0, 20_000)
	began := time.Now()
	for i := range n {
		k := rng.IntN(len(routes))
		c := store.Call{
			ID:        fmt.Sprintf("01J%023d", i),
			StartedAt: start.Add(time.Duration(i) * every),
			Status:    200, Route: routes[k], ServedModel: models[k],
			PromptTokens: 500 + rng.IntN(2000), CompletionTokens: rng.IntN(300),
			Latency: time.Duration(rng.ExpFloat64() * float64(800*time.Millisecond)),
			CostUSD: 0.001, ReferenceCostUSD: 0.01,
		}
		if wl := fmt.Sprintf("wl-%02d", rng.IntN(20)); i%3 == 0 {
			c.WorkloadID = wl
		} else {
			c.Workload = wl
		}
		if i%10 == 0 {
			c.Mode, c.Guard = store.ModeShadow, store.GuardPass
			c.Second = &store.SecondAnswer{Kind: store.SecondShadow, CostUSD: 0.001, Compared: true, Agreement: 0.9, Pass: true}
		}
		if calls = append(calls, c); len(calls) == cap(calls) {
			if err := db.InsertCalls(ctx, calls); err != nil {
				b.Fatal(err)
			}
			calls = calls[:0]
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d calls in %v", n, time.Since(began).Round(time.Second))
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// What keeping rollups adds to InsertCalls: recorder-sized batches (256 calls, ~2 KB of
// payload each, 10 seconds of calls), from one workload and from 20 workloads over four
// routes and models, which is 80 keys at each span.
func BenchmarkInsertRecorderBatches(b *testing.B) {
	req := []byte(`{"messages":[{"role":"user","content":"` + strings.Repeat("x", 1500) + `"}]}`)
	resp := []byte(`{"choices":[{"message":{"content":"` + strings.Repeat("y", 400) + `"}}]}`)
	routes := []store.Route{store.RouteReference, store.RouteReference, store.RouteCandidate, store.RouteEscalated}
	models := []string{"gpt-4o", "gpt-4o-mini", "llama-3.1-8b", "llama-3.3-70b"}
	for _, workloads := range []int{1, 20} {
		b.Run(fmt.Sprintf("workloads=%d", workloads), func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, filepath.Join(b.TempDir(), "calls.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			batch := make([]store.Call, 256)
			seq := 0
			for b.Loop() {
				for i := range batch {
					seq++
					k := seq % len(routes)
					batch[i] = store.Call{ID: fmt.Sprintf("01J%023d", seq), StartedAt: start.Add(time.Duration(seq) * 40 * time.Millisecond),
						Workload: fmt.Sprintf("wl-%02d", seq/len(routes)%workloads), Route: routes[k], ServedModel: models[k],
						Status: 200, PromptTokens: 500, CompletionTokens: 50, Latency: time.Duration(seq%997) * time.Millisecond,
						CostUSD: 0.001, ReferenceCostUSD: 0.01, Request: req, Response: resp}
				}
				if err := db.InsertCalls(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// The backfill of BenchmarkRollups1M's store: the first Open after migration 00011,
// which sums a million calls (timed from a copy migrated back to 00010).
func BenchmarkBackfill1M(b *testing.B) {
	ctx := context.Background()
	end := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	src := rollupBenchStore(b, end.Add(-30*24*time.Hour), end)
	path := filepath.Join(b.TempDir(), "calls.db")
	for range b.N {
		b.StopTimer()
		if err := copyFile(path, src); err != nil {
			b.Fatal(err)
		}
		db, err := Open(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := provider(b, db).DownTo(ctx, 10); err != nil {
			b.Fatal(err)
		}
		db.Close()
		b.StartTimer()
		if db, err = Open(ctx, path); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		db.Close()
	}
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
