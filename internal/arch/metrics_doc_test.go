package arch

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/gateway"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/record"
	"github.com/downshift-dev/downshift/internal/store"
)

var (
	metricsDoc = filepath.Join("..", "..", "docs", "metrics.md")
	dashboard  = filepath.Join("..", "..", "deploy", "grafana", "downshift.json")
)

// metric is what the code or the docs say of one metric.
type metric struct {
	typ    string   // counter, gauge, histogram, summary; "" when not known
	labels []string // variable label names, sorted
	where  string   // where it was found, for messages
}

// TestMetricsDocListsEveryMetric holds docs/metrics.md to the code: every metric the
// server registers has a table row with its type and labels and a section of its own,
// and every metric name the page mentions exists.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	built := builtMetrics(t)
	declared := declaredMetrics(t)
	rows, sections, mentions := readMetricsDoc(t)

	known := map[string]metric{}
	for name, m := range declared {
		known[name] = m
	}
	for name, m := range built {
		known[name] = m // the built registry knows labels and the type for sure
	}
	for name, code := range known {
		if !strings.HasPrefix(name, "downshift_") {
			t.Errorf("%s: metric %s does not start with downshift_", code.where, name)
			continue
		}
		row, ok := rows[name]
		if !ok {
			t.Errorf("%s is registered (%s) but has no row in a table of %s", name, code.where, metricsDoc)
			continue
		}
		if !sections[name] {
			t.Errorf("%s has no section \"### `%s`\" in %s", name, name, metricsDoc)
		}
		if code.typ != "" && row.typ != code.typ {
			t.Errorf("%s (%s): the docs say %q, the code registers a %s", name, row.where, row.typ, code.typ)
		}
		if _, isBuilt := built[name]; isBuilt && !slices.Equal(row.labels, code.labels) {
			t.Errorf("%s (%s): the docs list labels %v, the code has %v", name, row.where, row.labels, code.labels)
		}
	}
	for name, row := range rows {
		if _, ok := known[name]; !ok {
			t.Errorf("%s (%s) is documented but no code registers it", name, row.where)
		}
	}
	for name := range sections {
		if _, ok := rows[name]; !ok {
			t.Errorf("%s has a section in %s but no table row", name, metricsDoc)
		}
	}
	for _, m := range mentions {
		if !isDocumented(m.name, rows) {
			t.Errorf("%s:%d names %s, which is not a metric (nor a series of a histogram)", metricsDoc, m.line, m.name)
		}
	}
}

// TestGrafanaDashboardQueriesOnlyDocumentedMetrics checks that the dashboard in deploy/
// imports: its data source is the DS_PROMETHEUS input (and a variable of that name, so
// that file provisioning works too), every panel has a query, every $variable is
// defined, and every metric it names is in docs/metrics.md.
func TestGrafanaDashboardQueriesOnlyDocumentedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want a uid, a title and schemaVersion >= 36", d.UID, d.Title, d.SchemaVersion)
	}
	if !slices.ContainsFunc(d.Inputs, func(in grafanaInput) bool {
		return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
	}) {
		t.Error(`__inputs has no Prometheus datasource input "DS_PROMETHEUS"`)
	}

	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" && v.Name == "DS_PROMETHEUS" && v.query(t) != "prometheus" {
			t.Errorf("variable DS_PROMETHEUS chooses among %q data sources, want prometheus", v.query(t))
		}
	}
	for _, name := range []string{"DS_PROMETHEUS", "workload"} {
		if !vars[name] {
			t.Errorf("no template variable %q", name)
		}
	}

	var exprs []string
	ids, titles := map[int]bool{}, map[string]bool{}
	var check func(panels []grafanaPanel)
	check = func(panels []grafanaPanel) {
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if p.Title == "" || titles[p.Title] {
				t.Errorf("panel %d: title %q is empty or used twice", p.ID, p.Title)
			}
			titles[p.Title] = true
			if p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource uid %q, want ${DS_PROMETHEUS}", p.Title, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if strings.TrimSpace(q.Expr) == "" || q.RefID == "" || refs[q.RefID] {
					t.Errorf("panel %q: query %q with refId %q: want an expression and a refId of its own", p.Title, q.Expr, q.RefID)
				}
				refs[q.RefID] = true
				if q.Datasource.UID != "${DS_PROMETHEUS}" {
					t.Errorf("panel %q, query %s: datasource uid %q, want ${DS_PROMETHEUS}", p.Title, q.RefID, q.Datasource.UID)
				}
				exprs = append(exprs, q.Expr)
			}
		}
	}
	check(d.Panels)
	if len(exprs) < 10 {
		t.Errorf("only %d queries in the dashboard", len(exprs))
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			exprs = append(exprs, a.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.query(t))
		}
	}
	grafanaVar := regexp.MustCompile(`\$\{?(\w+)`)
	for _, e := range exprs {
		for _, m := range grafanaVar.FindAllStringSubmatch(e, -1) {
			if !vars[m[1]] {
				t.Errorf("query %q uses $%s, which the dashboard does not define", e, m[1])
			}
		}
		if !balanced(e) {
			t.Errorf("query %q has unbalanced brackets", e)
		}
	}

	// Every metric name anywhere in the file: queries, variables, annotations, texts.
	rows, _, _ := readMetricsDoc(t)
	for _, name := range metricName.FindAllString(string(raw), -1) {
		if !isDocumented(name, rows) {
			t.Errorf("the dashboard names %s, which docs/metrics.md does not document", name)
		}
	}
}

// builtMetrics builds the gateway, the recorder and the policy monitor as serve does,
// on one registry, and returns what they register. Names and labels come from
// Describe, since a Vec reports no series in Gather until a label set is used; types
// come from Gather once every Vec has a series and the monitor has a window to report.
func builtMetrics(t *testing.T) map[string]metric {
	t.Helper()
	reg := &recordingRegistry{Registry: prometheus.NewRegistry()}
	rec, err := record.New(record.Options{Store: discardCalls{}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	policies := fixedPolicies{policy.NewSnapshot(1, []store.Policy{
		{Workload: "w", Version: 1, Mode: store.ModeCanary, Candidate: "small"},
	})}
	mon, err := policy.NewMonitor(policy.MonitorOptions{
		Policies:   policies,
		Step:       func(context.Context, store.Policy, store.Policy) error { return nil },
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := backend.NewCatalog(config.Config{}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(gateway.Options{Catalog: cat, Recorder: rec, Registerer: reg, Gatherer: reg,
		Policies: policies, Observer: mon}); err != nil {
		t.Fatal(err)
	}
	mon.ObserveAgreement("w", 1, 1, true)
	mon.ObserveGuard("w", 1, true)

	got := map[string]metric{}
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			name, labels := parseDesc(t, d)
			got[name] = metric{labels: labels, where: "built by gateway.New, record.New or policy.NewMonitor"}
			values := make([]string, len(labels))
			for i := range values {
				values[i] = "x"
			}
			switch v := c.(type) {
			case *prometheus.CounterVec:
				v.WithLabelValues(values...)
			case *prometheus.GaugeVec:
				v.WithLabelValues(values...)
			case *prometheus.HistogramVec:
				v.WithLabelValues(values...)
			case *prometheus.SummaryVec:
				v.WithLabelValues(values...)
			}
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if m, ok := got[f.GetName()]; ok {
			m.typ = strings.ToLower(f.GetType().String())
			got[f.GetName()] = m
		}
	}
	for name, m := range got {
		if m.typ == "" {
			t.Errorf("%s reported no series, so its type is unknown: make this test exercise it", name)
		}
	}
	if len(got) < 20 {
		t.Fatalf("only %d metrics registered: %v", len(got), got)
	}
	return got
}

var (
	descName   = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*")`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^{}]*)\}\}$`)
)

// parseDesc reads the name and variable labels out of d.String(): Desc has no getters.
func parseDesc(t *testing.T, d *prometheus.Desc) (string, []string) {
	t.Helper()
	s := d.String()
	n, l := descName.FindStringSubmatch(s), descLabels.FindStringSubmatch(s)
	if n == nil || l == nil {
		t.Fatalf("cannot read %s", s)
	}
	name, err := strconv.Unquote(n[1])
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, l := range strings.Split(l[1], ",") {
		if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
			labels = append(labels, l)
		}
	}
	slices.Sort(labels)
	return name, labels
}

// declaredMetrics finds the metric names written in the module's non-test code, in
// prometheus.*Opts literals and prometheus.NewDesc calls: this catches a metric
// registered by a package builtMetrics does not build (the composition root, say).
// Names must be string literals for it to see them.
func declaredMetrics(t *testing.T) map[string]metric {
	t.Helper()
	const promPath = "github.com/prometheus/client_golang/prometheus"
	optsType := map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram",
		"SummaryOpts": "summary", "UntypedOpts": "untyped"}
	got := map[string]metric{}
	for _, p := range listPackages(t) {
		for _, file := range p.GoFiles {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, file), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			prom := ""
			for _, imp := range f.Imports {
				if path, _ := strconv.Unquote(imp.Path.Value); path == promPath {
					prom = "prometheus"
					if imp.Name != nil {
						prom = imp.Name.Name
					}
				}
			}
			if prom == "" {
				continue
			}
			isProm := func(e ast.Expr) (string, bool) {
				sel, ok := e.(*ast.SelectorExpr)
				if !ok {
					return "", false
				}
				x, ok := sel.X.(*ast.Ident)
				return sel.Sel.Name, ok && x.Name == prom
			}
			ast.Inspect(f, func(n ast.Node) bool {
				where := func() string { return fset.Position(n.Pos()).String() }
				switch n := n.(type) {
				case *ast.CompositeLit:
					typ, ok := isProm(n.Type)
					if !ok || !strings.HasSuffix(typ, "Opts") {
						return true
					}
					parts := map[string]string{}
					for _, e := range n.Elts {
						kv, ok := e.(*ast.KeyValueExpr)
						if !ok {
							continue
						}
						key, _ := kv.Key.(*ast.Ident)
						if key == nil || (key.Name != "Namespace" && key.Name != "Subsystem" && key.Name != "Name") {
							continue
						}
						s, ok := stringLit(kv.Value)
						if !ok {
							t.Errorf("%s: the metric's %s is not a string literal, so docs/metrics.md cannot be checked against it", where(), key.Name)
						}
						parts[key.Name] = s
					}
					if name, ok := parts["Name"]; ok {
						got[prometheus.BuildFQName(parts["Namespace"], parts["Subsystem"], name)] = metric{typ: optsType[typ], where: "declared at " + where()}
					}
				case *ast.CallExpr:
					if fn, ok := isProm(n.Fun); !ok || fn != "NewDesc" || len(n.Args) == 0 {
						return true
					}
					name, ok := stringLit(n.Args[0])
					if call, isCall := n.Args[0].(*ast.CallExpr); isCall {
						if fn, _ := isProm(call.Fun); fn == "BuildFQName" && len(call.Args) == 3 {
							ns, ok1 := stringLit(call.Args[0])
							sub, ok2 := stringLit(call.Args[1])
							nm, ok3 := stringLit(call.Args[2])
							name, ok = prometheus.BuildFQName(ns, sub, nm), ok1 && ok2 && ok3
						}
					}
					if !ok {
						t.Errorf("%s: the metric name is not a string literal, so docs/metrics.md cannot be checked against it", where())
						return true
					}
					got[name] = metric{where: "declared at " + where()}
				}
				return true
			})
		}
	}
	return got
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var (
	metricName = regexp.MustCompile(`\bdownshift_[a-z0-9_]+`)
	// A table row: | `name` | type | `label`, `label` | unit |
	docRow     = regexp.MustCompile("^\\| `(downshift_[a-z0-9_]+)` \\|([^|]*)\\|([^|]*)\\|")
	docSection = regexp.MustCompile("^### `(downshift_[a-z0-9_]+)`$")
	backticked = regexp.MustCompile("`([^`]+)`")
)

type mention struct {
	name string
	line int
}

// readMetricsDoc returns docs/metrics.md's table rows and sections by metric, and every
// metric name it mentions anywhere.
func readMetricsDoc(t *testing.T) (rows map[string]metric, sections map[string]bool, mentions []mention) {
	t.Helper()
	raw, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, sections = map[string]metric{}, map[string]bool{}
	for i, line := range strings.Split(string(raw), "\n") {
		where := metricsDoc + ":" + strconv.Itoa(i+1)
		for _, name := range metricName.FindAllString(line, -1) {
			mentions = append(mentions, mention{name, i + 1})
		}
		if m := docSection.FindStringSubmatch(line); m != nil {
			if sections[m[1]] {
				t.Errorf("%s: a second section for %s", where, m[1])
			}
			sections[m[1]] = true
		}
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("%s: a second row for %s", where, m[1])
		}
		var labels []string
		for _, l := range backticked.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		rows[m[1]] = metric{typ: strings.TrimSpace(m[2]), labels: labels, where: where}
	}
	if len(rows) < 20 {
		t.Fatalf("%s: only %d metric rows found", metricsDoc, len(rows))
	}
	return rows, sections, mentions
}

// isDocumented reports whether name is a documented metric, or one of the series
// (_bucket, _sum, _count) of a documented histogram or summary.
func isDocumented(name string, rows map[string]metric) bool {
	if _, ok := rows[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if r, found := rows[base]; ok && found && (r.typ == "histogram" || (r.typ == "summary" && suffix != "_bucket")) {
			return true
		}
	}
	return false
}

// balanced reports whether e's brackets pair up (a cheap guard against a broken query;
// the module has no PromQL parser).
func balanced(e string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	quoted := false
	for _, r := range e {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !quoted
}

// recordingRegistry is a registry that remembers what was registered, so that the test
// can Describe every collector.
type recordingRegistry struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

type discardCalls struct{}

func (discardCalls) InsertCalls(context.Context, []store.Call) error { return nil }

type fixedPolicies struct{ s *policy.Snapshot }

func (p fixedPolicies) Snapshot() *policy.Snapshot { return p.s }

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Inputs        []grafanaInput `json:"__inputs"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type grafanaVariable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// query is the variable's query: a string, or (as Grafana 10 exports a Prometheus
// query variable) an object holding it.
func (v grafanaVariable) query(t *testing.T) string {
	if len(v.Query) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		t.Errorf("variable %s: query %s is neither a string nor an object", v.Name, v.Query)
	}
	return o.Query
}

type grafanaInput struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int               `json:"id"`
	Type       string            `json:"type"`
	Title      string            `json:"title"`
	Datasource grafanaDatasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Datasource grafanaDatasource `json:"datasource"`
		Expr       string            `json:"expr"`
		RefID      string            `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}
