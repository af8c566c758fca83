package backend

import (
	"fmt"
	"sort"

	"github.com/downshift-dev/downshift/internal/config"
)

// Model roles.
const (
	RoleReference = "reference"
	RoleCandidate = "candidate"
)

// Model is a configured model, bound to the backend that serves it.
type Model struct {
	Name          string // what clients ask for
	UpstreamName  string // what the backend calls it
	Role          string
	ParamsB       float64
	ContextTokens int     // 0: unknown
	Licence       string  // "": unknown
	MemoryGB      float64 // 0: unknown
	Price         config.Price
	Backend       *Backend
	// Fallbacks are tried in order when this model's backend fails retryably.
	Fallbacks []*Model
}

// Cost returns the price in US dollars of a call with the given token counts. cached
// prompt tokens are part of prompt and priced at the cached rate when one is set. A
// model priced per GPU-hour is charged the per-token price derived from its throughput
// (see config.Price.PerToken); while that throughput is unknown, Cost is 0.
func (m *Model) Cost(prompt, completion, cached int) float64 {
	in, out, cachedRate, ok := m.Price.PerToken()
	if !ok {
		return 0
	}
	if cached > prompt {
		cached = prompt
	}
	return (float64(prompt-cached)*in + float64(cached)*cachedRate + float64(completion)*out) / 1e6
}

// Catalog resolves the model a client names to the configured model that serves it.
// It is immutable once built and safe for concurrent use.
type Catalog struct {
	models   map[string]*Model
	aliases  map[string]string
	backends map[string]*Backend
}

// NewCatalog builds backends and models from configuration. getenv reads environment
// variables for API keys (nil: os.Getenv).
func NewCatalog(c config.Config, getenv func(string) string) (*Catalog, error) {
	cat := &Catalog{
		models:   make(map[string]*Model, len(c.Models)),
		aliases:  make(map[string]string, len(c.Aliases)),
		backends: make(map[string]*Backend, len(c.Backends)),
	}
	for _, bc := range c.Backends {
		b, err := New(bc, getenv)
		if err != nil {
			return nil, err
		}
		cat.backends[bc.Name] = b
	}
	for _, mc := range c.Models {
		b, ok := cat.backends[mc.Backend]
		if !ok {
			return nil, fmt.Errorf("model %q: unknown backend %q", mc.Name, mc.Backend)
		}
		cat.models[mc.Name] = &Model{
			Name: mc.Name, UpstreamName: mc.Upstream(), Role: mc.Role, ParamsB: mc.ParamsB,
			ContextTokens: mc.ContextTokens, Licence: mc.Licence, MemoryGB: mc.MemoryGB,
			Price: mc.Price, Backend: b,
		}
	}
	for _, mc := range c.Models {
		m := cat.models[mc.Name]
		for _, f := range mc.Fallbacks {
			fm, ok := cat.models[f]
			if !ok {
				return nil, fmt.Errorf("model %q: unknown fallback %q", mc.Name, f)
			}
			m.Fallbacks = append(m.Fallbacks, fm)
		}
	}
	for alias, target := range c.Aliases {
		if _, ok := cat.models[target]; !ok {
			return nil, fmt.Errorf("alias %q: unknown model %q", alias, target)
		}
		cat.aliases[alias] = target
	}
	return cat, nil
}

// Resolve returns the model that serves requests naming name, through aliases.
func (c *Catalog) Resolve(name string) (*Model, bool) {
	if t, ok := c.aliases[name]; ok {
		name = t
	}
	m, ok := c.models[name]
	return m, ok
}

// Backend returns the named backend.
func (c *Catalog) Backend(name string) (*Backend, bool) {
	b, ok := c.backends[name]
	return b, ok
}

// Models returns every configured model, sorted by name.
func (c *Catalog) Models() []*Model {
	out := make([]*Model, 0, len(c.models))
	for _, m := range c.models {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Aliases returns alias → model name.
func (c *Catalog) Aliases() map[string]string {
	out := make(map[string]string, len(c.aliases))
	for k, v := range c.aliases {
		out[k] = v
	}
	return out
}
