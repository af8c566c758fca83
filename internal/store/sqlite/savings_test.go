package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestSavingsConformance(t *testing.T) {
	storetest.RunSavings(t, func(t *testing.T) storetest.SavingsStore { return open(t) })
}

// The savings report over a million gateway calls in 25 workloads, as `downshift
// report` runs it: everything, one day of the month, and one workload.
func BenchmarkSavings1M(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "calls.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 1_000_000
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	routes := []store.Route{store.RouteReference, store.RouteReference, store.RouteCandidate, store.RouteEscalated}
	calls := make([]store.Call, n)
	for i := range calls {
		c := store.Call{
			ID:        fmt.Sprintf("01J%023d", i),
			StartedAt: start.Add(time.Duration(i) * 2600 * time.Millisecond), // a month
			Status:    200,
			Route:     routes[i%len(routes)],
			Latency:   time.Duration(100+(i*7919)%5000) * time.Millisecond,
			CostUSD:   0.001, ReferenceCostUSD: 0.01,
		}
		if i%3 == 0 {
			c.WorkloadID = fmt.Sprintf("wl-%02d", i%25)
		} else {
			c.Workload = fmt.Sprintf("wl-%02d", i%25)
		}
		if i%10 == 0 {
			c.Mode = store.ModeShadow
			c.Second = &store.SecondAnswer{Kind: store.SecondShadow, CostUSD: 0.001, Compared: true, Agreement: 0.9, Pass: true}
		}
		calls[i] = c
	}
	for chunk := range slices.Chunk(calls, 20_000) {
		if err := db.InsertCalls(ctx, chunk); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		f    store.SavingsFilter
	}{
		{"all", store.SavingsFilter{}},
		{"one day", store.SavingsFilter{Since: start.Add(10 * 24 * time.Hour), Until: start.Add(11 * 24 * time.Hour)}},
		{"one workload", store.SavingsFilter{Workload: "wl-07"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got, err := db.Savings(ctx, bc.f)
				if err != nil || len(got) == 0 {
					b.Fatalf("%d rows, %v", len(got), err)
				}
			}
		})
	}
}
