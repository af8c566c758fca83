package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func build(t *testing.T, in Input) *Report {
	t.Helper()
	r, err := Build(in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return r
}

func byID(t *testing.T, r *Report, id string) *Workload {
	t.Helper()
	for i := range r.Workloads {
		if r.Workloads[i].ID == id {
			return &r.Workloads[i]
		}
	}
	t.Fatalf("no workload %q in %v", id, ids(r))
	return nil
}

func ids(r *Report) []string {
	var out []string
	for _, w := range r.Workloads {
		out = append(out, w.ID)
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestBuildGroupsByAssignmentThenWorkloadIDThenTag(t *testing.T) {
	r := build(t, fixtureInput())
	// Ordered by cost: book 0.22, chat 17 x 0.0102, extract 0.069, unassigned 0.0015.
	want := []string{"w-book", "support-chat", "w-extract", Unassigned}
	if got := ids(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("workloads = %v, want %v (an Info without calls is left out)", got, want)
	}
	for id, n := range map[string]int{"w-book": 40, "w-extract": 30, "support-chat": 20, Unassigned: 5} {
		if w := byID(t, r, id); w.Calls != n {
			t.Errorf("%s: %d calls, want %d", id, w.Calls, n)
		}
	}
	if w := byID(t, r, "support-chat"); w.Label != "support-chat" {
		t.Errorf("a workload without Info is labelled %q, want its id", w.Label)
	}
	// An assignment overrides the call's own WorkloadID.
	in := fixtureInput()
	in.Assign = map[string]string{"c000": "w-extract"}
	r = build(t, in)
	if byID(t, r, "w-book").Calls != 39 || byID(t, r, Unassigned).Calls != 35 {
		t.Errorf("Assign did not take precedence: book %d, unassigned %d", byID(t, r, "w-book").Calls, byID(t, r, Unassigned).Calls)
	}
}

func TestBuildFiguresOfOneWorkload(t *testing.T) {
	r := build(t, fixtureInput())
	w := byID(t, r, "w-book")
	if w.Label != "book reservation" || w.Representative != "c002" || !reflect.DeepEqual(w.Terms, []string{"book", "flight"}) {
		t.Errorf("Info not carried: %q %q %v", w.Label, w.Representative, w.Terms)
	}
	if math.Abs(w.CallShare-40.0/95) > 1e-4 {
		t.Errorf("CallShare = %v, want %v", w.CallShare, 40.0/95)
	}
	totalCost := 40*0.0055 + 30*0.0023 + 17*0.0102 + 5*0.0003
	if !near(r.CostUSD, totalCost) || !near(w.CostUSD, 0.22) || math.Abs(w.CostShare-0.22/totalCost) > 1e-4 {
		t.Errorf("cost %v (share %v) of %v, want 0.22 (%v) of %v", w.CostUSD, w.CostShare, r.CostUSD, 0.22/totalCost, totalCost)
	}
	if w.PromptTokens != 80000 || w.CompletionTokens != 2000 || w.CachedTokens != 40000 || w.MeanCompletionTokens != 50 {
		t.Errorf("tokens %d/%d/%d mean %v", w.PromptTokens, w.CompletionTokens, w.CachedTokens, w.MeanCompletionTokens)
	}
	// Latencies 400, 410, ..., 790 ms: nearest rank p50 is the 20th, p95 the 38th.
	if w.LatencyP50MS != 590 || w.LatencyP95MS != 770 {
		t.Errorf("latency p50 %v p95 %v, want 590 and 770", w.LatencyP50MS, w.LatencyP95MS)
	}
	if w.Outputs != (OutputMix{Answered: 40, ToolCall: 1}) {
		t.Errorf("outputs %+v", w.Outputs)
	}
	// A call naming a tool twice counts once for it.
	if want := []ToolUse{{"book_reservation", 30}, {"get_user_details", 12}}; !reflect.DeepEqual(w.Tools, want) {
		t.Errorf("tools %v, want %v", w.Tools, want)
	}
	if w.MaxToolsOffered != 14 || w.Errors != 0 || w.ErrorRate != 0 {
		t.Errorf("offered %d errors %d rate %v", w.MaxToolsOffered, w.Errors, w.ErrorRate)
	}
	if want := []ModelUse{{"meta/llama-3.3-70b-instruct", 40}}; !reflect.DeepEqual(w.Models, want) {
		t.Errorf("models %v", w.Models)
	}
	if w.DiversitySample != 40 || w.PromptDiversity <= 0 || w.PromptDiversity >= 0.5 {
		t.Errorf("diversity %v over %d prompts: one template should be well under 0.5", w.PromptDiversity, w.DiversitySample)
	}

	chat := byID(t, r, "support-chat")
	if chat.Errors != 3 || !near(chat.ErrorRate, 0.15) || chat.MeanCompletionTokens != 900 {
		t.Errorf("chat: errors %d rate %v mean answer %v; want 3, 0.15, 900 (failed calls left out)", chat.Errors, chat.ErrorRate, chat.MeanCompletionTokens)
	}
	if chat.Outputs != (OutputMix{Answered: 17, Text: 1}) {
		t.Errorf("chat outputs %+v: failed calls are not in the mix", chat.Outputs)
	}
	ex := byID(t, r, "w-extract")
	if ex.Outputs != (OutputMix{Answered: 30, JSON: 0.9, Text: 0.1}) || len(ex.Tools) != 0 {
		t.Errorf("extract outputs %+v tools %v", ex.Outputs, ex.Tools)
	}

	var shares, costShares float64
	for _, w := range r.Workloads {
		shares += w.CallShare
		costShares += w.CostShare
	}
	if math.Abs(shares-1) > 1e-3 || math.Abs(costShares-1) > 1e-3 {
		t.Errorf("shares add up to %v and %v, want 1", shares, costShares)
	}
}

func TestSavingsUseEachWorkloadsCheapestCandidate(t *testing.T) {
	r := build(t, fixtureInput())
	if r.SpanDays != 7 || math.Abs(r.MonthFactor-30.0/7) > 1e-4 {
		t.Fatalf("span %v days, factor %v; want 7 and 30/7", r.SpanDays, r.MonthFactor)
	}
	factor := 30.0 / 7
	for _, tc := range []struct {
		id, candidate string
		cost          float64 // the workload's tokens at the candidate's prices
		recorded      float64
	}{
		// 80k prompt, 2k completion: nano-a 0.0040+0.0008 beats nano-b 0.0080+0.0004.
		{"w-book", "nano-a", 0.0048, 0.22},
		// 10k prompt, 15.3k completion: nano-b 0.0010+0.00306 beats nano-a 0.0005+0.00612.
		{"support-chat", "nano-b", 0.00406, 17 * 0.0102},
	} {
		s := byID(t, r, tc.id).Savings
		if s.Candidate != tc.candidate || s.Note != "" {
			t.Errorf("%s: candidate %q (note %q), want %s", tc.id, s.Candidate, s.Note, tc.candidate)
		}
		if math.Abs(s.CurrentMonthlyUSD-tc.recorded*factor) > 1e-6 || math.Abs(s.CandidateMonthlyUSD-tc.cost*factor) > 1e-6 ||
			math.Abs(s.MonthlyUSD-(tc.recorded-tc.cost)*factor) > 1e-6 {
			t.Errorf("%s: savings %+v, want current %v candidate %v", tc.id, s, tc.recorded*factor, tc.cost*factor)
		}
	}
	// Ready savings add up the ready workloads' positive savings only.
	var ready float64
	for _, w := range r.Workloads {
		if w.Readiness >= ReadyThreshold && w.Savings.MonthlyUSD > 0 {
			ready += w.Savings.MonthlyUSD
		}
	}
	if ready == 0 || !near(r.ReadyMonthlySavingsUSD, ready) || r.ReadyMonthlySavingsUSD >= r.MonthlyCostUSD {
		t.Errorf("ready savings %v, want %v (> 0, < monthly cost %v)", r.ReadyMonthlySavingsUSD, ready, r.MonthlyCostUSD)
	}
}

func TestSavingsNotes(t *testing.T) {
	in := fixtureInput()
	in.Candidates = nil
	r := build(t, in)
	for _, w := range r.Workloads {
		if w.Savings.Note != NoteNoCandidate || w.Savings.Candidate != "" || w.Savings.MonthlyUSD != 0 || w.Savings.CurrentMonthlyUSD == 0 {
			t.Errorf("%s without candidates: %+v", w.ID, w.Savings)
		}
	}
	if r.ReadyMonthlySavingsUSD != 0 {
		t.Errorf("ready savings %v without candidates", r.ReadyMonthlySavingsUSD)
	}

	in = fixtureInput()
	in.Candidates = []Candidate{{Name: "local-free"}}
	for i := range in.Calls {
		if in.Calls[i].Workload == "support-chat" {
			in.Calls[i].CostUSD = 0
		}
	}
	r = build(t, in)
	if s := byID(t, r, "w-book").Savings; s.Note != NoteFreeCandiate || s.MonthlyUSD != s.CurrentMonthlyUSD {
		t.Errorf("free candidate: %+v", s)
	}
	if s := byID(t, r, "support-chat").Savings; s.Note != NoteNoCost || s.MonthlyUSD != 0 {
		t.Errorf("unpriced reference: %+v", s)
	}
}

func TestMonthlyFiguresExtrapolateFromTheObservedSpan(t *testing.T) {
	calls, _ := fixture() // 95 calls 90 minutes apart: 141 hours
	in := Input{Calls: calls, Now: now}
	r := build(t, in)
	span := 94 * 90 * time.Minute
	if !r.From.Equal(start) || !r.To.Equal(start.Add(span)) {
		t.Errorf("window %v to %v, want the first and last call", r.From, r.To)
	}
	if want := 30 * 24 * time.Hour.Hours() / span.Hours(); math.Abs(r.MonthFactor-want) > 1e-4 {
		t.Errorf("factor %v, want %v", r.MonthFactor, want)
	}
	// Ten minutes of traffic count as one day's.
	in.Calls = calls[:5]
	r = build(t, in)
	if r.SpanDays != 1 || r.MonthFactor != 30 || !near(r.MonthlyCostUSD, 30*5*0.0055) {
		t.Errorf("short span: %v days x%v, monthly %v", r.SpanDays, r.MonthFactor, r.MonthlyCostUSD)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	for name, in := range map[string]Input{
		"negative price":    {Candidates: []Candidate{{Name: "x", InputPerMTok: -1}}},
		"NaN price":         {Candidates: []Candidate{{Name: "x", OutputPerMTok: math.NaN()}}},
		"unnamed candidate": {Candidates: []Candidate{{InputPerMTok: 1}}},
		"window backwards":  {From: window[1], To: window[0]},
	} {
		if _, err := Build(in); err == nil {
			t.Errorf("%s: Build succeeded", name)
		} else if strings.Contains(name, "price") && !errors.Is(err, errBadPrice) {
			t.Errorf("%s: err %v does not wrap errBadPrice", name, err)
		}
	}
}

func TestEmptyReport(t *testing.T) {
	r := build(t, Input{Now: now, Candidates: candidates})
	if r.Calls != 0 || len(r.Workloads) != 0 || r.SpanDays != 1 {
		t.Errorf("empty report: %+v", r)
	}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"table": func(b *bytes.Buffer) error { return WriteTable(b, r) },
		"json":  func(b *bytes.Buffer) error { return WriteJSON(b, r) },
		"html":  func(b *bytes.Buffer) error { return WriteHTML(b, r) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil || b.Len() == 0 {
			t.Errorf("%s of an empty report: %v (%d bytes)", name, err, b.Len())
		}
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil || !strings.Contains(b.String(), `"workloads": []`) {
		t.Errorf("empty JSON has no empty workloads list: %s", b.String())
	}
}

func TestStoreWorkloadsCarryTheReport(t *testing.T) {
	r := build(t, fixtureInput())
	ws, err := r.StoreWorkloads()
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != len(r.Workloads) {
		t.Fatalf("%d store workloads for %d", len(ws), len(r.Workloads))
	}
	book := ws[0]
	if book.ID != "w-book" || book.Label != "book reservation" || book.Calls != 40 || book.Representative != "c002" ||
		book.Readiness != r.Workloads[0].Readiness || !reflect.DeepEqual(book.Tools, []string{"book_reservation", "get_user_details"}) ||
		!reflect.DeepEqual(book.OutputTypes, map[string]float64{"tool_call": 1, "json": 0, "text": 0}) {
		t.Errorf("store workload %+v", book)
	}
	var back Workload
	if err := json.Unmarshal(book.Stats, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r.Workloads[0]) {
		t.Errorf("Stats do not decode to the report entry:\n got %+v\nwant %+v", back, r.Workloads[0])
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is meant):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, build(t, fixtureInput())); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", b.Bytes())

	in := fixtureInput()
	in.Candidates = nil
	b.Reset()
	if err := WriteTable(&b, build(t, in)); err != nil {
		t.Fatal(err)
	}
	golden(t, "report_no_candidates.txt", b.Bytes())
}

func TestJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, build(t, fixtureInput())); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	// The JSON decodes back to the same report.
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if r := build(t, fixtureInput()); !reflect.DeepEqual(&back, r) {
		t.Errorf("JSON does not decode back to the report")
	}
}
