package compare

import (
	"encoding/json"
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

// Score is a candidate answer's agreement with a reference answer. Exactly one of
// Tools, JSON and Text is set, by Kind.
type Score struct {
	Kind Kind
	// Agreement is one figure in [0, 1]: LenientArgs for tool calls (0 when the
	// candidate called tools and the reference did not), F1 for JSON, ROUGE-L for text.
	Agreement float64
	Tools     *ToolScore
	JSON      *JSONScore
	Text      *TextScore
}

// Answer scores a candidate message against a reference message, by what the
// reference did: called tools, answered JSON (an object or array), or answered text.
// tools are the request's tools; they are not used yet (a concrete reference fixes
// every argument, so a schema's required list adds nothing) and may be nil. A reference that answers without calling tools expects no call: a
// candidate that calls one scores 0 whatever its text.
func Answer(reference, candidate *openai.Message, tools []openai.Tool) Score {
	if len(reference.ToolCalls) > 0 || len(candidate.ToolCalls) > 0 {
		ts := ToolCalls(reference.ToolCalls, candidate.ToolCalls, Options{})
		return Score{Kind: KindTools, Agreement: ts.LenientArgs, Tools: &ts}
	}
	ref, cand := reference.Content.String(), candidate.Content.String()
	if isJSONDocument(ref) {
		js := JSON(ref, cand)
		return Score{Kind: KindJSON, Agreement: js.F1, JSON: &js}
	}
	tx := Text(ref, cand)
	return Score{Kind: KindText, Agreement: tx.RougeL, Text: &tx}
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
