package eval

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostile is a candidate name that must come out as text wherever it is shown.
const hostile = `<script>alert("x")</script>`

// sampleBoard is a leaderboard with one of everything: a recommended row, a cheaper
// row under the bar, a row dearer than the reference, a free row with too many
// errors, a simulated answer and a judge verdict.
func sampleBoard() Leaderboard {
	rs := concat(
		scored("llama-3.1-8b", VariantZeroShot, 0.00012, repeat(0, 8, repeat(1, 92)...)...),
		scored("llama-3.1-8b", VariantInContext, 0.00019, repeat(0.5, 2, repeat(1, 98)...)...),
		scored(hostile, VariantZeroShot, 0.02, repeat(1, 100)...),
		scored("qwen-local", VariantZeroShot, 0, repeat(failed, 9, repeat(1, 91)...)...),
	)
	rs[0].Score = []byte(`{"simulated":true,"judge":{"score":6,"pass":true}}`)
	references := refs(100, 0.0098)
	for i := range references {
		references[i].TTFT = 300 * time.Millisecond
		if i%2 == 0 {
			references[i].Stratum = "lookup_order"
		}
	}
	return Build(Input{RunID: "run_1", SetID: "set_1", WorkloadID: "wl_7", Workload: "refund lookups",
		At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), References: references, Results: rs, Seed: 1, Threshold: 0.9})
}

func TestWriteTableShowsTheFiguresInRankOrder(t *testing.T) {
	lb := sampleBoard()
	var buf bytes.Buffer
	if err := WriteTable(&buf, lb); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	ci := func(r Row) string {
		return fmt.Sprintf("%.2f [%.2f, %.2f]", r.Quality, r.QualityCI.Lo, r.QualityCI.Hi)
	}
	// Each line, in order, must hold these figures.
	want := [][]string{
		{"refund lookups (wl_7)", "100 test calls", "run_1", "set_1", "2026-01-02 03:04 UTC"},
		{"RANK", "CANDIDATE", "VARIANT", "QUALITY [95% CI]", "PASS RATE [95% CI]", "ERRORS", "P50/P95", "TTFT P50", "COST/1K", "SAVING", "JUDGE"},
		{"-", "gpt-4o", "(reference, recorded)", "1.00", "1.00s/1.00s", "300ms", "$9.80"},
		{"1 ", hostile, "zero-shot", "1.00 [0.96, 1.00]", "100.0% [96.3%, 100.0%]", "$20.00", "-104.1%"},
		{"2 ", "llama-3.1-8b", "in-context", ci(lb.Rows[1]), "100.0% [96.3%, 100.0%]", "100ms/100ms", "$0.19", "98.1%"},
		{"3 ", "llama-3.1-8b", "zero-shot", ci(lb.Rows[2]), "92.0% [85.0%, 95.9%]", "$0.12", "98.8%", "6.0 (1)"},
		{"4 ", "qwen-local", "zero-shot", ci(lb.Rows[3]), "9 (9.0%)", "$0", "100.0%"},
		{fmt.Sprintf("recommendation: use llama-3.1-8b (in-context): quality %s ≥ 0.9, cost $0.19 per 1,000 calls vs $9.80 (−98.1%%)", ci(lb.Rows[1]))},
		{"not eligible:"},
		{hostile + " (zero-shot): costs $20.00 per 1,000 calls, not less than the reference's $9.80"},
		{"qwen-local (zero-shot): errors on 9.0% of calls (over 5%)"},
		{"note: answers marked simulated: 1 of 400 — the simulator invented or degraded them"},
	}
	lines := strings.Split(out, "\n")
	at := 0
	for _, figures := range want {
		found := false
		for ; at < len(lines); at++ {
			if containsInOrder(lines[at], figures) {
				found, at = true, at+1
				break
			}
		}
		if !found {
			t.Fatalf("no line (after the previous one) holds %q in order; table:\n%s", figures, out)
		}
	}
}

// containsInOrder reports whether line holds every figure, each after the last.
func containsInOrder(line string, figures []string) bool {
	for _, f := range figures {
		i := strings.Index(line, f)
		if i < 0 {
			return false
		}
		line = line[i+len(f):]
	}
	return true
}

func TestWriteTableKeepReferenceAndNoSimulation(t *testing.T) {
	lb := Build(Input{References: refs(20, 0.01), Results: scored("m", VariantZeroShot, 0.001, repeat(0.5, 20)...)})
	var buf bytes.Buffer
	if err := WriteTable(&buf, lb); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "recommendation: keep gpt-4o: no candidate's quality reaches 95% of the reference") {
		t.Errorf("no keep-reference line:\n%s", out)
	}
	for _, unwanted := range []string{"simulated", "JUDGE", "not eligible"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("table mentions %q though nothing calls for it:\n%s", unwanted, out)
		}
	}
}

func TestWriteJSONRoundTrips(t *testing.T) {
	lb := sampleBoard()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, lb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\n  \"run_id\": \"run_1\"") {
		t.Errorf("JSON is not indented:\n%.200s", buf.String())
	}
	var back Leaderboard
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, lb) {
		t.Errorf("round trip changed the leaderboard:\n got %+v\nwant %+v", back, lb)
	}
}

// element is one element of the page as encoding/xml reads it: the page is written
// to be well-formed XML, so its structure can be checked without an HTML parser.
type element struct {
	name  string
	attr  map[string]string
	text  string // the text directly inside
	inner []*element
}

func readPage(t *testing.T, page []byte) []*element {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(page))
	dec.Strict = true
	var all, open []*element
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
			e := &element{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				e.attr[a.Name.Local] = a.Value
			}
			if len(open) > 0 {
				open[len(open)-1].inner = append(open[len(open)-1].inner, e)
			}
			all = append(all, e)
			open = append(open, e)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			if len(open) > 0 {
				open[len(open)-1].text += string(tok)
			}
		}
	}
	if len(open) != 0 {
		t.Fatalf("%d elements left open", len(open))
	}
	return all
}

func elementsOf(all []*element, name, class string) []*element {
	var out []*element
	for _, e := range all {
		if e.name == name && (class == "" || slices.Contains(strings.Fields(e.attr["class"]), class)) {
			out = append(out, e)
		}
	}
	return out
}

func attrFloat(t *testing.T, e *element, name string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(e.attr[name], 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", e.name, name, e.attr[name], err)
	}
	return f
}

func TestWriteHTMLIsSelfContainedAndEscaped(t *testing.T) {
	lb := sampleBoard()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, lb); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	all := readPage(t, buf.Bytes())

	if strings.Contains(page, "<script") {
		t.Error("the hostile candidate name reached the page as markup")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("the hostile candidate name is not on the page, escaped")
	}
	for _, e := range all {
		for _, a := range []string{"src", "href"} {
			if v, ok := e.attr[a]; ok {
				t.Errorf("<%s %s=%q> loads from elsewhere; the page must be self-contained", e.name, a, v)
			}
		}
	}
	if n := len(elementsOf(all, "style", "")); n != 1 {
		t.Errorf("%d <style> elements, want the one inline", n)
	}

	rows := elementsOf(all, "tr", "recommended")
	if len(rows) != 2 { // the leaderboard and the by-stratum table
		t.Fatalf("%d recommended rows, want 2", len(rows))
	}
	if got := rows[0].inner[1].text; got != "llama-3.1-8b" || rows[0].inner[2].text != "in-context" {
		t.Errorf("recommended row is %q %q", got, rows[0].inner[2].text)
	}
	if len(elementsOf(all, "p", "warning")) != 1 || !strings.Contains(page, "answers marked simulated: 1 of 400") {
		t.Error("no warning that answers were simulated")
	}
	if !strings.Contains(page, "<th scope=\"col\">lookup_order</th>") || !strings.Contains(page, "<th scope=\"col\">text</th>") {
		t.Error("the by-stratum table lacks a column per stratum")
	}
}

func TestWriteHTMLChartHasOnePointPerRow(t *testing.T) {
	lb := sampleBoard()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, lb); err != nil {
		t.Fatal(err)
	}
	all := readPage(t, buf.Bytes())
	svgs := elementsOf(all, "svg", "")
	if len(svgs) != 1 {
		t.Fatalf("%d charts, want 1", len(svgs))
	}
	circles := elementsOf(all, "circle", "")
	if len(circles) != len(lb.Rows)+1 {
		t.Fatalf("%d points, want %d: one per row and the reference", len(circles), len(lb.Rows)+1)
	}
	if len(elementsOf(all, "circle", "reference")) != 1 || len(elementsOf(all, "circle", "recommended")) != 1 {
		t.Error("want exactly one reference point and one recommended point")
	}
	if len(elementsOf(all, "line", "bar")) != 1 {
		t.Error("want one threshold line")
	}
	// Points are the reference, then the rows in rank order. Cost goes across on a
	// log scale, so x grows with cost and every decade is the same width; the free
	// row sits left of the axis.
	costs := []float64{lb.Reference.CostPer1K}
	for _, r := range lb.Rows {
		costs = append(costs, r.CostPer1K)
	}
	order := make([]int, len(costs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(costs[a], costs[b]) })
	for k := 1; k < len(order); k++ {
		a, b := circles[order[k-1]], circles[order[k]]
		if attrFloat(t, a, "cx") >= attrFloat(t, b, "cx") {
			t.Errorf("cost %g is drawn at x=%s, not left of cost %g at x=%s", costs[order[k-1]], a.attr["cx"], costs[order[k]], b.attr["cx"])
		}
	}
	ticks := map[string]float64{}
	for _, e := range elementsOf(all, "text", "tick") {
		ticks[e.text] = attrFloat(t, e, "x")
	}
	d1, d2 := ticks["$1"]-ticks["$0.1"], ticks["$10"]-ticks["$1"]
	if d1 <= 0 || math.Abs(d1-d2) > 0.2 {
		t.Errorf("decades $0.1-$1 and $1-$10 are %g and %g wide; a log scale makes them equal", d1, d2)
	}
	if free := circles[4]; attrFloat(t, free, "cx") >= ticks["$0.1"] {
		t.Errorf("the free row is at x=%s, not left of the log axis", free.attr["cx"])
	}
	// Quality goes up: the reference (1) is higher than every row, and a whisker
	// spans each row's interval around its dot.
	for i, c := range circles[1:] {
		if attrFloat(t, c, "cy") < attrFloat(t, circles[0], "cy") {
			t.Errorf("row %d is drawn above the reference", i+1)
		}
	}
	for _, w := range elementsOf(all, "line", "whisker") {
		if attrFloat(t, w, "y1") < attrFloat(t, w, "y2") {
			t.Errorf("whisker drawn upside down: y1=%s y2=%s", w.attr["y1"], w.attr["y2"])
		}
	}
}

func TestWritersHandleAnEmptyLeaderboard(t *testing.T) {
	lb := Build(Input{})
	for name, write := range map[string]func(io.Writer, Leaderboard) error{"table": WriteTable, "json": WriteJSON, "html": WriteHTML} {
		var buf bytes.Buffer
		if err := write(&buf, lb); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if name == "html" {
			all := readPage(t, buf.Bytes())
			if n := len(elementsOf(all, "circle", "")); n != 1 {
				t.Errorf("empty leaderboard drew %d points, want the reference's", n)
			}
		}
	}
}
