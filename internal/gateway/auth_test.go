package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/store"
)

// memKeys is a KeyLister over a slice.
type memKeys struct {
	mu   sync.Mutex
	keys []store.Key
}

func (m *memKeys) ListKeys(context.Context) ([]store.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.Key(nil), m.keys...), nil
}

func (m *memKeys) add(t *testing.T, k store.Key) string {
	t.Helper()
	k, secret, err := auth.NewKey(k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.keys = append(m.keys, k)
	m.mu.Unlock()
	return secret
}

func (m *memKeys) revokeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		m.keys[i].RevokedAt = time.Now()
	}
}

func TestGatewayKeys(t *testing.T) {
	up := newFakeUpstream(t)
	cfg := testConfig(up.URL)
	cfg.Models = append(cfg.Models, cfg.Models[0])
	cfg.Models[1].Name = "small"
	src := &memKeys{}
	agent := src.add(t, store.Key{Kind: store.KeyGateway, Name: "triage-agent", AllowedModels: []string{"gpt-4o"}})
	limited := src.add(t, store.Key{Kind: store.KeyGateway, Name: "batch", RateLimit: 0.001, Burst: 1})
	admin := src.add(t, store.Key{Kind: store.KeyAdmin, Name: "ops", Role: store.RoleAdmin})
	bigOnly := src.add(t, store.Key{Kind: store.KeyGateway, Name: "big-only", AllowedModels: []string{"big"}})
	keys := auth.NewKeys(src, auth.Options{})
	if err := keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	cat, err := backend.NewCatalog(cfg, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	rec := &memRecorder{}
	gw, err := New(Options{Catalog: cat, Recorder: rec, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	do := func(method, path, key, body string) (*http.Response, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	chat := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	}
	cases := []struct {
		name, method, path, key, body string
		status                        int
		errType, code                 string
		recorded                      bool
	}{
		{"no key", "POST", "/v1/chat/completions", "", chat("gpt-4o"), 401, "authentication_error", "", false},
		{"unknown key", "POST", "/v1/chat/completions", "dsg_" + strings.Repeat("A", 43), chat("gpt-4o"), 401, "authentication_error", "invalid_api_key", false},
		{"admin key on the gateway", "POST", "/v1/chat/completions", admin, chat("gpt-4o"), 401, "authentication_error", "invalid_api_key", false},
		{"allowed model", "POST", "/v1/chat/completions", agent, chat("gpt-4o"), 200, "", "", true},
		// Allowed models are names as clients ask for them; allowing a configured model's
		// own name allows all its aliases, but allowing an alias allows only the alias.
		{"alias allowed, model name not", "POST", "/v1/chat/completions", agent, chat("big"), 403, "permission_error", "model_not_allowed", true},
		{"model name allowed, so its alias too", "POST", "/v1/chat/completions", bigOnly, chat("gpt-4o"), 200, "", "", true},
		{"model not allowed", "POST", "/v1/chat/completions", agent, chat("small"), 403, "permission_error", "model_not_allowed", true},
		{"rate limit, first", "POST", "/v1/chat/completions", limited, chat("small"), 200, "", "", true},
		{"rate limit, second", "POST", "/v1/chat/completions", limited, chat("small"), 429, "rate_limit_error", "rate_limit_exceeded", false},
		{"embeddings without a key", "POST", "/v1/embeddings", "", `{"model":"gpt-4o","input":"x"}`, 401, "authentication_error", "", false},
		{"embeddings, model not allowed", "POST", "/v1/embeddings", agent, `{"model":"small","input":"x"}`, 403, "permission_error", "model_not_allowed", false},
		{"models without a key", "GET", "/v1/models", "", "", 401, "authentication_error", "", false},
	}
	for _, tc := range cases {
		before := len(rec.all())
		resp, body := do(tc.method, tc.path, tc.key, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.errType != "" {
			var e struct {
				Error struct{ Type, Code string } `json:"error"`
			}
			_ = json.Unmarshal([]byte(body), &e)
			if e.Error.Type != tc.errType || (tc.code != "" && e.Error.Code != tc.code) {
				t.Errorf("%s: error %+v", tc.name, e.Error)
			}
		}
		if tc.status == 401 && resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s: no WWW-Authenticate challenge", tc.name)
		}
		if tc.status == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tc.name)
		}
		if strings.Contains(body, agent) || strings.Contains(body, admin) {
			t.Errorf("%s: a key is echoed in the answer", tc.name)
		}
		if tc.path != "/v1/chat/completions" {
			continue
		}
		calls := waitCalls(t, rec, before+map[bool]int{true: 1}[tc.recorded])
		if tc.recorded {
			c := calls[len(calls)-1]
			want := map[string]string{agent: "triage-agent", limited: "batch", bigOnly: "big-only"}[tc.key]
			if c.ClientID != want || c.Status != tc.status {
				t.Errorf("%s: recorded client %q status %d", tc.name, c.ClientID, c.Status)
			}
		}
	}

	// /v1/models shows only what the key may use.
	_, body := do("GET", "/v1/models", agent, "")
	if !strings.Contains(body, `"gpt-4o"`) || strings.Contains(body, `"big"`) || strings.Contains(body, `"small"`) {
		t.Errorf("models for a key allowed gpt-4o: %s", body)
	}

	// A revoked key stops working at the next refresh.
	src.revokeAll()
	if err := keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do("POST", "/v1/chat/completions", agent, chat("gpt-4o")); resp.StatusCode != 401 {
		t.Errorf("revoked key: status %d", resp.StatusCode)
	}
	if v := counterValue(t, gw, "downshift_auth_failures_total"); v < 6 {
		t.Errorf("downshift_auth_failures_total = %v", v)
	}
}
