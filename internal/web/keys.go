package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// keyJSON is a key as the API shows it: everything but its hash.
type keyJSON struct {
	ID            string        `json:"id"`
	Name          string        `json:"name"`
	Kind          store.KeyKind `json:"kind"`
	Role          store.Role    `json:"role,omitempty"`
	ClientID      string        `json:"client_id,omitempty"`
	AllowedModels []string      `json:"allowed_models,omitempty"`
	RateLimit     float64       `json:"rate_limit,omitempty"`
	Burst         int           `json:"burst,omitempty"`
	Active        bool          `json:"active"`
	CreatedAt     time.Time     `json:"created_at"`
	RevokedAt     *time.Time    `json:"revoked_at,omitempty"`
	LastUsedAt    *time.Time    `json:"last_used_at,omitempty"`
}

func newKeyJSON(k *store.Key) keyJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return keyJSON{
		ID: k.ID, Name: k.Name, Kind: k.Kind, Role: k.Role, ClientID: k.ClientID,
		AllowedModels: k.AllowedModels, RateLimit: k.RateLimit, Burst: k.Burst, Active: k.Active(),
		CreatedAt: k.CreatedAt, RevokedAt: opt(k.RevokedAt), LastUsedAt: opt(k.LastUsedAt),
	}
}

// listKeys answers GET /api/keys: every key, revoked ones included, oldest first.
func (a *API) listKeys(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	keys, err := a.store.ListKeys(r.Context())
	if err != nil {
		return err
	}
	out := struct {
		Keys []keyJSON `json:"keys"`
	}{Keys: make([]keyJSON, 0, len(keys))}
	for i := range keys {
		out.Keys = append(out.Keys, newKeyJSON(&keys[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

// createKeyRequest is the body of POST /api/keys.
type createKeyRequest struct {
	Kind          store.KeyKind `json:"kind"`
	Role          store.Role    `json:"role"`
	Name          string        `json:"name"`
	ClientID      string        `json:"client_id"`
	AllowedModels []string      `json:"allowed_models"`
	RateLimit     float64       `json:"rate_limit"`
	Burst         int           `json:"burst"`
}

// maxKeyRequest caps the body of POST /api/keys.
const maxKeyRequest = 64 << 10

// createKey answers POST /api/keys with the new key and its secret, the one time the
// secret is shown. The key is audited before it can be used: if the entry cannot be
// written, the key is revoked again and the request fails.
func (a *API) createKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req createKeyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxKeyRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("Invalid key request: %v.", err)
	}
	if dec.More() {
		return badRequest("Invalid key request: more than one JSON value.")
	}
	k, secret, err := auth.NewKey(store.Key{
		Kind: req.Kind, Role: req.Role, Name: req.Name, ClientID: req.ClientID,
		AllowedModels: req.AllowedModels, RateLimit: req.RateLimit, Burst: req.Burst,
	}, a.now())
	if err != nil {
		return badRequest("Invalid key request: %v.", err)
	}
	if err := a.store.CreateKey(r.Context(), k); err != nil {
		return err
	}
	if err := a.audit(r, p, store.AuditCreateKey, k.ID, auth.Describe(&k)); err != nil {
		// Context-free: the revocation must happen even if the client has gone.
		if rerr := a.store.RevokeKey(context.WithoutCancel(r.Context()), k.ID, a.now()); rerr != nil {
			a.log.Error("revoking an unaudited key failed", "key", k.ID, "err", rerr)
		}
		return err
	}
	a.refresh(r, "create")
	return writeJSON(w, http.StatusCreated, struct {
		Key    keyJSON `json:"key"`
		Secret string  `json:"secret"`
	}{newKeyJSON(&k), secret})
}

// revokeKey answers DELETE /api/keys/{id}. The key stops working in this process at
// once, and in other processes on the same store at their next refresh.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := r.PathValue("id")
	err := a.store.RevokeKey(r.Context(), id, a.now())
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{status: http.StatusNotFound, typ: openai.TypeNotFound, code: "key_not_found",
			msg: "No key with this id."}
	}
	if err != nil {
		return err
	}
	a.refresh(r, "revoke")
	if err := a.audit(r, p, store.AuditRevokeKey, id, ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// refresh reloads the keys after a change. A failure is logged, not returned: the
// change is stored, and the periodic refresh will apply it.
func (a *API) refresh(r *http.Request, after string) {
	if err := a.keys.Refresh(context.WithoutCancel(r.Context())); err != nil {
		a.log.Warn("reloading keys after a change failed; the periodic refresh will apply it",
			"after", after, "err", err)
	}
}
