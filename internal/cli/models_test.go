package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

// modelsConfig writes a configuration with one backend, a reference model priced per
// token, a candidate and an alias, recording to a database in the test's directory
// (not created yet). It returns the file and the database's paths.
func modelsConfig(t *testing.T) (cfgPath, db string) {
	t.Helper()
	dir := t.TempDir()
	db = filepath.Join(dir, "downshift.db")
	cfgPath = filepath.Join(dir, "downshift.yaml")
	writeModelsFile(t, cfgPath, fmt.Sprintf(`store: {dsn: %q}
backends:
  - {name: local, url: http://127.0.0.1:8000/v1}
models:
  - {name: big, backend: local, role: reference, params_b: 70, context_tokens: 131072,
     price: {input_per_mtok: 2.5, output_per_mtok: 10}}
  - {name: small, backend: local, role: candidate}
aliases:
  gpt-4o: big
`, db))
	return cfgPath, db
}

func writeModelsFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// storedModels reads the runtime models and the audit trail of the database at db.
func storedModels(t *testing.T, db string) ([]store.CatalogModel, []store.AuditEntry) {
	t.Helper()
	st := openTestDB(t, db)
	ms, err := st.ListModels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	es, err := st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(es) // oldest first
	return ms, es
}

func TestModelsAddListRm(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	out, _ := run(t, 0, "models", "add", "qwen", "-c", cfgPath, "--url", "http://10.0.0.5:8000/v1",
		"--api-key-env", "QWEN_KEY", "--upstream-name", "Qwen/Qwen2.5-7B-Instruct", "--params-b", "7.6",
		"--context-tokens", "32768", "--licence", "Apache-2.0", "--memory-gb", "18",
		"--gpu-hour-usd", "2.4", "--throughput-tps", "1500")
	if !strings.Contains(out, "Added model qwen") || !strings.Contains(out, "backend qwen at http://10.0.0.5:8000/v1") {
		t.Errorf("add said:\n%s", out)
	}
	run(t, 0, "models", "add", "phi", "-c", cfgPath, "--backend", "local", "--gpu-hour-usd", "1.2")
	run(t, 0, "models", "add", "tiny", "-c", cfgPath, "--backend", "local", "--role", "candidate",
		"--input-per-mtok", "0.02", "--output-per-mtok", "0.05")

	table, _ := run(t, 0, "models", "list", "-c", cfgPath)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 6 {
		t.Fatalf("list printed %d lines, want a header and 5 models:\n%s", len(lines), table)
	}
	for i, want := range [][]string{
		{"NAME", "SOURCE", "BACKEND", "ROLE", "PARAMS", "CONTEXT", "LICENCE", "MEMORY", "PRICE"},
		{"big", "config", "local", "reference", "70B", "128k", "$2.5 / $10"},
		{"small", "config", "local", "candidate", "-"},
		{"phi", "runtime", "local", "candidate", "unknown: $1.2/GPU-h, measure with downshift eval"},
		{"qwen", "runtime", "qwen", "candidate", "7.6B", "32k", "Apache-2.0", "18 GB",
			"$0.4444 / $0.4444 (from $2.4/GPU-h at 1500 tok/s)"},
		{"tiny", "runtime", "local", "candidate", "$0.02 / $0.05"},
	} {
		for _, cell := range want {
			if !strings.Contains(lines[i], cell) {
				t.Errorf("list line %d %q lacks %q", i, lines[i], cell)
			}
		}
	}

	js, _ := run(t, 0, "models", "list", "-c", cfgPath, "--json")
	var rows []modelRow
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("list --json: %v\n%s", err, js)
	}
	byName := map[string]modelRow{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	q := byName["qwen"]
	if q.Source != "runtime" || q.URL != "http://10.0.0.5:8000/v1" || q.UpstreamName != "Qwen/Qwen2.5-7B-Instruct" ||
		q.InputPerMTok == nil || math.Abs(*q.InputPerMTok-2.4e6/(1500*3600)) > 1e-9 || q.Price.ThroughputTPS != 1500 ||
		!strings.HasPrefix(q.AddedBy, "cli") || q.AddedAt.IsZero() {
		t.Errorf("qwen as JSON: %+v", q)
	}
	if p := byName["phi"]; p.InputPerMTok != nil || p.OutputPerMTok != nil || p.Price.GPUHourUSD != 1.2 {
		t.Errorf("phi's price is unknown until its throughput is measured; JSON says %+v", p)
	}
	if b := byName["big"]; b.Source != "config" || b.InputPerMTok == nil || *b.InputPerMTok != 2.5 || *b.OutputPerMTok != 10 {
		t.Errorf("big as JSON: %+v", b)
	}

	ms, audit := storedModels(t, db)
	if len(ms) != 3 {
		t.Fatalf("stored %d runtime models, want 3", len(ms))
	}
	e, err := config.ParseCatalogEntry(ms[1].Spec)
	if err != nil || e.Backend == nil || e.Backend.APIKeyEnv != "QWEN_KEY" || e.Model.Backend != "qwen" || e.Model.MemoryGB != 18 {
		t.Errorf("qwen's stored spec %s: %+v, %v", ms[1].Spec, e, err)
	}
	if len(audit) != 3 {
		t.Fatalf("audit %+v: want an entry per add", audit)
	}
	for i, name := range []string{"qwen", "phi", "tiny"} {
		if a := audit[i]; a.Actor != "cli" || a.Action != store.AuditAddModel || a.Target != name {
			t.Errorf("audit entry %d = %+v, want add_model of %s by cli", i, a, name)
		}
	}

	out, _ = run(t, 0, "models", "rm", "qwen", "-c", cfgPath)
	if !strings.Contains(out, "Removed model qwen") {
		t.Errorf("rm said %q", out)
	}
	table, _ = run(t, 0, "models", "list", "-c", cfgPath)
	if strings.Contains(table, "qwen") || !strings.Contains(table, "tiny") {
		t.Errorf("list after rm qwen:\n%s", table)
	}
	ms, audit = storedModels(t, db)
	if len(ms) != 2 || len(audit) != 4 || audit[3].Action != store.AuditRemoveModel || audit[3].Target != "qwen" ||
		!strings.Contains(audit[3].Detail, "http://10.0.0.5:8000/v1") {
		t.Errorf("after rm: %d models, audit %+v", len(ms), audit)
	}

	for name, tc := range map[string]struct{ arg, want string }{
		"configured model": {"big", `model "big" is in the configuration file`},
		"alias":            {"gpt-4o", `"gpt-4o" is an alias in the configuration file`},
		"unknown":          {"qwen", `no runtime model "qwen"`},
	} {
		_, stderr := run(t, 1, "models", "rm", tc.arg, "-c", cfgPath)
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("rm %s (%s): stderr %q, want %q", tc.arg, name, stderr, tc.want)
		}
	}
	if ms, audit := storedModels(t, db); len(ms) != 2 || len(audit) != 4 {
		t.Errorf("refused removals changed the store: %d models, %d audit entries", len(ms), len(audit))
	}
}

func TestModelsAddRefusesBadFlags(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown backend":            {[]string{"m", "--backend", "nim"}, `unknown backend "nim": the configuration has local`},
		"backend and url":            {[]string{"m", "--backend", "local", "--url", "http://h/v1"}, "not both"},
		"neither backend nor url":    {[]string{"m"}, "--backend or --url is required"},
		"key env with a backend":     {[]string{"m", "--backend", "local", "--api-key-env", "K"}, "--api-key-env goes with --url"},
		"GPU-hour and token prices":  {[]string{"m", "--backend", "local", "--gpu-hour-usd", "2", "--output-per-mtok", "0.1"}, `runtime model "m": price.gpu_hour_usd: set gpu_hour_usd or per-token prices`},
		"negative price":             {[]string{"m", "--backend", "local", "--input-per-mtok", "-1"}, `runtime model "m": price.input_per_mtok: must not be negative`},
		"negative throughput":        {[]string{"m", "--backend", "local", "--gpu-hour-usd", "2", "--throughput-tps", "-5"}, `price.throughput_tps: must not be negative`},
		"bad role":                   {[]string{"m", "--backend", "local", "--role", "judge"}, `runtime model "m": role: must be "reference" or "candidate"`},
		"name of a configured model": {[]string{"big", "--backend", "local"}, `runtime model "big": has the name of a configured model`},
		"name of an alias":           {[]string{"gpt-4o", "--backend", "local"}, `runtime model "gpt-4o": has the name of a configured alias`},
		"name of a backend":          {[]string{"local", "--url", "http://h/v1"}, `a configured backend is called "local"`},
		"url not absolute":           {[]string{"m", "--url", "10.0.0.5:8000"}, `runtime model "m": backend.url: must be an absolute http(s) URL`},
		"credentials in the url":     {[]string{"m", "--url", "https://u:hunter2@h/v1"}, `backend.url: must not contain credentials`},
		"bad key env name":           {[]string{"m", "--url", "http://h/v1", "--api-key-env", "sk-not-a-var"}, `backend.api_key_env`},
		"price not a number":         {[]string{"m", "--backend", "local", "--gpu-hour-usd", "cheap"}, `invalid argument "cheap"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, stderr := run(t, 1, append([]string{"models", "add", "-c", cfgPath}, tc.args...)...)
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tc.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("error quotes a credential: %s", stderr)
			}
		})
	}
	if _, err := os.Stat(db); err == nil {
		if ms, audit := storedModels(t, db); len(ms) != 0 || len(audit) != 0 {
			t.Errorf("refused adds stored %d models and %d audit entries", len(ms), len(audit))
		}
	}
}

func TestModelsAddReplacesRuntimeModel(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	run(t, 0, "models", "add", "m", "-c", cfgPath, "--backend", "local", "--gpu-hour-usd", "2")
	out, _ := run(t, 0, "models", "add", "m", "-c", cfgPath, "--url", "http://10.0.0.9:8000/v1", "--input-per-mtok", "0.1")
	if !strings.Contains(out, "Replaced model m") {
		t.Errorf("second add said %q", out)
	}
	ms, audit := storedModels(t, db)
	if len(ms) != 1 {
		t.Fatalf("%d models after replacing, want 1", len(ms))
	}
	e, err := config.ParseCatalogEntry(ms[0].Spec)
	if err != nil || e.Backend == nil || e.Backend.URL != "http://10.0.0.9:8000/v1" || e.Model.Price.GPUHourUSD != 0 {
		t.Errorf("replaced spec %s: %+v %v", ms[0].Spec, e, err)
	}
	if len(audit) != 2 || !strings.Contains(audit[1].Detail, "replaced") {
		t.Errorf("audit %+v: want the replacement said", audit)
	}
}

func TestModelsWithoutAuditChangeNothing(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, 0, "models", "add", "kept", "-c", cfgPath, "--backend", "local", "--input-per-mtok", "0.1")
	st := noAudit{openTestDB(t, db)}
	ctx := context.Background()
	before, _ := storedModels(t, db)

	fresh := config.CatalogEntry{Model: config.Model{Name: "fresh", Backend: "local", Role: "candidate"}}
	replace := config.CatalogEntry{Model: config.Model{Name: "kept", Backend: "local", Role: "candidate",
		Price: config.Price{GPUHourUSD: 9}}}
	for _, e := range []config.CatalogEntry{fresh, replace} {
		if err := runModelsAdd(ctx, cfg, st, e, t0, io.Discard); err == nil || !strings.Contains(err.Error(), "not added") {
			t.Errorf("add %s without an audit trail: err = %v", e.Model.Name, err)
		}
	}
	if err := runModelsRm(ctx, cfg, st, "kept", t0, io.Discard); err == nil || !strings.Contains(err.Error(), "not removed") {
		t.Errorf("rm without an audit trail: err = %v", err)
	}
	after, _ := storedModels(t, db)
	if len(after) != 1 || after[0].Name != "kept" || string(after[0].Spec) != string(before[0].Spec) ||
		!after[0].AddedAt.Equal(before[0].AddedAt) {
		t.Errorf("models after unaudited changes = %+v, want %+v", after, before)
	}
}

func TestModelsRmRefusesAFallbackOfAnother(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	st := openTestDB(t, db)
	ctx := context.Background()
	for _, e := range []config.CatalogEntry{
		{Model: config.Model{Name: "a", Backend: "local", Role: "candidate"}},
		{Model: config.Model{Name: "b", Backend: "local", Role: "candidate", Fallbacks: []string{"a"}}},
	} {
		spec, _ := e.Spec()
		if err := st.PutModel(ctx, store.CatalogModel{Name: e.Model.Name, Spec: spec, AddedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr := run(t, 1, "models", "rm", "a", "-c", cfgPath)
	if !strings.Contains(stderr, `runtime model "b" falls back to "a"`) {
		t.Errorf("rm a: %q", stderr)
	}
	run(t, 0, "models", "rm", "b", "-c", cfgPath)
	run(t, 0, "models", "rm", "a", "-c", cfgPath)
}

func TestModelsListWithoutDatabaseListsConfigOnly(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	out, _ := run(t, 0, "models", "list", "-c", cfgPath)
	if !strings.Contains(out, "big") || !strings.Contains(out, "small") || strings.Contains(out, "runtime") {
		t.Errorf("list without a database:\n%s", out)
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("list created the database: %v", err)
	}
	_, stderr := run(t, 1, "models", "rm", "x", "-c", cfgPath)
	if !strings.Contains(stderr, "no database") {
		t.Errorf("rm without a database: %q", stderr)
	}
}

// A runtime model that no longer fits the configuration (its backend was removed from
// the file) is listed with its problem, and the server refuses to start, saying how
// to fix it, rather than quietly not serving it.
func TestRuntimeModelsThatDoNotFitAreReported(t *testing.T) {
	cfgPath, db := modelsConfig(t)
	st := openTestDB(t, db)
	ctx := context.Background()
	spec, _ := config.CatalogEntry{Model: config.Model{Name: "orphan", Backend: "gone", Role: "candidate"}}.Spec()
	if err := st.PutModel(ctx, store.CatalogModel{Name: "orphan", Spec: spec, AddedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutModel(ctx, store.CatalogModel{Name: "garbled", Spec: json.RawMessage(`{"model":{"name":"garbled","colour":1}}`), AddedAt: t0}); err != nil {
		t.Fatal(err)
	}
	out, stderr := run(t, 0, "models", "list", "-c", cfgPath)
	for _, want := range []string{`orphan`, `unknown backend "gone"`, `garbled`, `unknown field "colour"`} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "downshift serve will not start") {
		t.Errorf("list gave no warning: %q", stderr)
	}

	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalogFrom(ctx, cfg, st, nil); err == nil || !strings.Contains(err.Error(), "downshift models rm") {
		t.Errorf("catalogFrom = %v, want an error that says how to fix it", err)
	}
	run(t, 0, "models", "rm", "garbled", "-c", cfgPath)
	_, err = catalogFrom(ctx, cfg, st, nil)
	if err == nil || !strings.Contains(err.Error(), `runtime model "orphan": unknown backend "gone"`) {
		t.Errorf("catalogFrom = %v, want the orphan named", err)
	}
	run(t, 0, "models", "rm", "orphan", "-c", cfgPath)
	if _, err := catalogFrom(ctx, cfg, st, nil); err != nil {
		t.Errorf("catalogFrom after removing both: %v", err)
	}
}

// A model added with `downshift models add` is served by the gateway after a restart:
// on its own server (--url) and on a configured backend, priced per GPU-hour.
func TestServeRoutesToRuntimeModels(t *testing.T) {
	upstream := startSim(t, sim.Options{Mode: sim.ModeSynthetic, Seed: 11})
	dir := t.TempDir()
	db := filepath.Join(dir, "downshift.db")
	cfgPath := filepath.Join(dir, "downshift.yaml")
	writeModelsFile(t, cfgPath, fmt.Sprintf(`store: {dsn: %q}
backends:
  - {name: sim, url: %q}
models:
  - {name: gpt-4o, backend: sim, role: reference, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
`, db, upstream))
	run(t, 0, "models", "add", "own-server", "-c", cfgPath, "--url", upstream, "--upstream-name", "qwen2.5-7b",
		"--gpu-hour-usd", "3.6", "--throughput-tps", "1000")
	run(t, 0, "models", "add", "on-sim", "-c", cfgPath, "--backend", "sim", "--input-per-mtok", "0.1", "--output-per-mtok", "0.2")
	key := createKey(t, db, store.Key{Kind: store.KeyGateway, Name: "agent"})

	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(context.Background(), cfg, ln, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"own-server", "on-sim", "gpt-4o"} {
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Say hello."}]}`, model)
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.addr+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d: %s", model, resp.StatusCode, b.String())
		}
	}
	calls := storedCalls(t, srv, db)
	if len(calls) != 3 {
		t.Fatalf("stored %d calls, want 3", len(calls))
	}
	for i, want := range []struct {
		served, backend string
		inPerM, outPerM float64
	}{
		{"own-server", "own-server", 1, 1}, // 3.60 $/h at 1000 tok/s: 1 $ per million tokens
		{"on-sim", "sim", 0.1, 0.2},
		{"gpt-4o", "sim", 2.5, 10},
	} {
		c := calls[i]
		cost := (float64(c.PromptTokens)*want.inPerM + float64(c.CompletionTokens)*want.outPerM) / 1e6
		if c.ServedModel != want.served || c.Backend != want.backend || c.Status != 200 ||
			c.PromptTokens == 0 || math.Abs(c.CostUSD-cost) > 1e-12 {
			t.Errorf("call %d: served %q by %q, status %d, cost %v (want %q by %q, cost %v)", i,
				c.ServedModel, c.Backend, c.Status, c.CostUSD, want.served, want.backend, cost)
		}
	}
}
