package ui

import (
	"net/http"
	"sort"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/store"
)

// CatalogModels lists a catalog's models for Options.Models.
func CatalogModels(c *backend.Catalog) []Model {
	var out []Model
	for _, m := range c.Models() {
		mm := Model{Name: m.Name, Role: m.Role, ParamsB: m.ParamsB, ContextTokens: m.ContextTokens,
			Licence: m.Licence, InputPerMTok: m.Price.InputPerMTok, OutputPerMTok: m.Price.OutputPerMTok,
			GPUHourUSD: m.Price.GPUHourUSD}
		if m.Backend != nil {
			mm.Backend = m.Backend.Name()
		}
		out = append(out, mm)
	}
	return out
}

// modelRow is one model as the models page lists it: from the catalog (or only seen
// in the rollups), and its use over the period.
type modelRow struct {
	Model
	InCatalog bool
	// AddedAt and AddedBy say when and by whom a model was added at run time; zero
	// for a model of the configuration file.
	AddedAt time.Time
	AddedBy string

	Calls, Errors                  int64
	PromptTokens, CompletionTokens int64
	Cost                           float64
	P50, P95                       time.Duration
}

type modelsView struct {
	common
	Rows []modelRow
	Jobs []store.TuneJob // newest first, at most maxJobs
	More int             // jobs left out
}

const maxJobs = 100

// modelsPage answers GET /ui/models: the catalog with each model's use over the
// period, and the tuning jobs with their state.
func (u *UI) modelsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	p, err := parsePeriod(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	v := modelsView{common: u.common(r, s, "Models", "models")}
	win := p.at(u.now())
	v.Window = win
	rows := map[string]*modelRow{}
	if u.models != nil {
		for _, m := range u.models() {
			rows[m.Name] = &modelRow{Model: m, InCatalog: true}
		}
	}
	added, err := u.store.ListModels(ctx)
	if err != nil {
		return err
	}
	for _, m := range added {
		if row := rows[m.Name]; row != nil {
			row.AddedAt, row.AddedBy = m.AddedAt, m.AddedBy
		}
	}
	if u.rollups == nil {
		v.Notice = noRollups
	} else {
		rs, err := u.rollups.Rollups(ctx, store.RollupFilter{Since: win.Since, Until: win.Until, ByModel: true})
		if err != nil {
			return err
		}
		for name, t := range group(rs, func(r *store.Rollup) string { return r.Model }) {
			row := rows[name]
			if row == nil {
				row = &modelRow{Model: Model{Name: name}}
				rows[name] = row
			}
			a := &t.all
			row.Calls, row.Errors, row.Cost = a.Calls, a.Errors, a.CostUSD
			row.PromptTokens, row.CompletionTokens = a.PromptTokens, a.CompletionTokens
			row.P50, row.P95 = a.Latency.Quantile(0.5), a.Latency.Quantile(0.95)
		}
	}
	for _, row := range rows {
		v.Rows = append(v.Rows, *row)
	}
	sort.Slice(v.Rows, func(i, j int) bool {
		a, b := &v.Rows[i], &v.Rows[j]
		if a.InCatalog != b.InCatalog {
			return a.InCatalog
		}
		if a.Role != b.Role {
			return a.Role > b.Role // reference before candidate
		}
		return a.Name < b.Name
	})
	jobs, err := u.store.ListTuneJobs(ctx, "")
	if err != nil {
		return err
	}
	v.Jobs = jobs[:min(len(jobs), maxJobs)]
	v.More = len(jobs) - len(v.Jobs)
	return u.render(w, http.StatusOK, "models", v)
}
