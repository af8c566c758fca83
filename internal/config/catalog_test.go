package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPricePerToken(t *testing.T) {
	tests := []struct {
		name            string
		p               Price
		in, out, cached float64
		ok              bool
	}{
		{"nothing set is zero", Price{}, 0, 0, 0, true},
		{"per token", Price{InputPerMTok: 2.5, OutputPerMTok: 10, CachedInputPerMTok: 1.25}, 2.5, 10, 1.25, true},
		{"cached defaults to input", Price{InputPerMTok: 0.2, OutputPerMTok: 0.6}, 0.2, 0.6, 0.2, true},
		// 3.60 $/h at 1000 tok/s: 3.6e6 tokens an hour, so 1 $ per million.
		{"per GPU-hour", Price{GPUHourUSD: 3.6, ThroughputTPS: 1000}, 1, 1, 1, true},
		{"per GPU-hour, 2.40 at 1500", Price{GPUHourUSD: 2.4, ThroughputTPS: 1500}, 2.4e6 / 5.4e6, 2.4e6 / 5.4e6, 2.4e6 / 5.4e6, true},
		{"per GPU-hour without throughput is unknown", Price{GPUHourUSD: 2.4}, 0, 0, 0, false},
		{"throughput alone changes nothing", Price{InputPerMTok: 0.1, OutputPerMTok: 0.3, ThroughputTPS: 900}, 0.1, 0.3, 0.1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, out, cached, ok := tt.p.PerToken()
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
			if !near(in, tt.in) || !near(out, tt.out) || !near(cached, tt.cached) || ok != tt.ok {
				t.Errorf("PerToken() = %v, %v, %v, %v; want %v, %v, %v, %v", in, out, cached, ok,
					tt.in, tt.out, tt.cached, tt.ok)
			}
		})
	}
}

// TestCatalogEntryJSONNamesAreConfigKeys holds the JSON names of what a runtime model
// stores to the configuration file's keys, so that one name means one thing.
func TestCatalogEntryJSONNamesAreConfigKeys(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Model](), reflect.TypeFor[Price](), reflect.TypeFor[Backend]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if jsonName != tagName(f) {
				t.Errorf("%s.%s: json name %q, koanf name %q", typ.Name(), f.Name, jsonName, tagName(f))
			}
		}
	}
}

func TestCatalogEntryRoundTrip(t *testing.T) {
	e := CatalogEntry{
		Model: Model{Name: "qwen", Backend: "qwen", UpstreamName: "Qwen/Qwen2.5-7B-Instruct", Role: RoleCandidate,
			ParamsB: 7.6, ContextTokens: 32768, Licence: "Apache-2.0", MemoryGB: 18,
			Price: Price{GPUHourUSD: 2.4, ThroughputTPS: 1500}},
		Backend: &Backend{Name: "qwen", URL: "http://10.0.0.5:8000/v1", APIKeyEnv: "QWEN_KEY"},
	}
	spec, err := e.Spec()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"upstream_name"`, `"context_tokens"`, `"licence"`, `"memory_gb"`, `"gpu_hour_usd"`,
		`"throughput_tps"`, `"api_key_env":"QWEN_KEY"`} {
		if !strings.Contains(string(spec), key) {
			t.Errorf("spec %s lacks %s", spec, key)
		}
	}
	for _, absent := range []string{`"fallbacks"`, `"headers"`, `"connect_timeout"`, `"cached_input_per_mtok"`} {
		if strings.Contains(string(spec), absent) {
			t.Errorf("spec %s has the unset %s", spec, absent)
		}
	}
	got, err := ParseCatalogEntry(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Errorf("round trip: got %+v, want %+v", got, e)
	}

	for name, bad := range map[string]string{
		"unknown key":       `{"model":{"name":"x","backend":"b","role":"candidate","colour":"red"}}`,
		"unknown price key": `{"model":{"name":"x","price":{"per_hour":1}}}`,
		"not JSON":          `{"model":`,
		"two values":        `{"model":{}} {}`,
		"wrong type":        `{"model":{"name":"x","params_b":"seven"}}`,
	} {
		if _, err := ParseCatalogEntry([]byte(bad)); err == nil {
			t.Errorf("%s: ParseCatalogEntry(%s) succeeded", name, bad)
		}
	}
}

// catalogBase is a loaded configuration with one backend, two models and an alias.
func catalogBase(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.Backends = []Backend{DefaultBackend()}
	c.Backends[0].Name, c.Backends[0].URL = "remote", "https://llm.example.com/v1"
	c.Models = []Model{
		{Name: "big", Backend: "remote", Role: RoleReference, Price: Price{InputPerMTok: 2.5, OutputPerMTok: 10}},
		{Name: "small", Backend: "remote", Role: RoleCandidate},
	}
	c.Aliases = map[string]string{"gpt-4o": "big"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWithCatalogAddsModelsAndTheirBackends(t *testing.T) {
	c := catalogBase(t)
	onRemote := CatalogEntry{Model: Model{Name: "phi", Backend: "remote", Role: RoleCandidate,
		Price: Price{GPUHourUSD: 1.2}}}
	own := CatalogEntry{
		Model:   Model{Name: "qwen", Backend: "qwen", UpstreamName: "Qwen/Qwen2.5-7B-Instruct", Role: RoleCandidate},
		Backend: &Backend{Name: "qwen", URL: "http://10.0.0.5:8000/v1", APIKeyEnv: "QWEN_KEY"},
	}
	got, err := c.WithCatalog([]CatalogEntry{onRemote, own})
	if err != nil {
		t.Fatalf("WithCatalog: %v", err)
	}
	if len(got.Models) != 4 || len(got.Backends) != 2 {
		t.Fatalf("merged %d models and %d backends, want 4 and 2", len(got.Models), len(got.Backends))
	}
	if m, ok := got.Resolve("qwen"); !ok || m.Upstream() != "Qwen/Qwen2.5-7B-Instruct" || m.Backend != "qwen" {
		t.Errorf("Resolve(qwen) = %+v, %v", m, ok)
	}
	if m, ok := got.Resolve("gpt-4o"); !ok || m.Name != "big" {
		t.Errorf("the alias resolves to %+v, %v; want big", m, ok)
	}
	b, ok := got.BackendByName("qwen")
	want := DefaultBackend()
	want.Name, want.URL, want.APIKeyEnv = "qwen", "http://10.0.0.5:8000/v1", "QWEN_KEY"
	if !ok || !reflect.DeepEqual(b, want) {
		t.Errorf("runtime backend = %+v, want %+v (defaults filled in)", b, want)
	}
	if b.ConnectTimeout != 5*time.Second {
		t.Errorf("connect timeout %v", b.ConnectTimeout)
	}
	// c itself is unchanged.
	if len(c.Models) != 2 || len(c.Backends) != 1 {
		t.Errorf("WithCatalog changed its receiver: %d models, %d backends", len(c.Models), len(c.Backends))
	}
	// No entries: the same configuration.
	same, err := c.WithCatalog(nil)
	if err != nil || !reflect.DeepEqual(same, c) {
		t.Errorf("WithCatalog(nil) = %+v, %v; want c", same, err)
	}
}

func TestWithCatalogRefusesBadEntries(t *testing.T) {
	c := catalogBase(t)
	ownBackend := func(name, url string) *Backend { return &Backend{Name: name, URL: url} }
	tests := []struct {
		name  string
		entry CatalogEntry
		want  string
	}{
		{"shadows a configured model",
			CatalogEntry{Model: Model{Name: "big", Backend: "remote", Role: RoleCandidate}},
			`runtime model "big": has the name of a configured model`},
		{"shadows an alias",
			CatalogEntry{Model: Model{Name: "gpt-4o", Backend: "remote", Role: RoleCandidate}},
			`runtime model "gpt-4o": has the name of a configured alias`},
		{"unknown backend",
			CatalogEntry{Model: Model{Name: "m", Backend: "nim", Role: RoleCandidate}},
			`runtime model "m": unknown backend "nim"`},
		{"carried backend has a configured backend's name",
			CatalogEntry{Model: Model{Name: "m", Backend: "remote", Role: RoleCandidate},
				Backend: ownBackend("remote", "http://10.0.0.5:8000/v1")},
			`runtime model "m": carries backend "remote", which has the name of a configured backend`},
		{"names another backend than it carries",
			CatalogEntry{Model: Model{Name: "m", Backend: "x", Role: RoleCandidate}, Backend: ownBackend("m", "http://h/v1")},
			`runtime model "m": names backend "x" but carries backend "m"`},
		{"carried backend has a bad URL",
			CatalogEntry{Model: Model{Name: "m", Backend: "m", Role: RoleCandidate}, Backend: ownBackend("m", "10.0.0.5:8000")},
			`runtime model "m": backend.url: must be an absolute http(s) URL`},
		{"carried backend has credentials in its URL",
			CatalogEntry{Model: Model{Name: "m", Backend: "m", Role: RoleCandidate},
				Backend: ownBackend("m", "https://user:hunter2@h/v1")},
			`runtime model "m": backend.url: must not contain credentials`},
		{"bad role",
			CatalogEntry{Model: Model{Name: "m", Backend: "remote", Role: "judge"}},
			`runtime model "m": role: must be "reference" or "candidate"`},
		{"GPU-hour and per-token prices",
			CatalogEntry{Model: Model{Name: "m", Backend: "remote", Role: RoleCandidate,
				Price: Price{GPUHourUSD: 2, InputPerMTok: 0.1}}},
			`runtime model "m": price.gpu_hour_usd: set gpu_hour_usd or per-token prices`},
		{"negative memory",
			CatalogEntry{Model: Model{Name: "m", Backend: "remote", Role: RoleCandidate, MemoryGB: -1}},
			`runtime model "m": memory_gb: must not be negative`},
		{"no name",
			CatalogEntry{Model: Model{Backend: "remote", Role: RoleCandidate}},
			`runtime model "": name: must be set`},
		{"fallback to an unknown model",
			CatalogEntry{Model: Model{Name: "m", Backend: "remote", Role: RoleCandidate, Fallbacks: []string{"nope"}}},
			`runtime model "m": fallbacks[0]: unknown model "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.WithCatalog([]CatalogEntry{tt.entry})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WithCatalog error = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes a credential: %v", err)
			}
		})
	}

	// Every bad entry is reported at once, and a good one does not hide them.
	good := CatalogEntry{Model: Model{Name: "ok", Backend: "remote", Role: RoleCandidate}}
	_, err := c.WithCatalog([]CatalogEntry{tests[0].entry, good, tests[8].entry})
	if err == nil || !strings.Contains(err.Error(), tests[0].want) || !strings.Contains(err.Error(), tests[8].want) {
		t.Errorf("two bad entries: error %v, want both reported", err)
	}
	// A runtime model may fall back to another runtime model or a configured one.
	_, err = c.WithCatalog([]CatalogEntry{good,
		{Model: Model{Name: "m", Backend: "remote", Role: RoleCandidate, Fallbacks: []string{"ok", "big"}}}})
	if err != nil {
		t.Errorf("fallbacks to known models: %v", err)
	}
}
