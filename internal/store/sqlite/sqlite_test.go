package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "calls.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func TestReopenKeepsCallsAndSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.InsertCalls(ctx, []store.Call{{ID: "01J0000000000000000000000A", Status: 200}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A second Open finds the migrations applied and must not fail or lose data.
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if n, err := db.CountCalls(ctx, store.Filter{}); err != nil || n != 1 {
		t.Errorf("after reopen CountCalls = %d, %v; want 1", n, err)
	}
}

func TestOpenUsesWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.InsertCalls(context.Background(), []store.Call{{ID: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no write-ahead log next to the database: %v", err)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "a?b.db", filepath.Join(t.TempDir(), "missing-dir", "x.db")} {
		if db, err := sqlite.Open(context.Background(), p); err == nil {
			db.Close()
			t.Errorf("Open(%q): no error", p)
		}
	}
}
