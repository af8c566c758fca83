package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestPolicyConformance(t *testing.T) {
	storetest.RunPolicies(t, func(t *testing.T) storetest.PolicyStore { return open(t) })
}

// Saved policy versions are history: they refuse changes even to SQL that bypasses the
// store's methods.
func TestPolicyVersionsAreAppendOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "calls.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.SavePolicy(ctx, store.Policy{Workload: "w", Mode: store.ModeObserve, At: time.Now(), Actor: "cli"})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, path)
	for _, q := range []string{`UPDATE policies SET mode = 'serve'`, `DELETE FROM policies`} {
		if _, err := raw.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the append-only refusal", q, err)
		}
	}
}
