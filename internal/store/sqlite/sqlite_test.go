package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// Key rotation replaces plaintext payloads with sealed ones; the plaintext must then be
// gone from the files, not just from the rows: neither in free pages of the database
// nor in old frames of the write-ahead log.
func TestUpdatedPayloadsLeaveNoOldBytesOnDisk(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	const marker = "PLAINTEXT-MARKER-7f3a"
	big := []byte(`{"content":"` + strings.Repeat(marker+" ", 1500) + `"}`) // ~33 KB: overflow pages
	small := []byte(`{"content":"` + marker + `"}`)                         // fits in its row's page
	var calls []store.Call
	var updates []store.PayloadUpdate
	for i := range 40 {
		c := store.Call{ID: fmt.Sprintf("01J%023d", i), Status: 200, Request: big, Response: small,
			Second: &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200, Response: small}}
		calls = append(calls, c)
		sealed := make([]byte, len(big)+28)
		for j := range sealed {
			sealed[j] = byte(i + j)
		}
		updates = append(updates, store.PayloadUpdate{ID: c.ID, KeyID: "k2", Request: sealed,
			Response: sealed[:len(small)+28], SecondResponse: sealed[1 : len(small)+29]})
	}
	// Two batches: the first lands in the database file by a checkpoint, the second
	// stays in the log, so both places are checked.
	if err := db.InsertCalls(ctx, calls[:20]); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdatePayloads(ctx, []store.PayloadUpdate{{ID: calls[0].ID, Request: big}}); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertCalls(ctx, calls[20:]); err != nil {
		t.Fatal(err)
	}
	if !filesContain(t, path, marker) {
		t.Fatal("the marker is not on disk before the update; the test proves nothing")
	}
	for i := 0; i < len(updates); i += 16 {
		if err := db.UpdatePayloads(ctx, updates[i:min(i+16, len(updates))]); err != nil {
			t.Fatal(err)
		}
	}
	if filesContain(t, path, marker) {
		t.Error("plaintext of replaced payloads is still in the database or its log (open)")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if filesContain(t, path, marker) {
		t.Error("plaintext of replaced payloads is still in the database or its log (closed)")
	}
}

// filesContain reports whether the database at path, its log or its shared-memory
// index holds s.
func filesContain(t *testing.T, path, s string) bool {
	t.Helper()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			t.Logf("%s holds %q", filepath.Base(p), s)
			return true
		}
	}
	return false
}
