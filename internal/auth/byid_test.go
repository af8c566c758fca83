package auth

import (
	"context"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
)

func TestAdminByIDFollowsTheKeysActiveAndItsRole(t *testing.T) {
	l := &lister{}
	c := &clock{}
	admin := l.add(t, store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "alice"})
	l.add(t, store.Key{Kind: store.KeyGateway, Name: "agent"})
	k := refreshed(t, l, c)

	p, err := k.Admin(admin)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := k.AdminByID(p.KeyID)
	if !ok || got.KeyID != p.KeyID || got.Name != "alice" || got.Role != store.RoleAdmin {
		t.Fatalf("AdminByID(%s) = %+v, %v; want alice, admin", p.KeyID, got, ok)
	}
	var gatewayID string
	for _, key := range l.keys {
		if key.Kind == store.KeyGateway {
			gatewayID = key.ID
		}
	}
	for _, id := range []string{"", "key_unknown", gatewayID} {
		if p, ok := k.AdminByID(id); ok {
			t.Errorf("AdminByID(%q) = %+v; want none", id, p)
		}
	}

	// A role changed in the store shows at the next refresh; a revoked key is gone.
	l.mu.Lock()
	for i := range l.keys {
		if l.keys[i].ID == p.KeyID {
			l.keys[i].Role = store.RoleViewer
		}
	}
	l.mu.Unlock()
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, ok := k.AdminByID(p.KeyID); !ok || got.Role != store.RoleViewer {
		t.Errorf("after the role changed: %+v, %v; want viewer", got, ok)
	}
	l.revoke(admin)
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, ok := k.AdminByID(p.KeyID); ok {
		t.Errorf("after revocation: %+v; want none", got)
	}
}
