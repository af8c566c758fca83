package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// KeyLister is where Keys loads keys from; store.KeyStore implementations are one.
// When it also implements store.KeyUsage, Keys writes back when each key was last used.
type KeyLister interface {
	ListKeys(ctx context.Context) ([]store.Key, error)
}

// Client is the agent behind a valid gateway key. Its fields must not be changed.
type Client struct {
	KeyID    string // the key's id
	Name     string // the key's name
	ClientID string // recorded on the client's calls

	models []string // allowed models; empty: any
	lim    *limiter // nil: no rate limit
	use    usage
}

// Allows reports whether the client may ask for model (the name in its request,
// before aliases are resolved).
func (c *Client) Allows(model string) bool {
	return len(c.models) == 0 || slices.Contains(c.models, model)
}

// Principal is the person or tool behind a valid admin key. Its fields must not be
// changed.
type Principal struct {
	KeyID string
	Name  string
	Role  store.Role

	use usage
}

// Can reports whether the principal holds role: an admin can do what a viewer can.
func (p *Principal) Can(role store.Role) bool {
	switch p.Role {
	case store.RoleAdmin:
		return role == store.RoleAdmin || role == store.RoleViewer
	case store.RoleViewer:
		return role == store.RoleViewer
	}
	return false
}

// usage remembers when a key was last used, to a second, without making every request
// write to memory that every core shares.
type usage struct {
	last    atomic.Int64 // nanoseconds on Keys' clock; 0: not since start
	flushed int64        // last value written to the store; guarded by Keys.mu
}

func (u *usage) touch(now int64) {
	if last := u.last.Load(); last == 0 || now-last >= int64(time.Second) {
		u.last.Store(max(now, 1))
	}
}

// Options configure Keys. The zero value is useful.
type Options struct {
	// Logger receives refresh failures; never a secret. nil: discard.
	Logger *slog.Logger
	// Now is the clock for rate limits and last use. nil: time.Now.
	Now func() time.Time
}

// Keys holds the active keys, by hash, as a snapshot that Refresh replaces
// atomically: requests never wait for the store, and a key created or revoked in the
// store takes effect at the next Refresh. The zero value is not usable; use NewKeys.
// Until the first Refresh no key is valid.
type Keys struct {
	src   KeyLister
	log   *slog.Logger
	now   func() time.Time
	epoch time.Time

	snap atomic.Pointer[snapshot]
	mu   sync.Mutex // serialises Refresh and Flush
}

type snapshot struct {
	gateway map[[sha256.Size]byte]*Client
	admin   map[[sha256.Size]byte]*Principal
}

// NewKeys returns Keys that load from src. Call Refresh before serving.
func NewKeys(src KeyLister, o Options) *Keys {
	k := &Keys{src: src, log: o.Logger, now: o.Now}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if k.now == nil {
		k.now = time.Now
	}
	k.epoch = k.now()
	k.snap.Store(&snapshot{})
	return k
}

// nanos is the time on Keys' clock: monotonic nanoseconds since NewKeys.
func (k *Keys) nanos() int64 { return int64(k.now().Sub(k.epoch)) }

// Gateway returns the client whose gateway key token is. The error is ErrMissingKey
// for an empty token; ErrInvalidKey for an unknown, revoked or malformed key or an admin
// key; or a *RateLimitError when the key is over its rate, in which case the client is
// returned too, for the caller's logs and metrics.
func (k *Keys) Gateway(token string) (*Client, error) {
	if token == "" {
		return nil, ErrMissingKey
	}
	h, ok := hashToken(token)
	if !ok {
		return nil, ErrInvalidKey
	}
	c := k.snap.Load().gateway[h]
	if c == nil {
		return nil, ErrInvalidKey
	}
	c.use.touch(k.nanos())
	if c.lim != nil {
		if wait, ok := c.lim.take(k.nanos); !ok {
			return c, &RateLimitError{RetryAfter: wait}
		}
	}
	return c, nil
}

// Admin returns the principal whose admin key token is. The error is ErrMissingKey for
// an empty token, ErrGatewayKey for a valid gateway key, and ErrInvalidKey otherwise.
// Whether the principal's role suffices is the caller's check (Principal.Can).
func (k *Keys) Admin(token string) (*Principal, error) {
	if token == "" {
		return nil, ErrMissingKey
	}
	h, ok := hashToken(token)
	if !ok {
		return nil, ErrInvalidKey
	}
	s := k.snap.Load()
	if p := s.admin[h]; p != nil {
		p.use.touch(k.nanos())
		return p, nil
	}
	if s.gateway[h] != nil {
		return nil, ErrGatewayKey
	}
	return nil, ErrInvalidKey
}

// Counts returns how many active gateway and admin keys the snapshot holds, so that a
// server can warn when agents or administrators could not get in.
func (k *Keys) Counts() (gateway, admin int) {
	s := k.snap.Load()
	return len(s.gateway), len(s.admin)
}

// Refresh loads the keys from the store and swaps in a new snapshot of the active
// ones. A client whose key is unchanged keeps its rate-limit state. Then it writes
// back when keys were last used (see Flush). On a listing error the old snapshot stays.
func (k *Keys) Refresh(ctx context.Context) error {
	keys, err := k.src.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("auth: load keys: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.snap.Load()
	oldClients := make(map[string]*Client, len(old.gateway))
	for _, c := range old.gateway {
		oldClients[c.KeyID] = c
	}
	oldPrincipals := make(map[string]*Principal, len(old.admin))
	for _, p := range old.admin {
		oldPrincipals[p.KeyID] = p
	}
	next := &snapshot{
		gateway: make(map[[sha256.Size]byte]*Client),
		admin:   make(map[[sha256.Size]byte]*Principal),
	}
	for i := range keys {
		key := &keys[i]
		if !key.Active() || len(key.Hash) != sha256.Size {
			continue
		}
		h := [sha256.Size]byte(key.Hash)
		switch key.Kind {
		case store.KeyGateway:
			c := oldClients[key.ID]
			if c == nil || !c.sameAs(key) {
				c = newClient(key)
			}
			next.gateway[h] = c
		case store.KeyAdmin:
			p := oldPrincipals[key.ID]
			if p == nil || p.Name != key.Name || p.Role != key.Role {
				p = &Principal{KeyID: key.ID, Name: key.Name, Role: key.Role}
			}
			next.admin[h] = p
		}
	}
	k.snap.Store(next)
	// Use seen on keys that this refresh dropped (revoked) is written too.
	return k.flush(ctx, old, next)
}

func newClient(key *store.Key) *Client {
	return &Client{
		KeyID: key.ID, Name: key.Name, ClientID: key.ClientID,
		models: slices.Clone(key.AllowedModels),
		lim:    newLimiter(key.RateLimit, key.Burst),
	}
}

// sameAs reports whether c was built from a key equal to key in every field it uses.
func (c *Client) sameAs(key *store.Key) bool {
	if c.Name != key.Name || c.ClientID != key.ClientID || !slices.Equal(c.models, key.AllowedModels) {
		return false
	}
	want := newLimiter(key.RateLimit, key.Burst)
	if c.lim == nil || want == nil {
		return c.lim == nil && want == nil
	}
	return c.lim.interval == want.interval && c.lim.tolerance == want.tolerance
}

// Flush writes back when keys were last used, if the store keeps it (store.KeyUsage).
// Refresh does this too; call Flush once more before closing the store.
func (k *Keys) Flush(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.flush(ctx, k.snap.Load())
}

// flush writes the use not yet written of every key in the snapshots. k.mu is held.
func (k *Keys) flush(ctx context.Context, snaps ...*snapshot) error {
	ku, ok := k.src.(store.KeyUsage)
	if !ok {
		return nil
	}
	used := map[string]time.Time{}
	pending := map[*usage]int64{} // the value written, which a request may pass meanwhile
	note := func(id string, u *usage) {
		if last := u.last.Load(); last > u.flushed {
			used[id] = k.epoch.Add(time.Duration(last))
			pending[u] = last
		}
	}
	for _, s := range snaps {
		for _, c := range s.gateway {
			note(c.KeyID, &c.use)
		}
		for _, p := range s.admin {
			note(p.KeyID, &p.use)
		}
	}
	if len(used) == 0 {
		return nil
	}
	if err := ku.TouchKeys(ctx, used); err != nil {
		return fmt.Errorf("auth: record key use: %w", err)
	}
	for u, last := range pending {
		u.flushed = last
	}
	return nil
}

// Run refreshes every interval until ctx ends. A failed refresh is logged and the
// keys loaded before stay in force, so a store that is briefly unavailable does not
// lock agents out.
func (k *Keys) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.Refresh(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("refreshing keys failed; the keys loaded before stay in force", "err", err)
		}
	}
}
