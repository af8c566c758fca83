package backend

import (
	"math"
	"testing"

	"github.com/downshift-dev/downshift/internal/config"
)

func TestCostPerGPUHour(t *testing.T) {
	tests := []struct {
		name                      string
		price                     config.Price
		prompt, completion, cache int
		want                      float64
	}{
		// 3.60 $/h at 1000 tok/s: 1 $ per million tokens, prompt, completion and cached alike.
		{"derived from throughput", config.Price{GPUHourUSD: 3.6, ThroughputTPS: 1000}, 800_000, 200_000, 100_000, 1},
		{"throughput unknown costs 0", config.Price{GPUHourUSD: 3.6}, 800_000, 200_000, 0, 0},
		{"free", config.Price{}, 800_000, 200_000, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Model{Price: tt.price}
			if got := m.Cost(tt.prompt, tt.completion, tt.cache); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("Cost = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCatalogCarriesCatalogFields(t *testing.T) {
	c := config.Default()
	c.Backends = []config.Backend{{Name: "gpu", URL: "http://127.0.0.1:8000/v1"}}
	c.Models = []config.Model{{Name: "qwen", Backend: "gpu", Role: RoleCandidate, ParamsB: 7.6,
		ContextTokens: 32768, Licence: "Apache-2.0", MemoryGB: 18,
		Price: config.Price{GPUHourUSD: 2.4, ThroughputTPS: 1500}}}
	cat, err := NewCatalog(c, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m, ok := cat.Resolve("qwen")
	if !ok {
		t.Fatal("qwen not in the catalog")
	}
	if m.ContextTokens != 32768 || m.Licence != "Apache-2.0" || m.MemoryGB != 18 || m.ParamsB != 7.6 {
		t.Errorf("catalog model %+v lost fields of its configuration", m)
	}
	if got, want := m.Cost(1_000_000, 0, 0), 2.4e6/(1500*3600); math.Abs(got-want) > 1e-12 {
		t.Errorf("Cost of 1M prompt tokens = %v, want %v", got, want)
	}
}
