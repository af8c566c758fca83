package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return t0.Add(time.Duration(c.ns.Load())) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// lister is an in-memory key store that remembers what TouchKeys wrote.
type lister struct {
	mu      sync.Mutex
	keys    []store.Key
	err     error
	lists   int
	touched []map[string]time.Time
}

func (l *lister) ListKeys(context.Context) ([]store.Key, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists++
	if l.err != nil {
		return nil, l.err
	}
	return slices.Clone(l.keys), nil
}

func (l *lister) TouchKeys(_ context.Context, used map[string]time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.touched = append(l.touched, used)
	return nil
}

func (l *lister) add(t testing.TB, k store.Key) string {
	t.Helper()
	k, secret, err := NewKey(k, t0)
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, k)
	return secret
}

func (l *lister) revoke(secret string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.keys {
		if string(l.keys[i].Hash) == string(Hash(secret)) {
			l.keys[i].RevokedAt = t0
		}
	}
}

func refreshed(t *testing.T, l *lister, c *clock) *Keys {
	t.Helper()
	k := NewKeys(l, Options{Now: c.now})
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	return k
}

func TestNewSecretShape(t *testing.T) {
	shape := regexp.MustCompile(`^ds[ga]_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for _, kind := range []store.KeyKind{store.KeyGateway, store.KeyAdmin, store.KeyGateway} {
		secret, hash := NewSecret(kind)
		if !shape.MatchString(secret) || len(secret) != secretLen {
			t.Errorf("secret %q does not have the documented shape", secret)
		}
		want := GatewayPrefix
		if kind == store.KeyAdmin {
			want = AdminPrefix
		}
		if !strings.HasPrefix(secret, want) {
			t.Errorf("%s secret %q lacks prefix %s", kind, secret, want)
		}
		sum := sha256.Sum256([]byte(secret))
		if string(hash) != string(sum[:]) || string(Hash(secret)) != string(sum[:]) {
			t.Errorf("hash of %q is not its SHA-256", secret)
		}
		if seen[secret] {
			t.Errorf("secret %q made twice", secret)
		}
		seen[secret] = true
	}
}

func TestNewKey(t *testing.T) {
	tests := []struct {
		name       string
		in         store.Key
		wantClient string // "" with wantErr, "=id" for the key's id
		wantErr    bool
	}{
		{"gateway with client", store.Key{Kind: store.KeyGateway, Name: "n", ClientID: "billing"}, "billing", false},
		{"gateway client defaults to name", store.Key{Kind: store.KeyGateway, Name: " billing "}, "billing", false},
		{"gateway client defaults to id", store.Key{Kind: store.KeyGateway}, "=id", false},
		{"admin", store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "alice"}, "", false},
		{"admin without role", store.Key{Kind: store.KeyAdmin}, "", true},
		{"admin with client", store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, ClientID: "x"}, "", true},
		{"unknown kind", store.Key{Kind: "root"}, "", true},
		{"gateway with role", store.Key{Kind: store.KeyGateway, Role: store.RoleAdmin}, "", true},
	}
	ids := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.RevokedAt, in.LastUsedAt, in.ID = t0, t0, "chosen-by-caller"
			k, secret, err := NewKey(in, t0.In(time.FixedZone("x", 3600)))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewKey succeeded: %+v", k)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewKey: %v", err)
			}
			if !regexp.MustCompile(`^key_[a-z2-7]{12}$`).MatchString(k.ID) || ids[k.ID] {
				t.Errorf("ID %q: want a new key_ + 12 base32 characters", k.ID)
			}
			ids[k.ID] = true
			if string(k.Hash) != string(Hash(secret)) {
				t.Error("Hash is not the hash of the secret")
			}
			if !k.CreatedAt.Equal(t0) || k.CreatedAt.Location() != time.UTC || !k.Active() || !k.LastUsedAt.IsZero() {
				t.Errorf("times: created %v revoked %v used %v", k.CreatedAt, k.RevokedAt, k.LastUsedAt)
			}
			want := tt.wantClient
			if want == "=id" {
				want = k.ID
			}
			if k.ClientID != want {
				t.Errorf("ClientID = %q, want %q", k.ClientID, want)
			}
		})
	}
}

func TestGatewayAndAdminKeys(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway, Name: "agent", ClientID: "billing"})
	revokedGW := l.add(t, store.Key{Kind: store.KeyGateway, Name: "old"})
	admin := l.add(t, store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "alice"})
	viewer := l.add(t, store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "bob"})
	revokedAdmin := l.add(t, store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "eve"})
	l.revoke(revokedGW)
	l.revoke(revokedAdmin)
	unknown, _ := NewSecret(store.KeyGateway)
	k := refreshed(t, &l, &clock{})

	tests := []struct {
		name       string
		token      string
		gatewayErr error  // nil: valid
		client     string // ClientID on the gateway
		adminErr   error
		role       store.Role
	}{
		{"no key", "", ErrMissingKey, "", ErrMissingKey, ""},
		{"malformed", "sk-proj-1234", ErrInvalidKey, "", ErrInvalidKey, ""},
		{"unknown", unknown, ErrInvalidKey, "", ErrInvalidKey, ""},
		{"one character off", gw[:len(gw)-1] + "?", ErrInvalidKey, "", ErrInvalidKey, ""},
		{"gateway key", gw, nil, "billing", ErrGatewayKey, ""},
		{"revoked gateway key", revokedGW, ErrInvalidKey, "", ErrInvalidKey, ""},
		{"admin key", admin, ErrInvalidKey, "", nil, store.RoleAdmin},
		{"viewer key", viewer, ErrInvalidKey, "", nil, store.RoleViewer},
		{"revoked admin key", revokedAdmin, ErrInvalidKey, "", ErrInvalidKey, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := k.Gateway(tt.token)
			if !errors.Is(err, tt.gatewayErr) || (err == nil) != (tt.gatewayErr == nil) {
				t.Errorf("Gateway err = %v, want %v", err, tt.gatewayErr)
			}
			if err == nil && c.ClientID != tt.client {
				t.Errorf("Gateway ClientID = %q, want %q", c.ClientID, tt.client)
			}
			if err != nil && c != nil {
				t.Errorf("Gateway returned client %q with error %v", c.ClientID, err)
			}
			p, err := k.Admin(tt.token)
			if !errors.Is(err, tt.adminErr) || (err == nil) != (tt.adminErr == nil) {
				t.Errorf("Admin err = %v, want %v", err, tt.adminErr)
			}
			if err == nil && p.Role != tt.role {
				t.Errorf("Admin role = %q, want %q", p.Role, tt.role)
			}
		})
	}
	if g, a := k.Counts(); g != 1 || a != 2 {
		t.Errorf("Counts = %d gateway, %d admin; want 1, 2", g, a)
	}
}

func TestNoKeyIsValidBeforeRefresh(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway})
	k := NewKeys(&l, Options{})
	if _, err := k.Gateway(gw); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Gateway before Refresh: %v, want ErrInvalidKey", err)
	}
}

func TestPrincipalCan(t *testing.T) {
	for _, tt := range []struct {
		role, asked store.Role
		want        bool
	}{
		{store.RoleAdmin, store.RoleAdmin, true},
		{store.RoleAdmin, store.RoleViewer, true},
		{store.RoleViewer, store.RoleViewer, true},
		{store.RoleViewer, store.RoleAdmin, false},
		{"owner", store.RoleViewer, false},
		{store.RoleAdmin, "owner", false},
	} {
		if got := (&Principal{Role: tt.role}).Can(tt.asked); got != tt.want {
			t.Errorf("%s.Can(%s) = %v, want %v", tt.role, tt.asked, got, tt.want)
		}
	}
}

func TestClientAllows(t *testing.T) {
	var l lister
	anyModel := l.add(t, store.Key{Kind: store.KeyGateway})
	some := l.add(t, store.Key{Kind: store.KeyGateway, AllowedModels: []string{"gpt-4o", "gpt-4o-mini"}})
	k := refreshed(t, &l, &clock{})
	ca, _ := k.Gateway(anyModel)
	cs, _ := k.Gateway(some)
	for _, tt := range []struct {
		c     *Client
		model string
		want  bool
	}{
		{ca, "anything", true},
		{cs, "gpt-4o", true},
		{cs, "gpt-4o-mini", true},
		{cs, "GPT-4O", false},
		{cs, "gpt-4", false},
		{cs, "", false},
	} {
		if got := tt.c.Allows(tt.model); got != tt.want {
			t.Errorf("Allows(%q) = %v, want %v", tt.model, got, tt.want)
		}
	}
}

func TestRateLimitBurstThenSustainedRate(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway, RateLimit: 2, Burst: 3})
	var c clock
	k := refreshed(t, &l, &c)
	for i := range 3 {
		if _, err := k.Gateway(gw); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	cl, err := k.Gateway(gw)
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("request past the burst: %v, want a RateLimitError", err)
	}
	if cl == nil || cl.KeyID == "" {
		t.Error("a rate-limited request does not say whose key it was")
	}
	if rl.RetryAfter != 500*time.Millisecond || rl.RetryAfterSeconds() != 1 {
		t.Errorf("RetryAfter = %v (%ds), want 500ms (1s)", rl.RetryAfter, rl.RetryAfterSeconds())
	}
	c.advance(499 * time.Millisecond)
	if _, err := k.Gateway(gw); !errors.Is(err, ErrRateLimited) {
		t.Errorf("1ms before a token is free: %v, want ErrRateLimited", err)
	}
	c.advance(time.Millisecond)
	if _, err := k.Gateway(gw); err != nil {
		t.Errorf("when a token is free: %v", err)
	}
	// After a long pause the bucket holds the burst again, not more.
	c.advance(time.Hour)
	allowed := 0
	for range 10 {
		if _, err := k.Gateway(gw); err == nil {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("after an idle hour %d requests passed at once, want the burst of 3", allowed)
	}
}

func TestRateLimitDefaultBurst(t *testing.T) {
	for _, tt := range []struct {
		rate float64
		want int
	}{{0.5, 1}, {1, 1}, {2.5, 3}, {10, 10}} {
		var l lister
		gw := l.add(t, store.Key{Kind: store.KeyGateway, RateLimit: tt.rate})
		k := refreshed(t, &l, &clock{})
		allowed := 0
		for range 20 {
			if _, err := k.Gateway(gw); err == nil {
				allowed++
			}
		}
		if allowed != tt.want {
			t.Errorf("rate %v: %d requests passed at once, want %d", tt.rate, allowed, tt.want)
		}
	}
}

func TestRateLimitHoldsUnderConcurrency(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway, RateLimit: 1, Burst: 50})
	other := l.add(t, store.Key{Kind: store.KeyGateway, RateLimit: 1, Burst: 50})
	k := refreshed(t, &l, &clock{})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, err := k.Gateway(gw); err == nil {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 50 {
		t.Errorf("%d of 800 concurrent requests passed, want exactly the burst of 50", n)
	}
	if _, err := k.Gateway(other); err != nil {
		t.Errorf("another key shares the first key's bucket: %v", err)
	}
}

func TestRefreshAppliesRevocationsAndKeepsBuckets(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway, RateLimit: 1, Burst: 1})
	var c clock
	k := refreshed(t, &l, &c)
	if _, err := k.Gateway(gw); err != nil {
		t.Fatal(err)
	}
	// A key created after the snapshot works from the next Refresh on.
	later := l.add(t, store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer})
	if _, err := k.Admin(later); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("new key before Refresh: %v, want ErrInvalidKey", err)
	}
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Admin(later); err != nil {
		t.Errorf("new key after Refresh: %v", err)
	}
	// Refreshing must not hand a rate-limited key a fresh bucket.
	if _, err := k.Gateway(gw); !errors.Is(err, ErrRateLimited) {
		t.Errorf("after Refresh the empty bucket was refilled: %v", err)
	}
	// A store that fails keeps the keys in force.
	l.mu.Lock()
	l.err = errors.New("disk on fire")
	l.mu.Unlock()
	if err := k.Refresh(context.Background()); err == nil {
		t.Error("Refresh hid the store's error")
	}
	c.advance(time.Second)
	if _, err := k.Gateway(gw); err != nil {
		t.Errorf("after a failed Refresh: %v", err)
	}
	l.mu.Lock()
	l.err = nil
	l.mu.Unlock()
	l.revoke(gw)
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Gateway(gw); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("revoked key after Refresh: %v, want ErrInvalidKey", err)
	}
}

func TestRunRefreshesUntilCancelled(t *testing.T) {
	var l lister
	k := NewKeys(&l, Options{})
	gw := l.add(t, store.Key{Kind: store.KeyGateway})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		k.Run(ctx, time.Millisecond)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := k.Gateway(gw); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never loaded the key")
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

func TestLastUseIsWrittenBackOncePerUse(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway})
	admin := l.add(t, store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin})
	l.add(t, store.Key{Kind: store.KeyGateway}) // never used: never written
	var c clock
	k := refreshed(t, &l, &c)
	ids := map[string]string{}
	for _, key := range l.keys {
		ids[string(key.Hash)] = key.ID
	}
	c.advance(3 * time.Second)
	k.Gateway(gw)
	k.Admin(admin)
	c.advance(500 * time.Millisecond)
	k.Gateway(gw) // within the second: not a new use
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{
		ids[string(Hash(gw))]:    t0.Add(3 * time.Second),
		ids[string(Hash(admin))]: t0.Add(3 * time.Second),
	}
	if len(l.touched) != 1 || !sameTimes(l.touched[0], want) {
		t.Fatalf("TouchKeys calls %v, want one with %v", l.touched, want)
	}
	if err := k.Flush(context.Background()); err != nil || len(l.touched) != 1 {
		t.Errorf("Flush without new use wrote %v (err %v)", l.touched[1:], err)
	}
	// Use seen on a key just before its revocation is still written back.
	c.advance(5 * time.Second)
	k.Gateway(gw)
	l.revoke(gw)
	if err := k.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = map[string]time.Time{ids[string(Hash(gw))]: t0.Add(8500 * time.Millisecond)}
	if len(l.touched) != 2 || !sameTimes(l.touched[1], want) {
		t.Errorf("TouchKeys calls %v, want a second with %v", l.touched, want)
	}
}

func sameTimes(a, b map[string]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for id, t := range a {
		if !t.Equal(b[id]) {
			return false
		}
	}
	return true
}

func TestBearerToken(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"none", nil, ""},
		{"bearer", map[string]string{"Authorization": "Bearer dsg_abc"}, "dsg_abc"},
		{"scheme is case-insensitive", map[string]string{"Authorization": "bearer  dsg_abc "}, "dsg_abc"},
		{"other scheme", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, ""},
		{"bearer without token", map[string]string{"Authorization": "Bearer "}, ""},
		{"too short", map[string]string{"Authorization": "Bear"}, ""},
		{"azure api-key", map[string]string{"api-key": "dsg_xyz"}, "dsg_xyz"},
		{"authorization wins", map[string]string{"Authorization": "Bearer dsg_a", "Api-Key": "dsg_b"}, "dsg_a"},
	} {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		for h, v := range tt.headers {
			r.Header.Set(h, v)
		}
		if got := BearerToken(r); got != tt.want {
			t.Errorf("%s: BearerToken = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestGatewayCheckDoesNotAllocate(t *testing.T) {
	var l lister
	gw := l.add(t, store.Key{Kind: store.KeyGateway, AllowedModels: []string{"a", "gpt-4o"}})
	limited := l.add(t, store.Key{Kind: store.KeyGateway, RateLimit: 1e9})
	unknown, _ := NewSecret(store.KeyGateway)
	k := refreshed(t, &l, &clock{})
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	r.Header.Set("Authorization", "Bearer "+gw)
	for name, fn := range map[string]func(){
		"valid":        func() { c, _ := k.Gateway(BearerToken(r)); c.Allows("gpt-4o") },
		"rate limited": func() { k.Gateway(limited) },
		"unknown":      func() { k.Gateway(unknown) },
		"malformed":    func() { k.Gateway("sk-1234") },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations per check, want 0", name, n)
		}
	}
}

func BenchmarkGateway(b *testing.B) {
	var l lister
	keys := map[string]string{
		"plain":        l.add(b, store.Key{Kind: store.KeyGateway}),
		"rate-limited": l.add(b, store.Key{Kind: store.KeyGateway, RateLimit: 1e9, Burst: 1 << 20}),
	}
	for range 1000 { // a snapshot the size of a large deployment
		l.add(b, store.Key{Kind: store.KeyGateway})
	}
	k := NewKeys(&l, Options{})
	if err := k.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	// The floor: the SHA-256 every check pays, which dominates the cost.
	b.Run("sha256-only", func(b *testing.B) {
		for b.Loop() {
			hashToken(keys["plain"])
		}
	})
	for _, name := range []string{"plain", "rate-limited"} {
		token := keys[name]
		r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Gateway(BearerToken(r)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Gateway(BearerToken(r)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestDescribe(t *testing.T) {
	for _, tt := range []struct {
		k    store.Key
		want string
	}{
		{store.Key{Kind: store.KeyAdmin, Role: store.RoleViewer, Name: "bob", Hash: Hash("x")}, `admin key "bob" role=viewer`},
		{store.Key{Kind: store.KeyGateway, Name: "a", ClientID: "billing"}, `gateway key "a" client=billing`},
		{store.Key{Kind: store.KeyGateway, Name: "a", ClientID: "c", AllowedModels: []string{"m1", "m2"}, RateLimit: 2.5, Burst: 5},
			`gateway key "a" client=c models=m1,m2 rate=2.5/s burst=5`},
		{store.Key{Kind: store.KeyGateway, ClientID: "c", RateLimit: 1}, `gateway key "" client=c rate=1/s`},
	} {
		if got := Describe(&tt.k); got != tt.want {
			t.Errorf("Describe = %q, want %q", got, tt.want)
		}
	}
}
