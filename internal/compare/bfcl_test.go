package compare

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// bfclCategories are the Python AST categories whose possible answers the scorer must
// accept as ground truth.
var bfclCategories = []string{"simple_python", "multiple", "parallel", "parallel_multiple"}

type bfclRow struct {
	id       string
	expected []ExpectedCall
	required map[string][]string
	truth    []openai.ToolCall // the ground truth as a candidate would send it
}

func bfclDir(t testing.TB) string {
	dir := os.Getenv("DOWNSHIFT_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data")
	}
	dir = filepath.Join(dir, "bfcl")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("BFCL data not found at %s (set DOWNSHIFT_DATA to the folder holding bfcl/): %v", dir, err)
	}
	return dir
}

func readBFCL(t testing.TB, dir, category string) []bfclRow {
	t.Helper()
	name := "BFCL_v4_" + category + ".json"
	answers := map[string][]byte{}
	eachLine(t, filepath.Join(dir, "possible_answer", name), func(line []byte) {
		var a struct {
			ID          string          `json:"id"`
			GroundTruth json.RawMessage `json:"ground_truth"`
		}
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatal(err)
		}
		answers[a.ID] = a.GroundTruth
	})
	var rows []bfclRow
	eachLine(t, filepath.Join(dir, name), func(line []byte) {
		var q struct {
			ID       string `json:"id"`
			Function []struct {
				Name       string `json:"name"`
				Parameters struct {
					Required []string `json:"required"`
				} `json:"parameters"`
			} `json:"function"`
		}
		if err := json.Unmarshal(line, &q); err != nil {
			t.Fatal(err)
		}
		exp, err := ParseBFCLAnswer(answers[q.ID])
		if err != nil {
			t.Fatalf("%s: %v", q.ID, err)
		}
		req := map[string][]string{}
		for _, f := range q.Function {
			req[strings.ReplaceAll(f.Name, ".", "_")] = f.Parameters.Required
		}
		rows = append(rows, bfclRow{id: q.ID, expected: exp, required: req, truth: truthCalls(t, exp, req)})
	})
	if len(rows) != len(answers) {
		t.Fatalf("%s: %d questions, %d answers", category, len(rows), len(answers))
	}
	return rows
}

func eachLine(t testing.TB, path string, fn func([]byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			fn(sc.Bytes())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// truthCalls writes a ground truth as tool calls: the first allowed value of each
// argument, an optional one ("" first) left out unless the schema requires it.
func truthCalls(t testing.TB, exp []ExpectedCall, required map[string][]string) []openai.ToolCall {
	calls := make([]openai.ToolCall, len(exp))
	for i, e := range exp {
		args := map[string]any{}
		for k, allowed := range e.Args {
			if v, ok := firstAllowed(allowed, slices.Contains(required[e.Name], k)); ok {
				args[k] = v
			}
		}
		b, err := json.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		calls[i] = openai.ToolCall{ID: "call_" + strconv.Itoa(i), Type: "function",
			Function: openai.FunctionCall{Name: e.Name, Arguments: string(b)}}
	}
	return calls
}

func firstAllowed(allowed []any, required bool) (any, bool) {
	for _, v := range allowed {
		if s, ok := v.(string); ok && s == "" {
			if !required {
				return nil, false
			}
			continue
		}
		return resolve(v), true
	}
	return nil, false
}

func resolve(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range t {
			if r, ok := firstAllowed(asList(x), false); ok {
				out[k] = r
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = resolve(x)
		}
		return out
	}
	return v
}

func TestBFCLGroundTruthScoresFull(t *testing.T) {
	dir := bfclDir(t)
	for _, cat := range bfclCategories {
		t.Run(cat, func(t *testing.T) {
			rows := readBFCL(t, dir, cat)
			calls, pass := 0, 0
			for _, r := range rows {
				s := ToolCallsAgainst(r.expected, r.truth, Options{Required: r.required})
				calls += s.Expected
				if s.Pass && s.ExactArgs == 1 && s.NameAccuracy == 1 && s.LenientArgs == 1 {
					pass++
				} else {
					t.Errorf("%s: ground truth scored %+v\ncandidate %v", r.id, s, r.truth)
				}
			}
			t.Logf("%s: %d/%d rows (%d calls) score 100%%", cat, pass, len(rows), calls)
		})
	}
}

// TestBFCLPerturbationsScoreAsExpected perturbs every ground truth of the four
// categories in one way at a time and checks each row's verdict.
func TestBFCLPerturbationsScoreAsExpected(t *testing.T) {
	dir := bfclDir(t)
	type perturb struct {
		name string
		// apply returns the perturbed calls, or nil when the row offers nothing to perturb.
		apply func(r bfclRow) []openai.ToolCall
		pass  bool
		// matched is the expected Matched count given the row's number of calls.
		matched func(n int) int
	}
	same := func(n int) int { return n }
	oneLess := func(n int) int { return n - 1 }
	perturbs := []perturb{
		{"wrong function", func(r bfclRow) []openai.ToolCall {
			c := slices.Clone(r.truth)
			c[0].Function.Name += "_x"
			return c
		}, false, oneLess},
		{"missing required argument", func(r bfclRow) []openai.ToolCall {
			return editArgs(t, r, func(name string, a map[string]any) bool {
				for _, k := range r.required[name] {
					if _, ok := a[k]; ok {
						delete(a, k)
						return true
					}
				}
				return false
			})
		}, false, oneLess},
		{"wrong value", func(r bfclRow) []openai.ToolCall {
			return editArgs(t, r, func(_ string, a map[string]any) bool {
				for _, k := range sortedKeys(a) {
					switch v := a[k].(type) {
					case float64:
						a[k] = v + 1000.5
						return true
					case string:
						a[k] = v + " zzz"
						return true
					}
				}
				return false
			})
		}, false, oneLess},
		{"extra call", func(r bfclRow) []openai.ToolCall {
			return append(slices.Clone(r.truth), r.truth[0])
		}, false, same},
		{"parallel calls reordered", func(r bfclRow) []openai.ToolCall {
			if len(r.truth) < 2 {
				return nil
			}
			c := slices.Clone(r.truth)
			slices.Reverse(c)
			return c
		}, true, same},
		{"whole numbers written as floats (5 as 5.0)", func(r bfclRow) []openai.ToolCall {
			c := slices.Clone(r.truth)
			changed := false
			for i := range c {
				a, _ := parseArgs(c[i].Function.Arguments)
				s := floatJSON(a)
				changed = changed || s != c[i].Function.Arguments
				c[i].Function.Arguments = s
			}
			if !changed {
				return nil
			}
			return c
		}, true, same},
		{"number given as string", func(r bfclRow) []openai.ToolCall {
			return editArgs(t, r, func(_ string, a map[string]any) bool {
				for _, k := range sortedKeys(a) {
					if v, ok := a[k].(float64); ok {
						a[k] = strconv.FormatFloat(v, 'f', -1, 64)
						return true
					}
				}
				return false
			})
		}, false, oneLess},
	}
	var rows []bfclRow
	for _, cat := range bfclCategories {
		rows = append(rows, readBFCL(t, dir, cat)...)
	}
	for _, p := range perturbs {
		t.Run(p.name, func(t *testing.T) {
			applied := 0
			for _, r := range rows {
				cand := p.apply(r)
				if cand == nil {
					continue
				}
				applied++
				s := ToolCallsAgainst(r.expected, cand, Options{Required: r.required})
				if s.Pass != p.pass || s.Matched != p.matched(len(r.expected)) {
					t.Errorf("%s: got pass=%v matched=%d of %d, want pass=%v matched=%d\n%+v\n%v",
						r.id, s.Pass, s.Matched, s.Expected, p.pass, p.matched(len(r.expected)), s, cand)
				}
			}
			if applied == 0 {
				t.Fatal("perturbation applied to no row")
			}
			t.Logf("%s: applied to %d of %d rows, all scored as expected", p.name, applied, len(rows))
		})
	}
}

// editArgs applies edit to the arguments of the first call it changes, or returns nil.
func editArgs(t testing.TB, r bfclRow, edit func(name string, args map[string]any) bool) []openai.ToolCall {
	c := slices.Clone(r.truth)
	for i := range c {
		a, _ := parseArgs(c[i].Function.Arguments)
		if edit(c[i].Function.Name, a) {
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			c[i].Function.Arguments = string(b)
			return c
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// floatJSON encodes v as JSON with every whole number written with a ".0".
func floatJSON(v any) string {
	var b strings.Builder
	var enc func(any)
	enc = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			b.WriteByte('{')
			for i, k := range sortedKeys(t) {
				if i > 0 {
					b.WriteByte(',')
				}
				kb, _ := json.Marshal(k)
				b.Write(kb)
				b.WriteByte(':')
				enc(t[k])
			}
			b.WriteByte('}')
		case []any:
			b.WriteByte('[')
			for i, x := range t {
				if i > 0 {
					b.WriteByte(',')
				}
				enc(x)
			}
			b.WriteByte(']')
		case float64:
			s := strconv.FormatFloat(t, 'f', -1, 64)
			if !strings.ContainsAny(s, ".eE") {
				s += ".0"
			}
			b.WriteString(s)
		default:
			x, _ := json.Marshal(t)
			b.Write(x)
		}
	}
	enc(v)
	return b.String()
}
