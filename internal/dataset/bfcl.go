package dataset

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// ModelGroundTruth is the RequestedModel of calls whose response is a dataset's ground
// truth (BFCL); their ServedModel is "bfcl/<category>", so that a model filter finds
// all ground truth or one category's.
const ModelGroundTruth = "ground-truth"

// ErrBFCLCategory is returned for a BFCL category that cannot be imported as
// single calls with a ground-truth answer.
var ErrBFCLCategory = errors.New("BFCL category cannot be imported")

// BFCLCategory returns the category a BFCL file name names: "simple_python" for
// ".../BFCL_v4_simple_python.json", or "" when the name does not follow BFCL's layout.
func BFCLCategory(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), ".json")
	for _, prefix := range []string{"BFCL_v4_", "BFCL_v3_"} {
		if c, ok := strings.CutPrefix(base, prefix); ok && c != "" {
			return c
		}
	}
	return ""
}

// BFCLAnswersPath returns where BFCL keeps the possible answers of a questions file:
// possible_answer/<the same name> beside it.
func BFCLAnswersPath(questions string) string {
	return filepath.Join(filepath.Dir(questions), "possible_answer", filepath.Base(questions))
}

// BFCLNeedsAnswers reports whether a category has a possible-answer file. The
// irrelevance categories have none: their ground truth is to call no function.
func BFCLNeedsAnswers(category string) bool {
	return !bfclNoCall(category)
}

func bfclNoCall(category string) bool {
	return category == "irrelevance" || category == "live_irrelevance"
}

// CheckBFCLCategory returns an error wrapping ErrBFCLCategory for the categories whose
// ground truth is not one answer to one request (multi-turn, memory, web search,
// live_relevance), and nil for the categories Importer.BFCL can import.
func CheckBFCLCategory(category string) error {
	switch {
	case category == "":
		return fmt.Errorf("dataset: %w: no category given", ErrBFCLCategory)
	case strings.HasPrefix(category, "multi_turn"), category == "memory", category == "web_search":
		return fmt.Errorf("dataset: %w: %s questions run against BFCL's executable environment (state, memory or web search) over several turns; their ground truth is not one answer to one request", ErrBFCLCategory, category)
	case category == "live_relevance":
		return fmt.Errorf("dataset: %w: live_relevance has no ground truth (any function call counts as right)", ErrBFCLCategory)
	case category == "format_sensitivity":
		return fmt.Errorf("dataset: %w: format_sensitivity lists ids of other categories, not questions", ErrBFCLCategory)
	}
	return nil
}

// BFCL imports one category of the Berkeley Function Calling Leaderboard (Source
// store.SourceBFCL, GroundTruth true): questions is BFCL_v4_<category>.json and answers
// its possible_answer file (both JSON Lines); answers is ignored, and may be nil, for
// the irrelevance categories.
//
// Each question becomes one call. The request (model ModelGroundTruth) holds the
// question's messages and its functions as OpenAI tools: BFCL's parameter types are
// mapped to JSON Schema ("dict" is object, "float" number, "tuple" array, "any" no type;
// the Java and JavaScript categories' type names likewise), and dots in function names,
// which OpenAI refuses, become underscores, in the tools and the answer alike. The
// response is a chat.completion (model "bfcl/<category>") whose message calls the
// ground-truth functions, in order, each argument taking the first value BFCL allows;
// an argument whose first allowed value is "" (BFCL's "may be left out") is left out
// unless the function requires it. For irrelevance and live_irrelevance, where the
// right answer is to call nothing, the response is an assistant message with empty
// content and no tool calls: only the absence of a call is ground truth, not the text.
// Multi-turn, memory, web-search and live_relevance categories return ErrBFCLCategory.
//
// Records carry no timestamps: the question on line n has time
// ImportTime(SourceBFCL, n-1), and its ID hashes BFCL's own id.
func (im *Importer) BFCL(category string, questions, answers io.Reader) error {
	if err := CheckBFCLCategory(category); err != nil {
		return err
	}
	truth := map[string]json.RawMessage{}
	if !bfclNoCall(category) {
		if answers == nil {
			return fmt.Errorf("dataset: BFCL %s: no possible answers given", category)
		}
		var err error
		if truth, err = readBFCLAnswers(answers); err != nil {
			return fmt.Errorf("dataset: BFCL %s possible answers: %w", category, err)
		}
	}
	return im.eachLine(questions, func(line []byte, n int) (record, error) {
		return bfclRecord(category, line, n, truth)
	})
}

func readBFCLAnswers(r io.Reader) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var a struct {
				ID          string          `json:"id"`
				GroundTruth json.RawMessage `json:"ground_truth"`
			}
			if err := json.Unmarshal(line, &a); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if a.ID == "" {
				return nil, fmt.Errorf("line %d: no id", n)
			}
			out[a.ID] = a.GroundTruth
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
}

type bfclQuestion struct {
	ID       string              `json:"id"`
	Question [][]json.RawMessage `json:"question"`
	Function []json.RawMessage   `json:"function"`
}

func bfclRecord(category string, line []byte, n int, truth map[string]json.RawMessage) (record, error) {
	var q bfclQuestion
	if err := json.Unmarshal(line, &q); err != nil {
		return record{}, fmt.Errorf("not a BFCL question: %w", err)
	}
	if q.ID == "" {
		return record{}, errors.New("no id")
	}
	fail := func(err error) (record, error) { return record{}, fmt.Errorf("%s: %w", q.ID, err) }
	if len(q.Question) != 1 {
		return fail(fmt.Errorf("%d turns: only single-turn questions can be imported", len(q.Question)))
	}
	if len(q.Question[0]) == 0 {
		return fail(errors.New("no messages"))
	}
	tools := make([]object, len(q.Function))
	required := map[string][]string{} // by BFCL's function name
	for i, raw := range q.Function {
		t, name, req, err := bfclTool(raw)
		if err != nil {
			return fail(fmt.Errorf("function[%d]: %w", i, err))
		}
		tools[i], required[name] = t, req
	}
	body := struct {
		Model    string            `json:"model"`
		Messages []json.RawMessage `json:"messages"`
		Tools    []object          `json:"tools,omitempty"` // a few irrelevance questions offer none
	}{ModelGroundTruth, q.Question[0], tools}
	reqJSON, err := marshalCompact(body)
	if err != nil {
		return fail(err)
	}
	req, err := openai.DecodeChatRequest(reqJSON)
	if err != nil {
		return fail(err)
	}

	msg := openai.Message{Role: "assistant", Content: openai.TextContent("")}
	if !bfclNoCall(category) {
		gt, ok := truth[q.ID]
		if !ok {
			return fail(errors.New("no possible answer for this id"))
		}
		calls, err := bfclToolCalls(q.ID, gt, required)
		if err != nil {
			return fail(fmt.Errorf("ground truth: %w", err))
		}
		msg = openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}, ToolCalls: calls}
	}
	key := []byte(q.ID)
	at := ImportTime(store.SourceBFCL, n-1)
	resp, respJSON, err := completion(key, at, "bfcl/"+category, msg)
	if err != nil {
		return fail(err)
	}
	return record{
		source: store.SourceBFCL, key: key, index: n - 1,
		req: req, reqJSON: reqJSON, resp: resp, respJSON: respJSON,
		servedModel: "bfcl/" + category, groundTruth: true,
	}, nil
}

// bfclTool turns a BFCL function into an OpenAI tool; it returns BFCL's name for the
// function and its required parameters too.
func bfclTool(raw json.RawMessage) (object, string, []string, error) {
	v, err := decodeOrdered(raw)
	if err != nil {
		return nil, "", nil, err
	}
	fn, ok := v.(object)
	if !ok {
		return nil, "", nil, errors.New("not an object")
	}
	nv, _ := fn.get("name")
	name, _ := nv.(string)
	if name == "" {
		return nil, "", nil, errors.New("no name")
	}
	decl := object{{"name", toolName(name)}}
	if d, ok := fn.get("description"); ok {
		decl = append(decl, member{"description", d})
	}
	var required []string
	if p, ok := fn.get("parameters"); ok {
		schema := bfclSchema(p)
		decl = append(decl, member{"parameters", schema})
		if po, ok := schema.(object); ok {
			if r, ok := po.get("required"); ok {
				rs, _ := r.([]any)
				for _, x := range rs {
					if s, ok := x.(string); ok {
						required = append(required, s)
					}
				}
			}
		}
	}
	return object{{"type", "function"}, {"function", decl}}, name, required, nil
}

// toolName makes a BFCL function name one OpenAI accepts (^[a-zA-Z0-9_-]+$): BFCL's
// own OpenAI handler replaces the dots of "math.factorial" with underscores.
func toolName(name string) string {
	return strings.ReplaceAll(name, ".", "_")
}

// bfclTypes maps BFCL's type names (Python's, and the Java and JavaScript categories')
// to JSON Schema's; "" means no type constraint.
var bfclTypes = map[string]string{
	"dict": "object", "float": "number", "tuple": "array", "any": "",
	"integer": "integer", "string": "string", "boolean": "boolean", "array": "array",
	"number": "number", "object": "object", "null": "null",
	"String": "string", "Array": "array", "ArrayList": "array", "HashMap": "object",
	"Boolean": "boolean", "long": "integer", "double": "number", "char": "string", "": "",
}

// bfclSchema rewrites the type names of a BFCL parameter schema, in place, at every
// level a schema can nest (properties, items, additionalProperties, anyOf/oneOf/allOf).
func bfclSchema(v any) any {
	s, ok := v.(object)
	if !ok {
		return v
	}
	out := make(object, 0, len(s))
	for _, m := range s {
		switch m.key {
		case "type":
			if t, ok := m.value.(string); ok {
				js, known := bfclTypes[t]
				if !known {
					js = bfclTypes[strings.ToLower(t)]
				}
				if js == "" {
					continue // any type
				}
				m.value = js
			}
		case "properties":
			if props, ok := m.value.(object); ok {
				np := make(object, len(props))
				for i, p := range props {
					np[i] = member{p.key, bfclSchema(p.value)}
				}
				m.value = np
			}
		case "items", "additionalProperties":
			if items, ok := m.value.([]any); ok { // tuple-style items
				ni := make([]any, len(items))
				for i, it := range items {
					ni[i] = bfclSchema(it)
				}
				m.value = ni
			} else {
				m.value = bfclSchema(m.value)
			}
		case "anyOf", "oneOf", "allOf":
			if alts, ok := m.value.([]any); ok {
				na := make([]any, len(alts))
				for i, a := range alts {
					na[i] = bfclSchema(a)
				}
				m.value = na
			}
		}
		out = append(out, m)
	}
	return out
}

// bfclToolCalls turns a possible answer, [{"func": {"arg": [allowed values]}}, ...],
// into tool calls with the first allowed value of each argument.
func bfclToolCalls(id string, raw json.RawMessage, required map[string][]string) ([]openai.ToolCall, error) {
	v, err := decodeOrdered(raw)
	if err != nil {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, errors.New("want a non-empty list of calls")
	}
	calls := make([]openai.ToolCall, 0, len(list))
	for i, c := range list {
		co, ok := c.(object)
		if !ok || len(co) != 1 {
			return nil, fmt.Errorf("call %d: want {function: {argument: [allowed values]}}", i)
		}
		name := co[0].key
		argv, ok := co[0].value.(object)
		if !ok {
			return nil, fmt.Errorf("call %d (%s): arguments are not an object", i, name)
		}
		args := object{}
		for _, a := range argv {
			allowed, ok := a.value.([]any)
			if !ok {
				return nil, fmt.Errorf("call %d (%s): argument %s: want a list of allowed values", i, name, a.key)
			}
			if v, ok := firstAllowed(allowed, slices.Contains(required[name], a.key)); ok {
				args = append(args, member{a.key, v})
			}
		}
		argJSON, err := marshalValue(args)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", id, i))
		calls = append(calls, openai.ToolCall{
			ID:       "call_" + hex.EncodeToString(sum[:12]),
			Type:     "function",
			Function: openai.FunctionCall{Name: toolName(name), Arguments: string(argJSON)},
		})
	}
	return calls, nil
}

// firstAllowed picks the value of an argument from BFCL's allowed values: the first,
// resolved; ok is false when the argument is best left out (no allowed value, or "",
// BFCL's "optional and may be omitted", for an argument that is not required).
func firstAllowed(allowed []any, required bool) (any, bool) {
	for _, v := range allowed {
		if s, ok := v.(string); ok && s == "" {
			if !required {
				return nil, false
			}
			continue // a required argument: prefer a real value
		}
		return resolveAllowed(v), true
	}
	if required && len(allowed) > 0 {
		return "", true
	}
	return nil, false
}

// resolveAllowed resolves nested possible answers: an object inside an allowed value
// holds allowed-value lists for its own members, and so do objects inside lists.
func resolveAllowed(v any) any {
	switch t := v.(type) {
	case object:
		out := object{}
		for _, m := range t {
			if allowed, ok := m.value.([]any); ok {
				if r, ok := firstAllowed(allowed, false); ok {
					out = append(out, member{m.key, r})
				}
				continue
			}
			out = append(out, member{m.key, resolveAllowed(m.value)})
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = resolveAllowed(x)
		}
		return out
	}
	return v
}
