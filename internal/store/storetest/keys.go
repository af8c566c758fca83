package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// KeyStore is what RunKeys tests: keys, their use, and the audit trail.
type KeyStore interface {
	store.KeyStore
	store.KeyUsage
	store.AuditLog
	Close() error
}

// RunKeys runs the conformance suite for keys and the audit trail against the stores
// open makes. open must return a new, empty store each time; RunKeys closes it.
func RunKeys(t *testing.T, open func(t *testing.T) KeyStore) {
	tests := []testCase[KeyStore]{
		{"KeysRoundTripEveryField", testKeysRoundTrip},
		{"InvalidKeyIsRefused", testInvalidKey},
		{"DuplicateIDOrHashIsConflict", testKeyConflict},
		{"RevokeKeepsFirstTimeAndUnknownIsNotFound", testRevoke},
		{"TouchKeepsLatestUse", testTouch},
		{"AuditRoundTripNewestFirst", testAuditRoundTrip},
		{"AuditFiltersSelect", testAuditFilters},
		{"AuditLimitCapsAndDefaultsTo100", testAuditLimit},
		{"AuditNeedsActorActionAndTime", testAuditRequired},
		{"ConcurrentAuditAppendsAllLand", testAuditConcurrent},
	}
	runEach(t, open, tests)
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// gatewayKey and adminKey return valid keys with every field they may have set.
func gatewayKey(i int) store.Key {
	return store.Key{
		ID: fmt.Sprintf("key_gw%02d", i), Name: "billing agent — 請求", Kind: store.KeyGateway,
		ClientID: "billing", AllowedModels: []string{"gpt-4o", "meta/llama-3.3-70b-instruct"},
		RateLimit: 2.5, Burst: 7, Hash: hashOf(fmt.Sprintf("gw%d", i)),
		CreatedAt: base.Add(time.Duration(i) * time.Minute),
	}
}

func adminKey(i int, role store.Role) store.Key {
	return store.Key{
		ID: fmt.Sprintf("key_ad%02d", i), Name: "alice", Kind: store.KeyAdmin, Role: role,
		Hash: hashOf(fmt.Sprintf("ad%d", i)), CreatedAt: base.Add(time.Duration(i) * time.Minute),
	}
}

// storedKey is what a store gives back for k: microseconds, UTC, nil for no models.
func storedKey(k store.Key) store.Key {
	trunc := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.Truncate(time.Microsecond).UTC()
	}
	k.CreatedAt, k.RevokedAt, k.LastUsedAt = trunc(k.CreatedAt), trunc(k.RevokedAt), trunc(k.LastUsedAt)
	if len(k.AllowedModels) == 0 {
		k.AllowedModels = nil
	}
	return k
}

func keyDiff(got, want store.Key) string {
	for _, p := range []struct {
		name      string
		got, want time.Time
	}{{"CreatedAt", got.CreatedAt, want.CreatedAt}, {"RevokedAt", got.RevokedAt, want.RevokedAt}, {"LastUsedAt", got.LastUsedAt, want.LastUsedAt}} {
		if !p.got.Equal(p.want) || (!p.got.IsZero() && p.got.Location() != time.UTC) {
			return fmt.Sprintf("%s %v, want %v (UTC)", p.name, p.got, p.want)
		}
	}
	got.CreatedAt, got.RevokedAt, got.LastUsedAt = want.CreatedAt, want.RevokedAt, want.LastUsedAt
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("got  %+v\nwant %+v", got, want)
	}
	return ""
}

func listKeys(t *testing.T, s KeyStore) []store.Key {
	t.Helper()
	keys, err := s.ListKeys(context.Background())
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	return keys
}

func testKeysRoundTrip(t *testing.T, s KeyStore) {
	ctx := context.Background()
	if keys := listKeys(t, s); len(keys) != 0 {
		t.Fatalf("new store lists %d keys", len(keys))
	}
	gw := gatewayKey(2)
	gw.CreatedAt = gw.CreatedAt.Add(123 * time.Nanosecond) // dropped by the store
	bare := store.Key{ID: "key_bare", Kind: store.KeyGateway, Hash: hashOf("bare"),
		AllowedModels: []string{}, CreatedAt: base.Add(3 * time.Minute)}
	ad := adminKey(1, store.RoleViewer)
	ad.LastUsedAt = base.Add(time.Hour)
	ad.RevokedAt = base.Add(2 * time.Hour)
	// Created out of order: the listing is by creation time.
	for _, k := range []store.Key{gw, bare, ad} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatalf("CreateKey %s: %v", k.ID, err)
		}
	}
	got := listKeys(t, s)
	want := []store.Key{storedKey(ad), storedKey(gw), storedKey(bare)}
	if len(got) != len(want) {
		t.Fatalf("ListKeys returned %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if d := keyDiff(got[i], want[i]); d != "" {
			t.Errorf("key %d (%s): %s", i, want[i].ID, d)
		}
	}
	if got[0].Active() || !got[1].Active() {
		t.Errorf("Active: revoked key %v, active key %v", got[0].Active(), got[1].Active())
	}
}

func testInvalidKey(t *testing.T, s KeyStore) {
	ctx := context.Background()
	for name, mutate := range map[string]func(k *store.Key){
		"no id":              func(k *store.Key) { k.ID = "" },
		"short hash":         func(k *store.Key) { k.Hash = k.Hash[:16] },
		"unknown kind":       func(k *store.Key) { k.Kind = "root" },
		"gateway with role":  func(k *store.Key) { k.Role = store.RoleAdmin },
		"negative rate":      func(k *store.Key) { k.RateLimit = -1 },
		"burst without rate": func(k *store.Key) { k.RateLimit = 0 },
		"empty model name":   func(k *store.Key) { k.AllowedModels = []string{"gpt-4o", ""} },
		"admin without role": func(k *store.Key) { *k = adminKey(1, "") },
		"admin unknown role": func(k *store.Key) { *k = adminKey(1, "owner") },
		"admin with client":  func(k *store.Key) { *k = adminKey(1, store.RoleAdmin); k.ClientID = "x" },
		"admin with rate":    func(k *store.Key) { *k = adminKey(1, store.RoleAdmin); k.RateLimit = 1 },
	} {
		k := gatewayKey(1)
		mutate(&k)
		if err := s.CreateKey(ctx, k); err == nil {
			t.Errorf("%s: CreateKey succeeded", name)
		}
	}
	if keys := listKeys(t, s); len(keys) != 0 {
		t.Errorf("invalid keys were stored: %d", len(keys))
	}
}

func testKeyConflict(t *testing.T, s KeyStore) {
	ctx := context.Background()
	k := gatewayKey(1)
	if err := s.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	sameID := gatewayKey(2)
	sameID.ID = k.ID
	sameHash := gatewayKey(3)
	sameHash.Hash = bytes.Clone(k.Hash)
	for name, dup := range map[string]store.Key{"same id": sameID, "same hash": sameHash} {
		if err := s.CreateKey(ctx, dup); !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: CreateKey = %v, want ErrConflict", name, err)
		}
	}
	if keys := listKeys(t, s); len(keys) != 1 {
		t.Errorf("%d keys stored, want 1", len(keys))
	}
}

func testRevoke(t *testing.T, s KeyStore) {
	ctx := context.Background()
	a, b := gatewayKey(1), adminKey(2, store.RoleAdmin)
	for _, k := range []store.Key{a, b} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	first := base.Add(time.Hour + 7*time.Nanosecond)
	if err := s.RevokeKey(ctx, a.ID, first); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if err := s.RevokeKey(ctx, a.ID, first.Add(time.Hour)); err != nil {
		t.Fatalf("second RevokeKey: %v", err)
	}
	if err := s.RevokeKey(ctx, "key_nope", first); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeKey unknown = %v, want ErrNotFound", err)
	}
	keys := listKeys(t, s)
	if len(keys) != 2 {
		t.Fatalf("%d keys, want 2", len(keys))
	}
	if want := first.Truncate(time.Microsecond); !keys[0].RevokedAt.Equal(want) {
		t.Errorf("RevokedAt = %v, want the first revocation %v", keys[0].RevokedAt, want)
	}
	if !keys[1].Active() {
		t.Errorf("revoking %s also revoked %s", a.ID, b.ID)
	}
}

func testTouch(t *testing.T, s KeyStore) {
	ctx := context.Background()
	a, b := gatewayKey(1), adminKey(2, store.RoleViewer)
	for _, k := range []store.Key{a, b} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	t1, t2 := base.Add(time.Hour).Truncate(time.Microsecond), base.Add(2*time.Hour).Truncate(time.Microsecond)
	if err := s.TouchKeys(ctx, map[string]time.Time{a.ID: t2, b.ID: t1, "key_gone": t1}); err != nil {
		t.Fatalf("TouchKeys: %v", err)
	}
	// An older time (a flush from a second gateway that saw an earlier use) keeps t2.
	if err := s.TouchKeys(ctx, map[string]time.Time{a.ID: t1}); err != nil {
		t.Fatalf("TouchKeys: %v", err)
	}
	if err := s.TouchKeys(ctx, nil); err != nil {
		t.Fatalf("TouchKeys(nil): %v", err)
	}
	keys := listKeys(t, s)
	if len(keys) != 2 || !keys[0].LastUsedAt.Equal(t2) || !keys[1].LastUsedAt.Equal(t1) {
		t.Errorf("LastUsedAt = %v, want [%v %v]", lastUsed(keys), t2, t1)
	}
}

func lastUsed(keys []store.Key) []time.Time {
	var out []time.Time
	for _, k := range keys {
		out = append(out, k.LastUsedAt)
	}
	return out
}

func listAudit(t *testing.T, s KeyStore, f store.AuditFilter) []store.AuditEntry {
	t.Helper()
	es, err := s.ListAudit(context.Background(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return es
}

func testAuditRoundTrip(t *testing.T, s KeyStore) {
	ctx := context.Background()
	if es := listAudit(t, s, store.AuditFilter{}); len(es) != 0 {
		t.Fatalf("new store lists %d audit entries", len(es))
	}
	e1 := store.AuditEntry{ID: 999, At: base.Add(5 * time.Nanosecond), Actor: "key_ad01", ActorName: "alice — 管理",
		Action: store.AuditReadPayload, Target: "01JX0000000000000000000001", Detail: "via /api", Remote: "192.0.2.1:5000"}
	e2 := store.AuditEntry{At: base.Add(time.Second), Actor: "cli", Action: store.AuditCreateKey}
	for _, e := range []store.AuditEntry{e1, e2} {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	got := listAudit(t, s, store.AuditFilter{})
	if len(got) != 2 {
		t.Fatalf("ListAudit returned %d entries, want 2", len(got))
	}
	if got[0].ID <= got[1].ID || got[1].ID <= 0 {
		t.Errorf("IDs %d, %d: want positive, assigned by the store and newest first", got[0].ID, got[1].ID)
	}
	for i, want := range []store.AuditEntry{e2, e1} {
		g := got[i]
		if !g.At.Equal(want.At.Truncate(time.Microsecond)) || g.At.Location() != time.UTC {
			t.Errorf("entry %d At %v, want %v UTC", i, g.At, want.At.Truncate(time.Microsecond))
		}
		g.ID, g.At, want.ID, want.At = 0, time.Time{}, 0, time.Time{}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("entry %d:\ngot  %+v\nwant %+v", i, g, want)
		}
	}
}

func testAuditFilters(t *testing.T, s KeyStore) {
	ctx := context.Background()
	entries := []store.AuditEntry{
		{At: base, Actor: "key_a", Action: store.AuditReadPayload, Target: "call1"},
		{At: base.Add(time.Minute), Actor: "key_a", Action: store.AuditExport, Target: "ds1"},
		{At: base.Add(2 * time.Minute), Actor: "key_b", Action: store.AuditReadPayload, Target: "call1"},
		{At: base.Add(3 * time.Minute), Actor: "cli", Action: store.AuditRevokeKey, Target: "key_a"},
	}
	for _, e := range entries {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	all := listAudit(t, s, store.AuditFilter{})
	for _, tt := range []struct {
		name string
		f    store.AuditFilter
		want []int // indexes into entries, newest first
	}{
		{"actor", store.AuditFilter{Actor: "key_a"}, []int{1, 0}},
		{"action", store.AuditFilter{Action: store.AuditReadPayload}, []int{2, 0}},
		{"target", store.AuditFilter{Target: "call1"}, []int{2, 0}},
		{"since", store.AuditFilter{Since: base.Add(2 * time.Minute)}, []int{3, 2}},
		{"until", store.AuditFilter{Until: base.Add(time.Minute)}, []int{0}},
		{"before id", store.AuditFilter{BeforeID: all[1].ID}, []int{1, 0}},
		{"combined", store.AuditFilter{Actor: "key_a", Action: store.AuditReadPayload}, []int{0}},
		{"none", store.AuditFilter{Actor: "nobody"}, nil},
	} {
		got := listAudit(t, s, tt.f)
		var targets, want []string
		for _, e := range got {
			targets = append(targets, e.Actor+"/"+string(e.Action))
		}
		for _, i := range tt.want {
			want = append(want, entries[i].Actor+"/"+string(entries[i].Action))
		}
		if !reflect.DeepEqual(targets, want) {
			t.Errorf("%s: got %v, want %v", tt.name, targets, want)
		}
	}
}

func testAuditLimit(t *testing.T, s KeyStore) {
	ctx := context.Background()
	for i := range 105 {
		if err := s.AppendAudit(ctx, store.AuditEntry{At: base.Add(time.Duration(i) * time.Second),
			Actor: "cli", Action: store.AuditCreateKey, Target: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(listAudit(t, s, store.AuditFilter{})); n != 100 {
		t.Errorf("default limit returned %d, want 100", n)
	}
	got := listAudit(t, s, store.AuditFilter{Limit: 3})
	if len(got) != 3 || got[0].Target != "104" {
		t.Errorf("Limit 3 returned %d entries starting at %+v, want 3 starting at the newest", len(got), got)
	}
}

func testAuditRequired(t *testing.T, s KeyStore) {
	ctx := context.Background()
	for name, e := range map[string]store.AuditEntry{
		"no actor":  {At: base, Action: store.AuditExport},
		"no action": {At: base, Actor: "cli"},
		"no time":   {Actor: "cli", Action: store.AuditExport},
	} {
		if err := s.AppendAudit(ctx, e); err == nil {
			t.Errorf("%s: AppendAudit succeeded", name)
		}
	}
	if es := listAudit(t, s, store.AuditFilter{}); len(es) != 0 {
		t.Errorf("%d incomplete entries stored", len(es))
	}
}

func testAuditConcurrent(t *testing.T, s KeyStore) {
	ctx := context.Background()
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				errs <- s.AppendAudit(ctx, store.AuditEntry{At: base, Actor: fmt.Sprint("w", w),
					Action: store.AuditReadPayload, Target: fmt.Sprint(i)})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	got := listAudit(t, s, store.AuditFilter{Limit: writers * each * 2})
	seen := map[int64]bool{}
	for _, e := range got {
		seen[e.ID] = true
	}
	if len(got) != writers*each || len(seen) != len(got) {
		t.Errorf("%d entries with %d distinct ids, want %d", len(got), len(seen), writers*each)
	}
}
