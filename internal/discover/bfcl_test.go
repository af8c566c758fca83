package discover

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// bfclCategories are the single-turn BFCL v4 categories the mix draws from.
var bfclCategories = []string{"simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
	"parallel_multiple", "irrelevance", "live_simple", "live_multiple"}

func dataDir(t testing.TB) string {
	dir := os.Getenv("DOWNSHIFT_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data")
	}
	if _, err := os.Stat(filepath.Join(dir, "bfcl")); err != nil {
		t.Skipf("BFCL not found under %s (set DOWNSHIFT_DATA): %v", dir, err)
	}
	return dir
}

// bfclCalls reads a BFCL category as calls: the first turn's messages and the
// functions as tools make the request; the first allowed value of each ground-truth
// argument makes the reference's tool calls (irrelevance rows: a text answer).
func bfclCalls(t testing.TB, dir, category string) []Call {
	t.Helper()
	answers := map[string][]map[string]map[string][]any{}
	if f, err := os.Open(filepath.Join(dir, "bfcl", "possible_answer", "BFCL_v4_"+category+".json")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var row struct {
				ID          string                        `json:"id"`
				GroundTruth []map[string]map[string][]any `json:"ground_truth"`
			}
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatal(err)
			}
			answers[row.ID] = row.GroundTruth
		}
		f.Close()
	}
	f, err := os.Open(filepath.Join(dir, "bfcl", "BFCL_v4_"+category+".json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []Call
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var row struct {
			ID       string              `json:"id"`
			Question [][]json.RawMessage `json:"question"`
			Function []json.RawMessage   `json:"function"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		tools := make([]map[string]any, len(row.Function))
		for i, fn := range row.Function {
			tools[i] = map[string]any{"type": "function", "function": fn}
		}
		req, err := json.Marshal(map[string]any{"model": "gpt-4o", "messages": row.Question[0], "tools": tools})
		if err != nil {
			t.Fatal(err)
		}
		answer := openai.Message{Role: "assistant", Content: openai.TextContent("None of the functions can do that.")}
		if gt, ok := answers[row.ID]; ok {
			answer = openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}}
			for i, call := range gt {
				for name, args := range call {
					first := map[string]any{}
					for k, vs := range args {
						if len(vs) > 0 {
							first[k] = vs[0]
						}
					}
					b, _ := json.Marshal(first)
					answer.ToolCalls = append(answer.ToolCalls, openai.ToolCall{ID: fmt.Sprint("call_", i), Type: "function",
						Function: openai.FunctionCall{Name: name, Arguments: string(b)}})
				}
			}
		}
		gt, err := json.Marshal(answer)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, Call{ID: "bfcl/" + row.ID, Request: req, GroundTruth: gt})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return calls
}

// taskFloors are the least agreement with the BFCL categories the mix test accepts,
// with the action (false) and from the request alone (true).
var taskFloors = map[bool]Agreement{
	false: {Purity: 0.75, VMeasure: 0.70},
	true:  {Purity: 0.50, VMeasure: 0.45},
}

// TestQualityBFCLAndTauBench mixes BFCL categories with the tau-bench calls and
// measures whether workloads separate by source and by task (BFCL category; all of
// tau-bench is one task here). Sources must never share a workload, and agreement with
// the categories must stay above taskFloors.
func TestQualityBFCLAndTauBench(t *testing.T) {
	dir := dataDir(t)
	tau, _ := tauCalls(t)
	calls := append([]Call(nil), tau...)
	source := make([]string, 0, len(tau))
	category := make([]string, 0, len(tau))
	for range tau {
		source = append(source, "taubench")
		category = append(category, "taubench")
	}
	sizes := []string{}
	for _, cat := range bfclCategories {
		cs := bfclCalls(t, dir, cat)
		sizes = append(sizes, fmt.Sprintf("%s %d", cat, len(cs)))
		calls = append(calls, cs...)
		for range cs {
			source = append(source, "bfcl")
			category = append(category, cat)
		}
	}
	report := &strings.Builder{}
	fmt.Fprintf(report, "mix: tau-bench %d + BFCL %s = %d calls\n", len(tau), strings.Join(sizes, ", "), len(calls))
	for _, requestOnly := range []bool{false, true} {
		res, err := Discover(context.Background(), calls, Options{Seed: 1, RequestOnly: requestOnly})
		if err != nil {
			t.Fatal(err)
		}
		got := clustersOf(res, calls)
		bySource, err := Compare(source, got)
		if err != nil {
			t.Fatal(err)
		}
		// Task separation is measured within BFCL, where the categories are.
		var bl, bc []string
		for i := range calls {
			if source[i] == "bfcl" {
				bl, bc = append(bl, category[i]), append(bc, got[i])
			}
		}
		byTask, err := Compare(bl, bc)
		if err != nil {
			t.Fatal(err)
		}
		mode := "request+action"
		if requestOnly {
			mode = "request only"
		}
		fmt.Fprintf(report, "%s: %d workloads\n  vs source:          %s\n  vs BFCL category:   %s\n", mode, len(res.Workloads), fmtAgreement(bySource), fmtAgreement(byTask))
		if !requestOnly {
			// What each BFCL workload holds, by category.
			comp := map[string]map[string]int{}
			for i := range calls {
				if source[i] == "bfcl" {
					if comp[got[i]] == nil {
						comp[got[i]] = map[string]int{}
					}
					comp[got[i]][category[i]]++
				}
			}
			for _, w := range res.Workloads {
				if c := comp[w.ID]; c != nil {
					fmt.Fprintf(report, "    %-40.40s %v\n", w.Label, counts(c))
				}
			}
		}
		if bySource.Purity != 1 {
			t.Errorf("%s: a workload mixes tau-bench and BFCL calls (purity vs source %.3f)", mode, bySource.Purity)
		}
		// Floors a little under what pooling by task shape reaches (purity 0.792, V 0.742
		// with the action; 0.555, 0.493 from the request alone), so that a regression
		// fails; one pool of all one-off templates scores 0.496, 0.302 and 0.407, 0.098.
		floor := taskFloors[requestOnly]
		if byTask.Purity < floor.Purity || byTask.VMeasure < floor.VMeasure {
			t.Errorf("%s: by BFCL category purity %.3f, V-measure %.3f; want at least %.2f, %.2f",
				mode, byTask.Purity, byTask.VMeasure, floor.Purity, floor.VMeasure)
		}
	}
	t.Log("\n" + report.String())
}
