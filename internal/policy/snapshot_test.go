package policy_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// openStore returns a new SQLite store, closed when the test ends.
func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "downshift.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func save(t *testing.T, s policy.Saver, p store.Policy) store.Policy {
	t.Helper()
	saved, err := s.SavePolicy(context.Background(), p)
	if err != nil {
		t.Fatalf("SavePolicy: %v", err)
	}
	return saved
}

func refresh(t *testing.T, r *policy.Refresher) {
	t.Helper()
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}

func TestRefreshPicksUpASavedPolicy(t *testing.T) {
	db := openStore(t)
	r := policy.NewRefresher(db, policy.RefresherOptions{})
	if d := r.Decide("w", 1); d.Mode != store.ModeObserve {
		t.Fatalf("before any Refresh: %+v, want observe", d)
	}
	refresh(t, r)
	serve := pol("w", store.ModeServe)
	serve.Version = 0
	save(t, db, serve)
	// Decide never reads the store: the saved policy is not seen before a Refresh.
	if d := r.Decide("w", 1); d.Mode != store.ModeObserve {
		t.Fatalf("saved but not refreshed: %+v, want observe", d)
	}
	refresh(t, r)
	if d := r.Decide("w", 1); d.Mode != store.ModeServe || d.Version != 1 || d.Route != store.RouteCandidate {
		t.Fatalf("after Refresh: %+v, want serve version 1 on the candidate", d)
	}
	// Nothing saved since: the snapshot is kept, not rebuilt.
	before := r.Snapshot()
	refresh(t, r)
	if r.Snapshot() != before {
		t.Error("Refresh rebuilt the snapshot though no policy was saved")
	}
	back := pol("w", store.ModeObserve)
	back.Version = 0
	save(t, db, back)
	refresh(t, r)
	if d := r.Decide("w", 1); d.Mode != store.ModeObserve || d.Version != 2 {
		t.Fatalf("after moving back: %+v, want observe version 2", d)
	}
}

func TestRefreshFailureKeepsThePoliciesLoaded(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "downshift.db"))
	if err != nil {
		t.Fatal(err)
	}
	r := policy.NewRefresher(db, policy.RefresherOptions{})
	p := pol("w", store.ModeServe)
	p.Version = 0
	save(t, db, p)
	refresh(t, r)
	db.Close()
	if err := r.Refresh(ctx); err == nil {
		t.Fatal("Refresh on a closed store succeeded")
	}
	if d := r.Decide("w", 1); d.Mode != store.ModeServe {
		t.Errorf("after a failed Refresh: %+v, want the serve policy loaded before", d)
	}
}

func TestRunRefreshesUntilCancelled(t *testing.T) {
	db := openStore(t)
	r := policy.NewRefresher(db, policy.RefresherOptions{})
	p := pol("w", store.ModeShadow)
	p.Version = 0
	save(t, db, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Run(ctx, time.Millisecond)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.Decide("w", 1).Mode != store.ModeShadow {
		if time.Now().After(deadline) {
			t.Fatal("Run never loaded the policy")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
