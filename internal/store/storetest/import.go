package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
)

// Importing calls (store.Store.ImportCalls): idempotent, all or nothing.

func importCalls(t *testing.T, s store.Store, calls ...store.Call) int {
	t.Helper()
	n, err := s.ImportCalls(context.Background(), calls)
	if err != nil {
		t.Fatalf("ImportCalls: %v", err)
	}
	return n
}

func testImportIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	recorded := fullCall(0)
	insert(t, s, recorded)

	a, b, c := fullCall(1), fullCall(2), fullCall(3)
	// A call whose id is stored keeps what was stored first, even when the import
	// brings different fields under that id.
	clash := recorded
	clash.Workload, clash.Request = "imported", []byte(`{"other":true}`)
	if n := importCalls(t, s, a, clash, b, a); n != 2 {
		t.Errorf("first import added %d calls, want 2 (a, b; not the stored id nor a again)", n)
	}
	if n := importCalls(t, s, a, b); n != 0 {
		t.Errorf("importing the same calls again added %d, want 0", n)
	}
	if n := importCalls(t, s, b, c, a); n != 1 {
		t.Errorf("import with one new call added %d, want 1", n)
	}
	if n, err := s.CountCalls(ctx, store.Filter{}); err != nil || n != 4 {
		t.Errorf("CountCalls = %d, %v; want 4", n, err)
	}
	for _, want := range []store.Call{recorded, a, b, c} {
		got, err := s.GetCall(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetCall %s: %v", want.ID, err)
		}
		if d := diff(got, stored(want)); d != "" {
			t.Errorf("call %s after imports: %s", want.ID, d)
		}
	}
	// InsertCalls still refuses an id that an import stored.
	if err := s.InsertCalls(ctx, []store.Call{a}); err == nil {
		t.Error("InsertCalls of an imported id: no error")
	}
}

func testImportAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	existing := fullCall(0)
	insert(t, s, existing)
	fresh, other := fullCall(1), fullCall(2)
	n, err := s.ImportCalls(ctx, []store.Call{fresh, existing, {}, other})
	if err == nil {
		t.Fatal("ImportCalls with a call without id: no error")
	}
	if n != 0 {
		t.Errorf("failed ImportCalls reported %d added, want 0", n)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := s.ImportCalls(canceled, []store.Call{fresh, other}); err == nil || n != 0 {
		t.Errorf("ImportCalls with a canceled context = %d, %v; want 0 and an error", n, err)
	}
	if n, err := s.CountCalls(ctx, store.Filter{}); err != nil || n != 1 {
		t.Errorf("after failed imports, CountCalls = %d, %v; want 1", n, err)
	}
	for _, id := range []string{fresh.ID, other.ID} {
		if _, err := s.GetCall(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("call %s of a failed import: GetCall error = %v, want ErrNotFound", id, err)
		}
	}
	// The store is still usable after a failed batch.
	if n := importCalls(t, s, fresh, other); n != 2 {
		t.Errorf("import after failed batches added %d, want 2", n)
	}
}

func testImportEmptyBatch(t *testing.T, s store.Store) {
	if n, err := s.ImportCalls(context.Background(), nil); err != nil || n != 0 {
		t.Errorf("ImportCalls(nil) = %d, %v; want 0, nil", n, err)
	}
}
