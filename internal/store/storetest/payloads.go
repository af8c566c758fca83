package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// Rewriting payloads in place (store.Store.UpdatePayloads), as key rotation does.

func testUpdatePayloads(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b, untouched, noSecond := fullCall(0), fullCall(1), fullCall(2), fullCall(3)
	b.KeyID = ""
	noSecond.Second = nil
	insert(t, s, a, b, untouched, noSecond)

	sealed := randomBytes(t, 4096)
	updates := []store.PayloadUpdate{
		// plaintext -> sealed under k2, with payloads of a different size
		{ID: b.ID, KeyID: "k2", Request: sealed, Response: sealed[:100], SecondResponse: sealed[100:300]},
		// sealed -> plaintext, two payloads emptied
		{ID: a.ID, KeyID: "", Request: []byte(`{"opened":true}`), Response: nil, SecondResponse: nil},
		// a second body for a call without a second answer is not kept
		{ID: noSecond.ID, KeyID: "k2", Request: sealed[:50], Response: sealed[:60], SecondResponse: sealed[:70]},
	}
	if err := s.UpdatePayloads(ctx, updates); err != nil {
		t.Fatalf("UpdatePayloads: %v", err)
	}

	wantB := stored(b)
	wantB.KeyID, wantB.Request, wantB.Response, wantB.Second.Response = "k2", sealed, sealed[:100], sealed[100:300]
	wantA := stored(a)
	wantA.KeyID, wantA.Request, wantA.Response, wantA.Second.Response = "", []byte(`{"opened":true}`), nil, nil
	wantNoSecond := stored(noSecond)
	wantNoSecond.KeyID, wantNoSecond.Request, wantNoSecond.Response = "k2", sealed[:50], sealed[:60]
	for _, want := range []store.Call{wantA, wantB, stored(untouched), wantNoSecond} {
		got, err := s.GetCall(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetCall: %v", err)
		}
		if d := diff(got, want); d != "" {
			t.Errorf("call %s after UpdatePayloads: %s", want.ID, d)
		}
	}
	// Filters see the new key ids.
	if n, err := s.CountCalls(ctx, store.Filter{NotSealedUnder: "k1"}); err != nil || n != 3 {
		t.Errorf("CountCalls(NotSealedUnder k1) = %d, %v; want 3 (a now plaintext, b and noSecond under k2)", n, err)
	}
}

func testUpdateAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := fullCall(0), fullCall(1)
	insert(t, s, a, b)
	missing := newID(base.Add(time.Hour))
	err := s.UpdatePayloads(ctx, []store.PayloadUpdate{
		{ID: a.ID, KeyID: "k2", Request: []byte("new-a")},
		{ID: missing, KeyID: "k2", Request: []byte("new-missing")},
		{ID: b.ID, KeyID: "k2", Request: []byte("new-b")},
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdatePayloads naming a missing call = %v, want ErrNotFound", err)
	}
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v does not name the missing call %s", err, missing)
	}
	for _, c := range []store.Call{a, b} {
		got, err := s.GetCall(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := diff(got, stored(c)); d != "" {
			t.Errorf("call %s changed by a failed batch: %s", c.ID, d)
		}
	}
	// The store is still usable after a failed batch.
	if err := s.UpdatePayloads(ctx, []store.PayloadUpdate{{ID: a.ID, KeyID: "k2", Request: []byte("x")}}); err != nil {
		t.Errorf("UpdatePayloads after a failed batch: %v", err)
	}
}

func testUpdateMissingID(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := fullCall(0)
	insert(t, s, a)
	if err := s.UpdatePayloads(ctx, []store.PayloadUpdate{{ID: a.ID, KeyID: "k2"}, {KeyID: "k2"}}); err == nil {
		t.Fatal("UpdatePayloads with an update without id: no error")
	}
	got, err := s.GetCall(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, stored(a)); d != "" {
		t.Errorf("call changed by a refused batch: %s", d)
	}
}

func testUpdateEmptyBatch(t *testing.T, s store.Store) {
	if err := s.UpdatePayloads(context.Background(), nil); err != nil {
		t.Errorf("UpdatePayloads(nil) = %v", err)
	}
}
