package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestWorkloadsConformance(t *testing.T) {
	storetest.RunWorkloads(t, func(t *testing.T) store.Store { return open(t) })
}

// Assigning 100k calls to 25 workloads, as a discovery run over a large store does:
// the first run moves every call; a re-run moves few.
func BenchmarkAssignWorkloads100k(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "calls.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 100_000
	calls := make([]store.Call, n)
	assign := [2]map[string]string{make(map[string]string, n), make(map[string]string, n)}
	for i := range calls {
		calls[i] = store.Call{ID: fmt.Sprintf("01J%023d", i), Status: 200}
		assign[0][calls[i].ID] = fmt.Sprintf("w%02d", i%25)
		assign[1][calls[i].ID] = fmt.Sprintf("w%02d", (i+1)%25)
	}
	for chunk := range slices.Chunk(calls, 10_000) {
		if err := db.InsertCalls(ctx, chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("every call moves", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if err := db.AssignWorkloads(ctx, assign[i%2]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("none moves", func(b *testing.B) {
		for b.Loop() {
			if err := db.AssignWorkloads(ctx, assign[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
