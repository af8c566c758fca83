package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/textfmt"
)

// node is an element of the page, as encoding/xml reads it: the page is written to be
// well-formed XML so that its structure can be checked without an HTML parser.
type node struct {
	Name     string
	Attr     map[string]string
	Children []*node
	Text     string // all text inside, children's included
}

func parsePage(t *testing.T, page []byte) *node {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(page))
	dec.Strict = true
	root := &node{Name: "#document"}
	stack := []*node{root}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the page is not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{Name: tok.Name.Local, Attr: map[string]string{}}
			for _, a := range tok.Attr {
				n.Attr[a.Name.Local] = a.Value
			}
			top := stack[len(stack)-1]
			top.Children = append(top.Children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, n := range stack {
				n.Text += string(tok)
			}
		}
	}
	return root
}

// find returns the elements under n (n included) for which ok holds, in order.
func (n *node) find(ok func(*node) bool) []*node {
	var out []*node
	if ok(n) {
		out = append(out, n)
	}
	for _, c := range n.Children {
		out = append(out, c.find(ok)...)
	}
	return out
}

func named(name string) func(*node) bool { return func(n *node) bool { return n.Name == name } }

func (n *node) attrFloat(t *testing.T, name string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(n.Attr[name], 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", n.Name, name, n.Attr[name], err)
	}
	return f
}

func writePage(t *testing.T, r *Report) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("DOWNSHIFT_REPORT_HTML"); dir != "" { // to look at it in a browser
		os.WriteFile(dir, b.Bytes(), 0o644)
	}
	return b.Bytes()
}

func TestHTMLReportStructureAndFigures(t *testing.T) {
	r := build(t, fixtureInput())
	page := writePage(t, r)
	doc := parsePage(t, page)

	titles := doc.find(named("title"))
	if len(titles) == 0 || !strings.Contains(titles[0].Text, "workloads") {
		t.Fatalf("no page <title>")
	}
	if html := doc.find(named("html")); len(html) != 1 || html[0].Attr["lang"] != "en" {
		t.Errorf("<html lang> missing")
	}

	svgs := doc.find(named("svg"))
	if len(svgs) != 2 {
		t.Fatalf("%d charts, want 2", len(svgs))
	}
	for i, svg := range svgs {
		if svg.Attr["role"] != "img" || len(svg.Attr["aria-label"]) < 20 || svg.Attr["viewBox"] == "" {
			t.Errorf("chart %d: role %q, aria-label %q, viewBox %q", i, svg.Attr["role"], svg.Attr["aria-label"], svg.Attr["viewBox"])
		}
		if len(svg.Children) == 0 || svg.Children[0].Name != "title" || svg.Children[0].Text != svg.Attr["aria-label"] {
			t.Errorf("chart %d does not start with a <title> matching its aria-label", i)
		}
	}

	// The bar chart: one bar per workload, widths in proportion to cost share, the
	// label and the share written beside each.
	bars := svgs[0].find(func(n *node) bool { return n.Name == "rect" })
	if len(bars) != len(r.Workloads) {
		t.Fatalf("%d bars for %d workloads", len(bars), len(r.Workloads))
	}
	groups := svgs[0].find(func(n *node) bool { return n.Name == "g" })
	w0 := bars[0].attrFloat(t, "width")
	for i, w := range r.Workloads {
		width := bars[i].attrFloat(t, "width")
		if want := w0 * w.CostShare / r.Workloads[0].CostShare; math.Abs(width-want) > 1 {
			t.Errorf("bar %d (%s) is %v wide, want %.1f for share %v", i, w.ID, width, want, w.CostShare)
		}
		if g := groups[i].Text; !strings.Contains(g, textfmt.Cell(w.Label, 36)) || !strings.Contains(g, textfmt.Pct1(w.CostShare)) {
			t.Errorf("bar %d text %q lacks the label %q or share %s", i, g, w.Label, textfmt.Pct1(w.CostShare))
		}
		if got, want := bars[i].Attr["class"], band(w.Readiness, ReadyThreshold); got != want {
			t.Errorf("bar %d (readiness %d) has class %q, want %q", i, w.Readiness, got, want)
		}
	}
	for _, axis := range []string{"share of recorded cost", "Share of recorded cost, by workload"} {
		if !strings.Contains(svgs[0].Text, axis) {
			t.Errorf("bar chart lacks %q", axis)
		}
	}

	// The scatter: one point per workload, across by readiness, up by monthly cost.
	pts := svgs[1].find(named("circle"))
	if len(pts) != len(r.Workloads) {
		t.Fatalf("%d points for %d workloads", len(pts), len(r.Workloads))
	}
	left, right := float64(plotLeft), float64(chartWidth-plotRight)
	bottom := float64(plotTop + plotHeight)
	for i, w := range r.Workloads {
		cx, cy := pts[i].attrFloat(t, "cx"), pts[i].attrFloat(t, "cy")
		if want := left + (right-left)*float64(w.Readiness)/100; math.Abs(cx-want) > 0.1 {
			t.Errorf("point %s at x %v, want %v for readiness %d", w.ID, cx, want, w.Readiness)
		}
		if cy > bottom || cy < plotTop {
			t.Errorf("point %s at y %v, outside the plot", w.ID, cy)
		}
	}
	// Higher cost is higher up.
	if pts[0].attrFloat(t, "cy") >= pts[len(pts)-1].attrFloat(t, "cy") {
		t.Errorf("the costliest workload is not above the cheapest")
	}
	for _, axis := range []string{"SLM readiness (0-100)", "monthly cost (USD)"} {
		if !strings.Contains(svgs[1].Text, axis) {
			t.Errorf("scatter lacks the axis title %q", axis)
		}
	}

	// The table: column headers, one row per workload with its figures.
	tables := doc.find(named("table"))
	if len(tables) != 1 {
		t.Fatalf("%d tables", len(tables))
	}
	heads := tables[0].find(func(n *node) bool { return n.Name == "th" && n.Attr["scope"] == "col" })
	if len(heads) < 15 {
		t.Errorf("%d column headers", len(heads))
	}
	if len(tables[0].find(named("caption"))) != 1 {
		t.Errorf("table without a caption")
	}
	rows := tables[0].find(named("tbody"))[0].find(named("tr"))
	if len(rows) != len(r.Workloads) {
		t.Fatalf("%d rows for %d workloads", len(rows), len(r.Workloads))
	}
	for i, w := range r.Workloads {
		text := rows[i].Text
		for _, want := range []string{w.Label, w.ID, fmt.Sprint(w.Calls), money(w.CostUSD), textfmt.Pct1(w.CostShare),
			fmt.Sprint(w.Readiness), millis(w.LatencyP95MS), money(w.Savings.MonthlyUSD), w.Savings.Candidate} {
			if !strings.Contains(text, want) {
				t.Errorf("row %d (%s) lacks %q: %q", i, w.ID, want, text)
			}
		}
	}

	// Every reason is written out.
	for _, w := range r.Workloads {
		for _, reason := range w.Reasons {
			if !strings.Contains(doc.Text, reason.Text) {
				t.Errorf("reason %q of %s missing", reason.Text, w.ID)
			}
		}
	}
	for _, want := range []string{money(r.CostUSD), money(r.MonthlyCostUSD), money(r.ReadyMonthlySavingsUSD), "nano-a, nano-b"} {
		if !strings.Contains(doc.Text, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestHTMLReportIsSelfContainedAndEscaped(t *testing.T) {
	page := writePage(t, build(t, fixtureInput()))
	doc := parsePage(t, page)
	for _, n := range doc.find(func(*node) bool { return true }) {
		if n.Name == "script" || n.Name == "link" || n.Name == "img" || n.Name == "iframe" {
			t.Errorf("the page has a <%s>", n.Name)
		}
		for _, a := range []string{"src", "href"} {
			if v, ok := n.Attr[a]; ok {
				t.Errorf("<%s %s=%q> refers to something outside the page", n.Name, a, v)
			}
		}
	}
	for _, s := range []string{"http:", "https:", "url(", "@import"} {
		if bytes.Contains(page, []byte(s)) {
			t.Errorf("the page contains %q", s)
		}
	}
	// The label with markup characters comes through as text, not markup.
	if bytes.Contains(page, []byte("<fields>")) {
		t.Errorf("a label's <fields> was written as markup")
	}
	if !strings.Contains(doc.Text, `extract order <fields> & "ship"`) {
		t.Errorf("the escaped label does not read back as written")
	}
}

func TestHTMLChartsGroupWorkloadsBeyondTwenty(t *testing.T) {
	var calls []Call
	for i := range 30 {
		for range i + 1 {
			calls = append(calls, Call{ID: fmt.Sprintf("c%d", len(calls)), WorkloadID: fmt.Sprintf("w%02d", i),
				CostUSD: 0.01, Status: 200, Output: OutputText, StartedAt: start})
		}
	}
	r := build(t, Input{Calls: calls, Now: now})
	doc := parsePage(t, writePage(t, r))
	svgs := doc.find(named("svg"))
	if bars := svgs[0].find(named("rect")); len(bars) != maxBars {
		t.Errorf("%d bars for 30 workloads, want %d", len(bars), maxBars)
	}
	if !strings.Contains(svgs[0].Text, "11 other workloads") {
		t.Errorf("the last bar does not gather the other 11 workloads")
	}
	if pts := svgs[1].find(named("circle")); len(pts) != 30 {
		t.Errorf("%d points, want one per workload", len(pts))
	}
	if tags := svgs[1].find(func(n *node) bool { return n.Name == "text" && strings.HasPrefix(n.Text, "w") }); len(tags) != maxPointTag {
		t.Errorf("%d points named, want the %d costliest", len(tags), maxPointTag)
	}
}

func TestAxisMoney(t *testing.T) {
	for _, tc := range []struct {
		v, step float64
		want    string
	}{
		{0, 0.25, "$0.00"}, {0.75, 0.25, "$0.75"}, {1, 0.25, "$1.00"},
		{0, 500, "$0"}, {1500, 500, "$1,500"}, {0.0005, 0.0005, "$0.0005"}, {2.5, 0.5, "$2.50"},
	} {
		if got := axisMoney(tc.v, tc.step); got != tc.want {
			t.Errorf("axisMoney(%v, %v) = %q, want %q", tc.v, tc.step, got, tc.want)
		}
	}
}
