package compare

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Kind is what the reference answer did, and so how an answer was scored.
type Kind string

// The kinds of answer.
const (
	KindTools Kind = "tools" // the reference called tools
	KindJSON  Kind = "json"  // the reference answered a JSON object or array
	KindText  Kind = "text"  // the reference answered text
)

// Default pass thresholds of Request.
const (
	// DefaultJSONPassF1 asks every field of a JSON answer to match the reference.
	DefaultJSONPassF1 = 1.0
	// DefaultTextPassRougeL is a heuristic: half the reference's words in order. An
	// evaluator that asks an LLM judge should replace text verdicts with the judge's.
	DefaultTextPassRougeL = 0.5
)

// Request is what Answer needs from the request that both answers replied to, and the
// thresholds of its verdict. The zero value checks no schema and uses the defaults.
type Request struct {
	// Tools are the request's tools; a candidate's call is checked against the called
	// tool's parameters schema.
	Tools []openai.Tool
	// ResponseFormat is the request's response_format: json_object or json_schema
	// makes the answer a JSON answer, and json_schema's schema is checked. Nil: none.
	ResponseFormat *openai.ResponseFormat
	// Schemas compiles and caches the schemas; nil: no schema is checked. Share one
	// across calls (and goroutines): it is what makes checking cheap.
	Schemas *Schemas
	// JSONPassF1 is the field F1 a JSON answer needs to pass; 0 means
	// DefaultJSONPassF1.
	JSONPassF1 float64
	// TextPassRougeL is the ROUGE-L a text answer needs to pass; 0 means
	// DefaultTextPassRougeL.
	TextPassRougeL float64
}

// Score is a candidate answer's agreement with a reference answer. Exactly one of
// Tools, JSON and Text is set, by Kind.
type Score struct {
	Kind Kind
	// Agreement is one figure in [0, 1]: LenientArgs for tool calls (0 when the
	// candidate called tools and the reference did not), F1 for JSON, ROUGE-L for text.
	Agreement float64
	// Pass is the verdict on the one answer. Tool calls: ToolScore.Pass (the calls
	// the reference made, leniently matched, no more) and, when schemas are checked,
	// every call schema-valid. JSON: the candidate parses, is schema-valid when a
	// schema is checked, and its field F1 reaches Request.JSONPassF1. Text: ROUGE-L
	// reaches Request.TextPassRougeL.
	Pass  bool
	Tools *ToolScore
	JSON  *JSONScore
	Text  *TextScore
}

// Answer scores a candidate message against a reference message, by what the
// reference did: called tools, answered JSON (an object or array, or anything when the
// request's response_format asks for JSON), or answered text. A reference that answers
// without calling tools expects no call: a candidate that calls one scores 0 whatever
// its text. The reference is not checked against the schemas: a candidate that repeats
// a reference's schema-invalid call fails.
func Answer(reference, candidate *openai.Message, req Request) Score {
	if len(reference.ToolCalls) > 0 || len(candidate.ToolCalls) > 0 {
		ts := ToolCalls(reference.ToolCalls, candidate.ToolCalls, Options{Tools: req.Tools, Schemas: req.Schemas})
		return Score{Kind: KindTools, Agreement: ts.LenientArgs, Pass: ts.Pass && ts.SchemaOK(), Tools: &ts}
	}
	ref, cand := reference.Content.String(), candidate.Content.String()
	if wantsJSON(req.ResponseFormat) || isJSONDocument(ref) {
		js, v := jsonScore(ref, cand)
		if js.Valid {
			checkResponseSchema(&js, v, req)
		}
		passF1 := req.JSONPassF1
		if passF1 == 0 {
			passF1 = DefaultJSONPassF1
		}
		pass := js.Valid && (!js.SchemaChecked || js.SchemaValid) && js.F1 >= passF1
		return Score{Kind: KindJSON, Agreement: js.F1, Pass: pass, JSON: &js}
	}
	tx := Text(ref, cand)
	passRouge := req.TextPassRougeL
	if passRouge == 0 {
		passRouge = DefaultTextPassRougeL
	}
	return Score{Kind: KindText, Agreement: tx.RougeL, Pass: tx.RougeL >= passRouge, Text: &tx}
}

// wantsJSON reports whether response_format asks for a JSON answer.
func wantsJSON(rf *openai.ResponseFormat) bool {
	return rf != nil && (rf.Type == "json_object" || rf.Type == "json_schema")
}

// checkResponseSchema checks v, the candidate's parsed answer, against
// response_format's json_schema, when there is one and req.Schemas is set. The schema
// is checked whether or not the format is strict: the client reads the answer by it
// either way.
func checkResponseSchema(js *JSONScore, v any, req Request) {
	rf := req.ResponseFormat
	if req.Schemas == nil || rf == nil || rf.Type != "json_schema" || len(rf.JSONSchema) == 0 {
		return
	}
	checked, err := req.Schemas.validateFormat(rf.JSONSchema, v)
	js.SchemaChecked = checked
	switch {
	case err == nil:
		js.SchemaValid = checked
	case errors.Is(err, ErrInvalidSchema):
		js.SchemaError = "response_format.json_schema: " + err.Error()
	}
}

// isJSONDocument reports whether s is a JSON object or array: a bare number or string
// answer is text.
func isJSONDocument(s string) bool {
	t := strings.TrimSpace(s)
	if t == "" || (t[0] != '{' && t[0] != '[') {
		return false
	}
	return json.Valid([]byte(t))
}
