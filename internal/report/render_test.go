package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

func sampleReport() Report {
	r := Build(sampleFilter(), sampleSums(), samplePolicies())
	r.At = day.Add(25 * time.Hour)
	return r
}

// cells splits the table line that starts with name into its cells (tabwriter pads
// them with two spaces or more; a cell never holds two spaces in a row).
func cells(t *testing.T, table, name string) []string {
	t.Helper()
	for line := range strings.SplitSeq(table, "\n") {
		if strings.HasPrefix(line, name+"  ") {
			return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		}
	}
	t.Fatalf("no line for %q in\n%s", name, table)
	return nil
}

func TestWriteTableShowsTheFiguresPerWorkloadAndTotal(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, sampleReport()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	main, detail, _ := strings.Cut(out, "how the calls were answered:")
	want := map[string][]string{
		//          POLICY                 CALLS MOVED        ESCALATED    AGREEMENT   PAID      REFERENCE  SAVED               REF P50  CAND P50 LATENCY
		"billing": {"billing", "canary mid-3b (v5)", "10", "4 (40.0%)", "0 (0.0%)", "0.95 (4)", "$0.02", "$0.10", "$0.08 (80.0%)", "900ms", "300ms", "−600ms"},
		"wl-abc":  {"wl-abc", "serve small-8b (v3)", "5", "3 (60.0%)", "2 (40.0%)", "0.60 (1)", "$0.029", "$0.046*", "$0.017* (37.0%)", "-", "300ms", "-"},
		"support": {"support", "shadow small-8b (v1)", "4", "0 (0.0%)", "-", "0.45 (2)", "$0.0425", "$0.04", "-$0.0025 (-6.2%)", "750ms", "-", "-"},
		"triage":  {"triage", "-", "2", "1 (50.0%)", "0 (0.0%)", "-", "$0.001", "$0.002", "$0.001 (50.0%)", "500ms", "700ms", "+200ms"},
		"quiet":   {"quiet", "canary tiny-1b (v2)", "0", "-", "-", "-", "$0", "$0", "$0", "-", "-", "-"},
		"TOTAL":   {"TOTAL", "-", "23", "8 (34.8%)", "2 (20.0%)", "0.76 (7)", "$0.102", "$0.198*", "$0.0955* (48.2%)", "-", "-", "−440ms"},
	}
	for name, w := range want {
		if got := cells(t, main, name); !slices.Equal(got, w) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, w)
		}
	}
	//                                     REFERENCE CANDIDATE ESCALATED UNDER SHADOWED VERIFIED COMPARED PASSED GUARD ERRORS ESC P50 FIRST LAST
	if got, w := cells(t, detail, "wl-abc"), []string{"wl-abc", "0", "3", "2", "5", "0", "1", "1", "0", "2", "1", "2.00s",
		"2026-11-27 20:00 UTC", "2026-11-28 11:00 UTC"}; !slices.Equal(got, w) {
		t.Errorf("wl-abc detail:\n got %q\nwant %q", got, w)
	}
	if got := cells(t, detail, "TOTAL"); got[1] != "13" || got[3] != "2" || got[4] != "19" || got[9] != "2" || got[12] != "2026-11-27 12:00 UTC" {
		t.Errorf("total detail %q", got)
	}
	for _, s := range []string{
		"2026-11-27 12:00 UTC to 2026-11-28 12:00 UTC: 23 calls",
		"* 2 of 23 reference costs are estimates",
		"2 of 23 calls had an answer simulated by downshift sim",
		"weighted by their calls moved",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the table does not say %q:\n%s", s, out)
		}
	}
	// The workloads' order is the report's: the most calls first.
	if i, j := strings.Index(main, "\nbilling "), strings.Index(main, "\nquiet "); i < 0 || j < i {
		t.Errorf("billing (10 calls) does not come before quiet (none):\n%s", main)
	}
}

func TestWriteTableSaysNothingOfEstimatesOrSimulationWhenThereAreNone(t *testing.T) {
	sums := sampleSums()[:4] // wl-abc had both
	var buf bytes.Buffer
	if err := WriteTable(&buf, Build(store.SavingsFilter{}, sums, nil)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "estimate") || strings.Contains(out, "simulated") || strings.Contains(out, "*") {
		t.Errorf("notes without cause:\n%s", out)
	}
	if !strings.Contains(out, "savings of the gateway's calls, all recorded: 18 calls") {
		t.Errorf("period line:\n%s", out)
	}
}

func TestWriteTableOfNothing(t *testing.T) {
	var buf bytes.Buffer
	r := Build(store.SavingsFilter{Workload: "nope", Since: day}, nil, nil)
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	want := "savings of the gateway's calls of workload nope, since 2026-11-27 12:00 UTC\n" +
		"no gateway calls in this period, and no workload has a policy\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestWriteJSONRoundTrips(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the report:\n got %+v\nwant %+v", back, r)
	}
	// Absent figures are absent, not 0: quiet has no calls, so no shares.
	var raw struct {
		Workloads []map[string]any `json:"workloads"`
	}
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	quiet := raw.Workloads[len(raw.Workloads)-1]
	for _, k := range []string{"moved_share", "escalation_rate", "agreement", "saved_share", "latency_change_ns", "first"} {
		if _, ok := quiet[k]; ok {
			t.Errorf("quiet has %s: %v", k, quiet[k])
		}
	}
	if quiet["workload"] != "quiet" || quiet["mode"] != "canary" || quiet["calls"] != 0.0 {
		t.Errorf("quiet %v", quiet)
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

// descendants is every element inside e, at any depth.
func descendants(e *element) []*element {
	var out []*element
	for _, c := range e.inner {
		out = append(out, c)
		out = append(out, descendants(c)...)
	}
	return out
}

// texts is the text of each element inside e, in order.
func texts(e *element) []string {
	var out []string
	for _, c := range e.inner {
		out = append(out, c.text)
	}
	return out
}

func TestWriteHTMLIsSelfContainedAndEscaped(t *testing.T) {
	r := sampleReport()
	r.Workloads[0].Workload = `<script>alert("x")</script>`
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	all := readPage(t, buf.Bytes())
	if strings.Contains(page, "<script") {
		t.Error("the hostile workload name reached the page as markup")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("the hostile workload name is not on the page, escaped")
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
}

func TestWriteHTMLShowsTheTableTheCardsAndTheNotes(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, sampleReport()); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	all := readPage(t, buf.Bytes())

	rows := elementsOf(all, "tr", "workload")
	if len(rows) != 12 { // six workloads in each of the two tables
		t.Fatalf("%d workload rows, want 12", len(rows))
	}
	// wl-abc is second: its figures, and a bar 60 long for 60% moved.
	if got, want := texts(rows[1]), []string{"wl-abc", "serve small-8b (v3)", "5", "3 (60.0%)", "2 (40.0%)", "0.60 (1)",
		"$0.029", "$0.046*", "$0.017* (37.0%)", "-", "300ms", "-"}; !slices.Equal(got, want) {
		t.Errorf("wl-abc's row:\n got %q\nwant %q", got, want)
	}
	if bars := elementsOf(descendants(rows[1].inner[3]), "rect", "fill"); len(bars) != 1 || bars[0].attr["width"] != "60" {
		t.Errorf("wl-abc's moved bar: %+v", bars)
	}
	totals := elementsOf(all, "tr", "total")
	if len(totals) != 2 || texts(totals[0])[8] != "$0.0955* (48.2%)" || texts(totals[0])[11] != "−440ms" {
		t.Errorf("total rows: %d; first %q", len(totals), texts(totals[0]))
	}
	if loss := elementsOf(rows[2].inner, "td", "loss"); len(loss) != 1 || loss[0].text != "-$0.0025 (-6.2%)" {
		t.Errorf("support's loss is not marked: %q", texts(rows[2]))
	}
	var cards []string
	for _, c := range elementsOf(all, "div", "card") {
		cards = append(cards, c.inner[0].text+" "+c.inner[1].text)
	}
	if want := []string{"23 calls", "34.8% moved to a candidate", "20.0% escalation rate", "0.76 (7) agreement",
		"$0.0955* (48.2%) saved", "−440ms latency change (weighted)"}; !slices.Equal(cards, want) {
		t.Errorf("cards %q, want %q", cards, want)
	}
	if len(elementsOf(all, "p", "warning")) != 1 || !strings.Contains(page, "2 of 23 calls had an answer simulated by downshift sim") {
		t.Error("no warning that answers were simulated")
	}
	if !strings.Contains(page, "2 of 23 reference costs are estimates") || !strings.Contains(page, "2026-11-28 13:00:00 UTC") {
		t.Error("the note on estimates or the time of the report is missing")
	}
}

func TestWriteHTMLOfNothing(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, Build(store.SavingsFilter{}, nil, nil)); err != nil {
		t.Fatal(err)
	}
	all := readPage(t, buf.Bytes())
	if len(elementsOf(all, "table", "")) != 0 || !strings.Contains(buf.String(), "No gateway calls in this period") {
		t.Errorf("an empty report:\n%s", buf.String())
	}
}

func TestFormats(t *testing.T) {
	ms := func(d time.Duration) *time.Duration { return &d }
	for _, c := range []struct {
		d    *time.Duration
		want string
	}{{nil, "-"}, {ms(0), "0ms"}, {ms(-450 * time.Millisecond), "−450ms"}, {ms(1200 * time.Millisecond), "+1.20s"},
		{ms(4200 * time.Microsecond), "+4.2ms"}} {
		if got := latencyChange(c.d); got != c.want {
			t.Errorf("latencyChange(%v) = %q, want %q", deref(c.d), got, c.want)
		}
	}
}
