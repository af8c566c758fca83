package compare

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"math"
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
	// rawTools are the question's functions as OpenAI tools with BFCL's parameter
	// schemas verbatim; tools the same with the schemas made JSON Schema (bfclSchema).
	rawTools, tools []openai.Tool
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
				Name       string          `json:"name"`
				Parameters json.RawMessage `json:"parameters"`
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
		var raw, tools []openai.Tool
		for _, f := range q.Function {
			name := strings.ReplaceAll(f.Name, ".", "_")
			var p struct {
				Required []string `json:"required"`
			}
			if err := json.Unmarshal(f.Parameters, &p); err != nil {
				t.Fatalf("%s: %v", q.ID, err)
			}
			req[name] = p.Required
			raw = append(raw, openai.Tool{Type: "function", Function: openai.FunctionDecl{Name: name, Parameters: f.Parameters}})
			tools = append(tools, openai.Tool{Type: "function", Function: openai.FunctionDecl{Name: name, Parameters: bfclSchema(t, f.Parameters)}})
		}
		rows = append(rows, bfclRow{id: q.ID, expected: exp, required: req, truth: truthCalls(t, exp, req), rawTools: raw, tools: tools})
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

// bfclTypes maps the type names of BFCL's Python categories to JSON Schema's ("" means
// no type constraint), as downshift's importer does (internal/dataset/bfcl.go): BFCL's
// "dict", "float", "tuple" and "any" are not JSON Schema types, so the verbatim schemas
// do not compile. BFCL's own OpenAI handler (GORILLA_TO_OPENAPI) maps the first three
// alike and "any" to "string"; the importer leaves "any" untyped, and these are the
// schemas downshift sends.
var bfclTypes = map[string]string{
	"dict": "object", "float": "number", "tuple": "array", "any": "",
	"integer": "integer", "string": "string", "boolean": "boolean", "array": "array",
	"number": "number", "object": "object",
}

// bfclSchema returns a BFCL parameter schema with its type names made JSON Schema's, at
// every level a schema nests (properties, items, additionalProperties).
func bfclSchema(t testing.TB, raw json.RawMessage) json.RawMessage {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		s, ok := v.(map[string]any)
		if !ok {
			return
		}
		if typ, ok := s["type"].(string); ok {
			js, known := bfclTypes[typ]
			if !known {
				t.Fatalf("BFCL type %q has no JSON Schema mapping", typ)
			}
			if js == "" {
				delete(s, "type")
			} else {
				s["type"] = js
			}
		}
		if props, ok := s["properties"].(map[string]any); ok {
			for _, p := range props {
				walk(p)
			}
		}
		for _, k := range []string{"items", "additionalProperties"} {
			if list, ok := s[k].([]any); ok {
				for _, x := range list {
					walk(x)
				}
			} else {
				walk(s[k])
			}
		}
	}
	walk(v)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBFCLSchemas compiles every function schema of the four categories: BFCL's
// verbatim ones mostly fail (their type names are Python's), the mapped ones must all
// compile, and every ground truth must validate against them.
func TestBFCLSchemas(t *testing.T) {
	dir := bfclDir(t)
	schemas := NewSchemas(SchemasOptions{})
	rawFailed, functions := 0, 0
	var example error
	for _, cat := range bfclCategories {
		for _, r := range readBFCL(t, dir, cat) {
			for i, tool := range r.rawTools {
				functions++
				if err := schemas.Validate(tool.Function.Parameters, map[string]any{}); errors.Is(err, ErrInvalidSchema) {
					rawFailed++
					example = err
				}
				if err := schemas.Validate(r.tools[i].Function.Parameters, map[string]any{}); errors.Is(err, ErrInvalidSchema) {
					t.Errorf("%s: mapped schema of %s does not compile: %v", r.id, tool.Function.Name, err)
				}
			}
		}
	}
	// Nearly all of BFCL's schemas are "type": "dict" at the top; a schema whose types
	// are all JSON Schema's already compiles verbatim.
	if rawFailed < functions*9/10 {
		t.Errorf("%d of %d verbatim BFCL schemas failed to compile; expected nearly all (Python type names)", rawFailed, functions)
	}
	t.Logf("%d of %d verbatim BFCL function schemas do not compile (e.g. %v); all %d mapped ones do",
		rawFailed, functions, example, functions)
}

// bfclSchemaInvalid are the rows whose ground truth contradicts the row's own function
// schemas, with the number of such calls: parallel_multiple_21 gives linear_regression_fit
// the strings "data['sales']" and "data['future_sales']" for x and y, declared arrays of
// floats; parallel_multiple_94 sorts a list of fruit names with sort_list, whose
// elements are declared integers. BFCL's AST checker does not type-check elements or
// these strings, so BFCL accepts them; a schema does not.
var bfclSchemaInvalid = map[string]int{"parallel_multiple_21": 1, "parallel_multiple_94": 1}

// TestBFCLGroundTruthScoresFull scores every ground truth of the four categories as a
// candidate: each must match in full, and validate against its functions' schemas
// (BFCL's type names mapped to JSON Schema's, see bfclSchema) but for the calls listed
// in bfclSchemaInvalid.
func TestBFCLGroundTruthScoresFull(t *testing.T) {
	dir := bfclDir(t)
	schemas := NewSchemas(SchemasOptions{})
	for _, cat := range bfclCategories {
		t.Run(cat, func(t *testing.T) {
			rows := readBFCL(t, dir, cat)
			calls, pass, valid := 0, 0, 0
			for _, r := range rows {
				s := ToolCallsAgainst(r.expected, r.truth, Options{Required: r.required, Tools: r.tools, Schemas: schemas})
				calls += s.Expected
				if s.Pass && s.ExactArgs == 1 && s.NameAccuracy == 1 && s.LenientArgs == 1 {
					pass++
				} else {
					t.Errorf("%s: ground truth scored %+v\ncandidate %v", r.id, s, r.truth)
				}
				if !s.SchemaChecked || s.SchemaValid != s.Candidate-bfclSchemaInvalid[r.id] || s.UnknownTool != 0 || s.SchemaError != "" {
					t.Errorf("%s: ground truth schema check %+v, want %d of %d calls valid\ncandidate %v",
						r.id, s, s.Candidate-bfclSchemaInvalid[r.id], s.Candidate, r.truth)
				}
				valid += s.SchemaValid
			}
			t.Logf("%s: %d/%d rows (%d calls) score 100%%; %d calls schema-valid", cat, pass, len(rows), calls, valid)
		})
	}
}

// TestBFCLPerturbationsScoreAsExpected perturbs every ground truth of the four
// categories in one way at a time and checks each row's verdict.
func TestBFCLPerturbationsScoreAsExpected(t *testing.T) {
	dir := bfclDir(t)
	schemas := NewSchemas(SchemasOptions{})
	type perturb struct {
		name string
		// apply returns the perturbed calls, or nil when the row offers nothing to perturb.
		apply func(r bfclRow) []openai.ToolCall
		pass  bool
		// matched is the expected Matched count given the row's number of calls.
		matched func(n int) int
		// lost is how many fewer calls are schema-valid than in the ground truth
		// (schemaUnknown: not asserted); unknown is the expected UnknownTool.
		lost, unknown int
	}
	same := func(n int) int { return n }
	oneLess := func(n int) int { return n - 1 }
	// A wrong value may or may not break the schema (an enum, a maximum), so its
	// schema verdict is not asserted.
	const schemaUnknown = math.MinInt
	perturbs := []perturb{
		{"wrong function", func(r bfclRow) []openai.ToolCall {
			c := slices.Clone(r.truth)
			c[0].Function.Name += "_x"
			return c
		}, false, oneLess, 1, 1},
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
		}, false, oneLess, 1, 0},
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
		}, false, oneLess, schemaUnknown, 0},
		{"extra call", func(r bfclRow) []openai.ToolCall {
			return append(slices.Clone(r.truth), r.truth[0])
		}, false, same, -1, 0},
		{"parallel calls reordered", func(r bfclRow) []openai.ToolCall {
			if len(r.truth) < 2 {
				return nil
			}
			c := slices.Clone(r.truth)
			slices.Reverse(c)
			return c
		}, true, same, 0, 0},
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
		}, true, same, 0, 0},
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
		}, false, oneLess, 1, 0},
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
				s := ToolCallsAgainst(r.expected, cand, Options{Required: r.required, Tools: r.tools, Schemas: schemas})
				if s.Pass != p.pass || s.Matched != p.matched(len(r.expected)) {
					t.Errorf("%s: got pass=%v matched=%d of %d, want pass=%v matched=%d\n%+v\n%v",
						r.id, s.Pass, s.Matched, s.Expected, p.pass, p.matched(len(r.expected)), s, cand)
				}
				// Rows whose ground truth is itself schema-invalid are left out: the
				// perturbed call may be the invalid one.
				if _, known := bfclSchemaInvalid[r.id]; p.lost != schemaUnknown && !known {
					if want := len(r.truth) - p.lost; s.SchemaValid != want || s.UnknownTool != p.unknown {
						t.Errorf("%s: got %d schema-valid calls, %d unknown; want %d, %d\n%+v\n%v",
							r.id, s.SchemaValid, s.UnknownTool, want, p.unknown, s, cand)
					}
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
