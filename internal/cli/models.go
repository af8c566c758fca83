package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// catalogFrom builds the catalog of cfg's models and the models added at run time with
// `downshift models add`, which ms keeps: what the gateway routes to and `downshift
// eval` evaluates. getenv reads API keys (nil: os.Getenv).
func catalogFrom(ctx context.Context, cfg config.Config, ms store.ModelStore, getenv func(string) string) (*backend.Catalog, error) {
	merged, err := runtimeConfig(ctx, cfg, ms)
	if err != nil {
		return nil, err
	}
	return backend.NewCatalog(merged, getenv)
}

// runtimeConfig returns cfg with the models added at run time, and the backends they
// carry (see config.Config.WithCatalog).
func runtimeConfig(ctx context.Context, cfg config.Config, ms store.ModelStore) (config.Config, error) {
	stored, err := ms.ListModels(ctx)
	if err != nil {
		return config.Config{}, fmt.Errorf("reading the models added with downshift models add: %w", err)
	}
	entries, err := catalogEntries(stored)
	if err != nil {
		return config.Config{}, err
	}
	merged, err := cfg.WithCatalog(entries)
	if err != nil {
		return config.Config{}, fmt.Errorf("the models added with downshift models add do not fit the configuration "+
			"(change the configuration, or remove them with downshift models rm NAME):\n%w", err)
	}
	return merged, nil
}

// catalogEntries decodes the specs of stored models.
func catalogEntries(stored []store.CatalogModel) ([]config.CatalogEntry, error) {
	out := make([]config.CatalogEntry, 0, len(stored))
	for _, m := range stored {
		e, err := catalogEntry(m)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func catalogEntry(m store.CatalogModel) (config.CatalogEntry, error) {
	e, err := config.ParseCatalogEntry(m.Spec)
	if err != nil {
		return config.CatalogEntry{}, fmt.Errorf("runtime model %q: %w (remove it with downshift models rm %s)", m.Name, err, m.Name)
	}
	if e.Model.Name != m.Name {
		return config.CatalogEntry{}, fmt.Errorf("runtime model %q: its spec names model %q (remove it with downshift models rm %s)",
			m.Name, e.Model.Name, m.Name)
	}
	return e, nil
}

// catalogStore is what the models commands need of a store.
type catalogStore interface {
	store.ModelStore
	store.AuditLog
}

// modelsFlags are the flags every models subcommand shares.
type modelsFlags struct {
	storeFlags
}

// loadConfig loads the configuration file the flags name, or the defaults (no models,
// no backends) when they name none.
func (f *modelsFlags) loadConfig() (config.Config, error) {
	return config.Load(f.config, os.Environ())
}

// newModelsCmd returns `downshift models` with add, list and rm.
func newModelsCmd() *cobra.Command {
	f := &modelsFlags{}
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Add, list and remove catalog models (candidates and references)",
		Long: `The catalog is every model downshift can route to or evaluate: the models of the
configuration file, and models added at run time with downshift models add, which the
store keeps. A runtime model is served by a configured backend (--backend) or by its own
OpenAI-compatible server (--url); downshift eval can evaluate it at once, and downshift
serve routes to it after a restart.

A model is priced per million tokens (--input-per-mtok, --output-per-mtok), or per
GPU-hour (--gpu-hour-usd) with the throughput measured on that GPU (--throughput-tps),
from which a per-token price is derived. Without a throughput, the price per token is
unknown until downshift eval measures it.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db)")
	pf.StringVarP(&f.config, "config", "c", "", "YAML config file: its models and backends, and the store it names")
	cmd.AddCommand(newModelsAddCmd(f), newModelsListCmd(f), newModelsRmCmd(f))
	return cmd
}

// modelsAddOptions are the flags of `downshift models add`.
type modelsAddOptions struct {
	backend, url, apiKeyEnv, upstream, role, licence string
	paramsB, memoryGB                                float64
	contextTokens                                    int
	price                                            config.Price
}

func newModelsAddCmd(f *modelsFlags) *cobra.Command {
	var o modelsAddOptions
	cmd := &cobra.Command{
		Use:   "add NAME --backend B | --url URL",
		Short: "Add a model to the catalog, or replace the runtime model of that name",
		Example: `  downshift models add llama-3.1-8b -c downshift.yaml --backend local --params-b 8 --input-per-mtok 0.02 --output-per-mtok 0.05
  downshift models add qwen2.5-7b -c downshift.yaml --url http://10.0.0.5:8000/v1 --upstream-name Qwen/Qwen2.5-7B-Instruct \
      --params-b 7.6 --context-tokens 32768 --licence Apache-2.0 --memory-gb 18 --gpu-hour-usd 2.40 --throughput-tps 1500`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.loadConfig()
			if err != nil {
				return err
			}
			e, err := o.entry(args[0], cfg)
			if err != nil {
				return err
			}
			st, err := f.create(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runModelsAdd(cmd.Context(), cfg, st, e, time.Now(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.backend, "backend", "", "the configured backend that serves the model")
	fl.StringVar(&o.url, "url", "", "the base URL of the model's own OpenAI-compatible server, e.g. http://10.0.0.5:8000/v1")
	fl.StringVar(&o.apiKeyEnv, "api-key-env", "", "with --url: the environment variable that holds the server's API key (never the key)")
	fl.StringVar(&o.upstream, "upstream-name", "", "the model name the server knows it by (default: NAME)")
	fl.StringVar(&o.role, "role", config.RoleCandidate, "candidate (a small model) or reference (a large one agents use today)")
	fl.Float64Var(&o.paramsB, "params-b", 0, "parameter count in billions")
	fl.IntVar(&o.contextTokens, "context-tokens", 0, "longest context the model takes, in tokens")
	fl.StringVar(&o.licence, "licence", "", "the model's licence, e.g. Apache-2.0")
	fl.Float64Var(&o.memoryGB, "memory-gb", 0, "accelerator memory the model needs to serve, in GB")
	fl.Float64Var(&o.price.InputPerMTok, "input-per-mtok", 0, "US dollars per million prompt tokens")
	fl.Float64Var(&o.price.OutputPerMTok, "output-per-mtok", 0, "US dollars per million completion tokens")
	fl.Float64Var(&o.price.CachedInputPerMTok, "cached-input-per-mtok", 0, "US dollars per million cached prompt tokens (default: the input price)")
	fl.Float64Var(&o.price.GPUHourUSD, "gpu-hour-usd", 0, "US dollars per hour of the GPU that serves the model, instead of per-token prices")
	fl.Float64Var(&o.price.ThroughputTPS, "throughput-tps", 0, "with --gpu-hour-usd: tokens per second (prompt and completion) the model does on that GPU")
	return cmd
}

// entry turns the flags into the catalog entry for the model called name. What the
// configuration validator checks (role, prices, URL) is left to it.
func (o modelsAddOptions) entry(name string, cfg config.Config) (config.CatalogEntry, error) {
	m := config.Model{Name: name, UpstreamName: o.upstream, Role: o.role, ParamsB: o.paramsB,
		ContextTokens: o.contextTokens, Licence: o.licence, MemoryGB: o.memoryGB, Price: o.price}
	switch {
	case name == "":
		return config.CatalogEntry{}, errors.New("the model needs a name")
	case o.backend != "" && o.url != "":
		return config.CatalogEntry{}, errors.New("set --backend (a configured backend) or --url (the model's own server), not both")
	case o.backend == "" && o.url == "":
		return config.CatalogEntry{}, errors.New("--backend or --url is required: which server answers for the model")
	case o.apiKeyEnv != "" && o.url == "":
		return config.CatalogEntry{}, errors.New("--api-key-env goes with --url; a configured backend has its key in the config file")
	case o.backend != "":
		if _, ok := cfg.BackendByName(o.backend); !ok {
			return config.CatalogEntry{}, fmt.Errorf("unknown backend %q: the configuration has %s (or give the model its own --url)",
				o.backend, backendNames(cfg))
		}
		m.Backend = o.backend
		return config.CatalogEntry{Model: m}, nil
	}
	// The model's own server becomes a backend named after the model.
	if _, ok := cfg.BackendByName(name); ok {
		return config.CatalogEntry{}, fmt.Errorf("a configured backend is called %q: serve the model with --backend %s, or give it another name", name, name)
	}
	m.Backend = name
	return config.CatalogEntry{Model: m, Backend: &config.Backend{Name: name, URL: o.url, APIKeyEnv: o.apiKeyEnv}}, nil
}

func backendNames(cfg config.Config) string {
	if len(cfg.Backends) == 0 {
		return "no backends"
	}
	names := make([]string, len(cfg.Backends))
	for i, b := range cfg.Backends {
		names[i] = b.Name
	}
	return strings.Join(names, ", ")
}

// runModelsAdd stores e as a runtime model, replacing the one of the same name, once
// the catalog with it validates, and audits it. If the audit entry cannot be written,
// the store is put back as it was.
func runModelsAdd(ctx context.Context, cfg config.Config, st catalogStore, e config.CatalogEntry, now time.Time, w io.Writer) error {
	name := e.Model.Name
	stored, err := st.ListModels(ctx)
	if err != nil {
		return err
	}
	var (
		prev     *store.CatalogModel
		entries  []config.CatalogEntry
		replaced = "Added"
	)
	for i, m := range stored {
		if m.Name == name {
			prev, replaced = &stored[i], "Replaced"
			continue
		}
		other, err := catalogEntry(m)
		if err != nil {
			return err
		}
		entries = append(entries, other)
	}
	if _, err := cfg.WithCatalog(append(entries, e)); err != nil {
		return fmt.Errorf("model %q not added:\n%w", name, err)
	}
	spec, err := e.Spec()
	if err != nil {
		return err
	}
	actor, osUser := cliActor()
	by := actor
	if osUser != "" {
		by += ":" + osUser
	}
	if err := st.PutModel(ctx, store.CatalogModel{Name: name, Spec: spec, AddedAt: now, AddedBy: by}); err != nil {
		return err
	}
	detail := describeEntry(e)
	if prev != nil {
		detail += "; replaced the runtime model of the same name"
	}
	err = st.AppendAudit(ctx, store.AuditEntry{At: now, Actor: actor, ActorName: osUser,
		Action: store.AuditAddModel, Target: name, Detail: detail})
	if err != nil {
		ctx := context.WithoutCancel(ctx)
		undo := func() error { return st.DeleteModel(ctx, name) }
		if prev != nil {
			undo = func() error { return st.PutModel(ctx, *prev) }
		}
		if uerr := undo(); uerr != nil {
			return fmt.Errorf("model %s was stored but could not be audited (%w) nor put back: remove it with downshift models rm: %w", name, err, uerr)
		}
		return fmt.Errorf("model %q not added: the audit trail could not be written: %w", name, err)
	}
	_, err = fmt.Fprintf(w, "%s model %s (%s).\ndownshift eval can evaluate it now; a running downshift serve routes to it after a restart.\n",
		replaced, name, detail)
	return err
}

// describeEntry says in one line what a catalog entry is, for the audit trail and the
// command's output. It never holds a secret: URLs carry no credentials (the
// configuration refuses them) and a key is only ever named by its variable.
func describeEntry(e config.CatalogEntry) string {
	m := e.Model
	parts := []string{m.Role, "backend " + m.Backend}
	if e.Backend != nil {
		parts[1] += " at " + e.Backend.URL
		if e.Backend.APIKeyEnv != "" {
			parts[1] += ", key in $" + e.Backend.APIKeyEnv
		}
	}
	if m.UpstreamName != "" {
		parts = append(parts, "upstream name "+m.UpstreamName)
	}
	parts = append(parts, "price "+priceColumn(m.Price))
	return strings.Join(parts, "; ")
}

func newModelsListCmd(f *modelsFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the catalog: configured models and those added at run time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.loadConfig()
			if err != nil {
				return err
			}
			var runtime []store.CatalogModel
			// Without a database there are no runtime models; the configured ones are
			// still worth listing, and no empty database is left behind.
			if driver, dsn, err := f.target(); err != nil {
				return err
			} else if _, serr := os.Stat(dsn); !(driver == config.DriverSQLite && errors.Is(serr, fs.ErrNotExist)) {
				st, err := openStore(cmd.Context(), driver, dsn)
				if err != nil {
					return err
				}
				defer st.Close()
				if runtime, err = st.ListModels(cmd.Context()); err != nil {
					return err
				}
			}
			return runModelsList(cfg, runtime, asJSON, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	return cmd
}

// modelRow is one model of `downshift models list`.
type modelRow struct {
	Name          string       `json:"name"`
	Source        string       `json:"source"` // config or runtime
	Backend       string       `json:"backend"`
	URL           string       `json:"url,omitempty"`
	UpstreamName  string       `json:"upstream_name"`
	Role          string       `json:"role"`
	ParamsB       float64      `json:"params_b,omitempty"`
	ContextTokens int          `json:"context_tokens,omitempty"`
	Licence       string       `json:"licence,omitempty"`
	MemoryGB      float64      `json:"memory_gb,omitempty"`
	Price         config.Price `json:"price"`
	// InputPerMTok and OutputPerMTok are the per-token prices in effect, derived from
	// the GPU-hour price when there is one; absent when unknown (per GPU-hour, no
	// throughput yet).
	InputPerMTok  *float64  `json:"input_per_mtok,omitempty"`
	OutputPerMTok *float64  `json:"output_per_mtok,omitempty"`
	AddedAt       time.Time `json:"added_at,omitzero"`
	AddedBy       string    `json:"added_by,omitempty"`
	// Problem says why a runtime model cannot be served, when it cannot.
	Problem string `json:"problem,omitempty"`
}

// runModelsList prints the configured models, in the file's order, then the runtime
// models by name. Runtime models that do not fit the configuration are listed with
// their problem, and a warning goes to errOut: the server refuses to start with them.
func runModelsList(cfg config.Config, runtime []store.CatalogModel, asJSON bool, w, errOut io.Writer) error {
	rows := make([]modelRow, 0, len(cfg.Models)+len(runtime))
	for _, m := range cfg.Models {
		rows = append(rows, newModelRow(m, "config", cfg))
	}
	var entries []config.CatalogEntry
	for _, sm := range runtime {
		e, err := catalogEntry(sm)
		if err != nil {
			rows = append(rows, modelRow{Name: sm.Name, Source: "runtime", AddedAt: sm.AddedAt, AddedBy: sm.AddedBy, Problem: err.Error()})
			continue
		}
		entries = append(entries, e)
		withOwn := cfg
		if e.Backend != nil {
			withOwn.Backends = append(slices.Clone(cfg.Backends), *e.Backend)
		}
		r := newModelRow(e.Model, "runtime", withOwn)
		r.AddedAt, r.AddedBy = sm.AddedAt, sm.AddedBy
		if _, err := cfg.WithCatalog([]config.CatalogEntry{e}); err != nil {
			r.Problem = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		rows = append(rows, r)
	}
	if _, err := cfg.WithCatalog(entries); err != nil || len(entries) < len(runtime) {
		fmt.Fprintln(errOut, "warning: some models added at run time do not fit the configuration, and downshift serve will not start "+
			"until they do; see the problem column, and remove them with downshift models rm NAME")
	}
	if asJSON {
		return writeIndentedJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tBACKEND\tROLE\tPARAMS\tCONTEXT\tLICENCE\tMEMORY\tPRICE IN/OUT PER 1M TOKENS")
	for _, r := range rows {
		price := priceColumn(r.Price)
		if r.Problem != "" {
			price = "problem: " + r.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Source, orDash(r.Backend), orDash(r.Role),
			unitColumn(r.ParamsB, "B"), contextColumn(r.ContextTokens), orDash(r.Licence), unitColumn(r.MemoryGB, " GB"), price)
	}
	return tw.Flush()
}

func newModelRow(m config.Model, source string, cfg config.Config) modelRow {
	r := modelRow{Name: m.Name, Source: source, Backend: m.Backend, UpstreamName: m.Upstream(), Role: m.Role,
		ParamsB: m.ParamsB, ContextTokens: m.ContextTokens, Licence: m.Licence, MemoryGB: m.MemoryGB, Price: m.Price}
	if b, ok := cfg.BackendByName(m.Backend); ok {
		r.URL = b.URL
	}
	if in, out, _, ok := m.Price.PerToken(); ok {
		r.InputPerMTok, r.OutputPerMTok = &in, &out
	}
	return r
}

// priceColumn says what a model costs per million prompt and completion tokens, and
// where a derived price comes from.
func priceColumn(p config.Price) string {
	in, out, _, ok := p.PerToken()
	switch {
	case !ok:
		return fmt.Sprintf("unknown: $%s/GPU-h, measure with downshift eval", num(p.GPUHourUSD))
	case p.GPUHourUSD > 0:
		return fmt.Sprintf("$%s / $%s (from $%s/GPU-h at %s tok/s)", num(in), num(out), num(p.GPUHourUSD), num(p.ThroughputTPS))
	case in == 0 && out == 0:
		return "-"
	}
	return fmt.Sprintf("$%s / $%s", num(in), num(out))
}

// num prints a price or a quantity with up to four significant digits.
func num(f float64) string {
	return strconv.FormatFloat(f, 'g', 4, 64)
}

func unitColumn(f float64, unit string) string {
	if f == 0 {
		return "-"
	}
	return num(f) + unit
}

// contextColumn prints a context length as people say it: 128k for 131072, 100k for
// 100000.
func contextColumn(n int) string {
	switch {
	case n == 0:
		return "-"
	case n%1024 == 0:
		return strconv.Itoa(n/1024) + "k"
	case n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

func newModelsRmCmd(f *modelsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a model added at run time (configured models are removed from the file)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.loadConfig()
			if err != nil {
				return err
			}
			st, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runModelsRm(cmd.Context(), cfg, st, args[0], time.Now(), cmd.OutOrStdout())
		},
	}
}

// runModelsRm removes the runtime model called name and audits it; if the audit entry
// cannot be written, the model is put back. A configured model or alias is refused,
// and so is a model another runtime model falls back to.
func runModelsRm(ctx context.Context, cfg config.Config, st catalogStore, name string, now time.Time, w io.Writer) error {
	if _, ok := cfg.ModelByName(name); ok {
		return fmt.Errorf("model %q is in the configuration file, not added at run time: remove it from the file's models", name)
	}
	if _, ok := cfg.Aliases[name]; ok {
		return fmt.Errorf("%q is an alias in the configuration file, not a runtime model: remove it from the file's aliases", name)
	}
	stored, err := st.ListModels(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(stored, func(m store.CatalogModel) bool { return m.Name == name })
	if i < 0 {
		return fmt.Errorf("no runtime model %q (downshift models list shows the catalog)", name)
	}
	removed := stored[i]
	for _, m := range stored {
		if m.Name == name {
			continue
		}
		// A spec that does not decode does not block removing another model.
		if e, err := catalogEntry(m); err == nil && slices.Contains(e.Model.Fallbacks, name) {
			return fmt.Errorf("runtime model %q falls back to %q: remove it first, or add it again without that fallback", m.Name, name)
		}
	}
	if err := st.DeleteModel(ctx, name); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no runtime model %q (downshift models list shows the catalog)", name)
	} else if err != nil {
		return err
	}
	detail := "its spec could not be read"
	if e, err := catalogEntry(removed); err == nil {
		detail = describeEntry(e)
	}
	actor, osUser := cliActor()
	err = st.AppendAudit(ctx, store.AuditEntry{At: now, Actor: actor, ActorName: osUser,
		Action: store.AuditRemoveModel, Target: name, Detail: detail})
	if err != nil {
		if perr := st.PutModel(context.WithoutCancel(ctx), removed); perr != nil {
			return fmt.Errorf("model %s was removed but could not be audited (%w) nor put back: %w", name, err, perr)
		}
		return fmt.Errorf("model %q not removed: the audit trail could not be written: %w", name, err)
	}
	_, err = fmt.Fprintf(w, "Removed model %s. A running downshift serve stops routing to it after a restart.\n", name)
	return err
}
