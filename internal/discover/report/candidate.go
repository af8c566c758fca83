package report

import (
	"errors"
	"fmt"
	"math"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
)

// Candidate is a small model the savings are priced at, in US dollars per million
// tokens. A zero CachedInputPerMTok means cached prompt tokens cost the input price.
type Candidate struct {
	Name               string  `json:"name"`
	InputPerMTok       float64 `json:"input_per_mtok"`
	OutputPerMTok      float64 `json:"output_per_mtok"`
	CachedInputPerMTok float64 `json:"cached_input_per_mtok,omitempty"`
}

// Candidates returns the catalog's models with the candidate role, in the catalog's
// order (by name).
func Candidates(models []*backend.Model) []Candidate {
	var out []Candidate
	for _, m := range models {
		if m.Role != backend.RoleCandidate {
			continue
		}
		if c, ok := PricedCandidate(m.Name, m.Price); ok {
			out = append(out, c)
		}
	}
	return out
}

// PricedCandidate is the candidate called name at price, with per-token prices derived
// from a per-GPU-hour price where that is how it is priced (config.Price.PerToken). It
// reports false when the price is not known yet (per GPU-hour, throughput not
// measured): such a model cannot be costed, so it is left out of savings.
func PricedCandidate(name string, price config.Price) (Candidate, bool) {
	in, out, cached, ok := price.PerToken()
	if !ok {
		return Candidate{}, false
	}
	return Candidate{Name: name, InputPerMTok: in, OutputPerMTok: out, CachedInputPerMTok: cached}, true
}

// Cost prices token counts the way backend.Model.Cost does: cached prompt tokens are
// part of prompt and take the cached rate when one is set.
func (c Candidate) Cost(prompt, completion, cached int64) float64 {
	rate := c.CachedInputPerMTok
	if rate == 0 {
		rate = c.InputPerMTok
	}
	cached = min(cached, prompt)
	return (float64(prompt-cached)*c.InputPerMTok + float64(cached)*rate + float64(completion)*c.OutputPerMTok) / 1e6
}

// errBadPrice is wrapped by the error for a negative, infinite or NaN price.
var errBadPrice = errors.New("price must be a finite number, 0 or more")

func (c Candidate) free() bool { return c.InputPerMTok == 0 && c.OutputPerMTok == 0 }

func (c Candidate) validate() error {
	if c.Name == "" {
		return errors.New("report: candidate without a name")
	}
	for _, p := range []float64{c.InputPerMTok, c.OutputPerMTok, c.CachedInputPerMTok} {
		if p < 0 || math.IsNaN(p) || math.IsInf(p, 0) {
			return fmt.Errorf("report: candidate %s: price %v: %w", c.Name, p, errBadPrice)
		}
	}
	return nil
}
