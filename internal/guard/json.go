package guard

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// parseJSON reads s as one JSON value; object asks for an object. With decode it
// returns the value, decoded as encoding/json decodes into any (what compare's
// Schemas validate); without, it only validates. problem completes "... is" when s
// is not what was asked: "empty", "not valid JSON (syntax error at byte 12)", "a JSON
// array, not an object". Nothing of s is quoted.
func parseJSON(s string, decode, object bool) (val any, problem string) {
	first := firstNonSpace(s)
	if first < 0 {
		return nil, "empty"
	}
	if !decode {
		if !json.Valid([]byte(s)) {
			return nil, syntaxProblem(s)
		}
	} else if err := json.Unmarshal([]byte(s), &val); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, syntaxAt(se.Offset)
		}
		// Valid JSON that does not decode into any: a number beyond float64.
		return nil, "JSON that cannot be decoded (a number out of range)"
	}
	if object && s[first] != '{' {
		return nil, "a JSON " + jsonKind(s[first]) + ", not an object"
	}
	return val, ""
}

func firstNonSpace(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return -1
}

// syntaxProblem finds where s stops being JSON (s is known not to be).
func syntaxProblem(s string) string {
	var raw json.RawMessage
	var se *json.SyntaxError
	if err := json.Unmarshal([]byte(s), &raw); errors.As(err, &se) {
		return syntaxAt(se.Offset)
	}
	return "not valid JSON"
}

func syntaxAt(offset int64) string {
	return "not valid JSON (syntax error at byte " + strconv.FormatInt(offset, 10) + ")"
}

func jsonKind(first byte) string {
	switch first {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// mismatch says where a value failed a schema, from the first leaf of the validation
// error: the keyword and the schema location that holds it, the missing properties
// of "required" and the types of "type" (names the schema gives, and JSON type
// names). The library's own message is not used: it quotes the value.
func mismatch(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return "the value is not valid"
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "#"
	if i := strings.IndexByte(ve.SchemaURL, '#'); i >= 0 {
		loc = ve.SchemaURL[i:]
	}
	keyword := "false schema"
	if kw := ve.ErrorKind.KeywordPath(); len(kw) > 0 {
		keyword = strings.Join(kw, "/")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%q fails at %s", keyword, loc)
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		b.WriteString(" (missing ")
		for i, name := range k.Missing {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(clip(name, maxName)))
		}
		b.WriteByte(')')
	case *kind.Type:
		fmt.Fprintf(&b, " (got %s, want %s)", k.Got, strings.Join(k.Want, " or "))
	}
	return b.String()
}
