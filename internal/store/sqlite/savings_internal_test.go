package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// The savings queries read the calls_savings index alone, in its order: no table
// rows (whose payloads come before the columns summed), no sort. SQLite uses an index
// on an expression only when the query has the same expression, so this fails when
// workloadKey and the migration's drift apart.
func TestSavingsQueriesUseTheIndex(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range []store.SavingsFilter{
		{},
		{Since: at, Until: at.Add(24 * time.Hour)},
		{Workload: "wl-1"},
		{Workload: store.NoWorkload, Since: at},
	} {
		where, args := savingsWhere(f)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{fmt.Sprintf(savingsSums, where, savingsGroupBy(f)), slices.Concat(args, named("shadow", "verify", "pass"))},
			{fmt.Sprintf(savingsMedian, where), slices.Concat(args, named("wk", "route", "limit", "offset"))},
		} {
			rows, err := db.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.sql, q.args...)
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
			if !strings.Contains(got, "USING COVERING INDEX calls_savings") || strings.Contains(got, "TEMP B-TREE") {
				t.Errorf("filter %+v: the plan of\n%s\nis\n%s\nwant the covering index calls_savings and no sort", f, q.sql, got)
			}
		}
	}
}

// named gives each name a placeholder value: EXPLAIN needs every parameter bound.
func named(names ...string) []any {
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = sql.Named(n, 1)
	}
	return out
}
