package compare

import (
	"encoding/json"
	"strconv"
	"strings"
)

// JSONScore is how well a candidate's JSON answer agrees with a reference JSON answer,
// field by field. Fields are the leaves of the flattened documents, named by path
// ("a.b[0].c"); an empty object or array is a leaf of its own. A field matches when
// both have the path and equal values (numbers by value, strings trimmed,
// case-sensitive). Schema validity is checked by Answer, not by JSON.
type JSONScore struct {
	// Valid is whether the candidate parses as JSON.
	Valid bool
	// SchemaChecked is whether the candidate was checked against response_format's
	// json_schema (Answer with Request.Schemas set, a valid candidate, a schema given);
	// SchemaValid is whether it validates. A schema that does not compile leaves
	// SchemaValid false and says why in SchemaError.
	SchemaChecked, SchemaValid bool
	SchemaError                string `json:",omitempty"`
	// Fields counts the reference's leaves, CandidateFields the candidate's, Matched the
	// leaves both have with equal values.
	Fields, CandidateFields, Matched int
	// Precision is Matched/CandidateFields, Recall Matched/Fields, F1 their harmonic
	// mean; all 0 for an invalid candidate, all 1 when both are the same scalar.
	Precision, Recall, F1 float64
}

// JSON scores a candidate's JSON answer against the reference's. A reference that is
// not valid JSON has no fields: only an identical (trimmed) candidate then scores 1.
func JSON(reference, candidate string) JSONScore {
	s, _ := jsonScore(reference, candidate)
	return s
}

// jsonScore is JSON, also returning the parsed candidate (nil when it is not valid).
func jsonScore(reference, candidate string) (JSONScore, any) {
	var c any
	if err := json.Unmarshal([]byte(candidate), &c); err != nil {
		return JSONScore{}, nil
	}
	s := JSONScore{Valid: true}
	var r any
	if err := json.Unmarshal([]byte(reference), &r); err != nil {
		if strings.TrimSpace(reference) == strings.TrimSpace(candidate) {
			s.Precision, s.Recall, s.F1 = 1, 1, 1
		}
		return s, c
	}
	ref := map[string]any{}
	flatten(r, "", func(path string, v any) { ref[path] = v })
	s.Fields = len(ref)
	flatten(c, "", func(path string, v any) {
		s.CandidateFields++
		if x, ok := ref[path]; ok && equal(x, v, exact) {
			s.Matched++
		}
	})
	s.Precision, s.Recall, s.F1 = prf(s.Matched, s.CandidateFields, s.Fields)
	return s, c
}

// flatten calls leaf for every leaf of v with its path.
func flatten(v any, path string, leaf func(string, any)) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			leaf(path, t)
			return
		}
		for k, x := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			flatten(x, p, leaf)
		}
	case []any:
		if len(t) == 0 {
			leaf(path, t)
			return
		}
		for i, x := range t {
			flatten(x, path+"["+strconv.Itoa(i)+"]", leaf)
		}
	default:
		leaf(path, v)
	}
}

// prf returns precision, recall and F1 of matched items out of got candidate items and
// want reference items; two empty sides agree fully.
func prf(matched, got, want int) (p, r, f float64) {
	if got == 0 && want == 0 {
		return 1, 1, 1
	}
	if got > 0 {
		p = float64(matched) / float64(got)
	}
	if want > 0 {
		r = float64(matched) / float64(want)
	}
	if p+r > 0 {
		f = 2 * p * r / (p + r)
	}
	return p, r, f
}
