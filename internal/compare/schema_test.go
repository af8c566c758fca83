package compare

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

func tool(name, params string) openai.Tool {
	return openai.Tool{Type: "function", Function: openai.FunctionDecl{Name: name, Parameters: json.RawMessage(params)}}
}

const weatherParams = `{"type": "object", "properties": {
	"city": {"type": "string"},
	"days": {"type": "integer", "minimum": 1},
	"units": {"type": "string", "enum": ["C", "F"]}},
	"required": ["city"], "additionalProperties": false}`

func TestAnswerChecksToolSchemas(t *testing.T) {
	tools := []openai.Tool{
		tool("get_weather", weatherParams),
		tool("ping", ""), // no parameters schema: any object
		tool("broken", `{"type": "dict"}`),
	}
	tests := []struct {
		name string
		call openai.ToolCall
		// valid and unknown are the expected SchemaValid and UnknownTool; schemaErr
		// whether SchemaError is set.
		valid, unknown int
		schemaErr      bool
	}{
		{"valid", call("get_weather", `{"city": "Paris", "days": 3}`), 1, 0, false},
		{"whole number as float", call("get_weather", `{"city": "Paris", "days": 3.0}`), 1, 0, false},
		{"missing required", call("get_weather", `{"days": 3}`), 0, 0, false},
		{"wrong type", call("get_weather", `{"city": "Paris", "days": "3"}`), 0, 0, false},
		{"not an integer", call("get_weather", `{"city": "Paris", "days": 2.5}`), 0, 0, false},
		{"below minimum", call("get_weather", `{"city": "Paris", "days": 0}`), 0, 0, false},
		{"not in enum", call("get_weather", `{"city": "Paris", "units": "K"}`), 0, 0, false},
		{"extra property, additionalProperties false", call("get_weather", `{"city": "Paris", "hourly": true}`), 0, 0, false},
		{"arguments not JSON", call("get_weather", `{"city": "Paris"`), 0, 0, false},
		{"unknown tool", call("get_forecast", `{"city": "Paris"}`), 0, 1, false},
		{"tool without schema", call("ping", `{"anything": 1}`), 1, 0, false},
		{"tool without schema, empty arguments", call("ping", ``), 1, 0, false},
		{"tool schema does not compile", call("broken", `{}`), 0, 0, true},
	}
	schemas := NewSchemas(SchemasOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The reference is the candidate itself: only the schema can fail it.
			msg := &openai.Message{Role: "assistant", ToolCalls: calls(tc.call)}
			s := Answer(msg, msg, Request{Tools: tools, Schemas: schemas})
			ts := s.Tools
			argsOK := tc.call.Function.Arguments == "" || json.Valid([]byte(tc.call.Function.Arguments))
			if s.Kind != KindTools || !ts.SchemaChecked || ts.Pass != argsOK {
				t.Fatalf("got %+v %+v", s, ts)
			}
			if ts.SchemaValid != tc.valid || ts.UnknownTool != tc.unknown || (ts.SchemaError != "") != tc.schemaErr {
				t.Errorf("got valid=%d unknown=%d error=%q, want %d %d %v", ts.SchemaValid, ts.UnknownTool, ts.SchemaError, tc.valid, tc.unknown, tc.schemaErr)
			}
			if s.Pass != (tc.valid == 1) {
				t.Errorf("Pass = %v with %d of 1 calls schema-valid", s.Pass, ts.SchemaValid)
			}
			// Without a cache nothing is checked, and the verdict is the match alone.
			s = Answer(msg, msg, Request{Tools: tools})
			if s.Tools.SchemaChecked || s.Tools.SchemaValid != 0 || s.Tools.UnknownTool != 0 || s.Pass != ts.Pass {
				t.Errorf("without Schemas: %+v pass=%v", s.Tools, s.Pass)
			}
		})
	}
}

func TestAnswerToolSchemasCountEveryCall(t *testing.T) {
	tools := []openai.Tool{tool("get_weather", weatherParams)}
	ref := &openai.Message{Role: "assistant", ToolCalls: calls(
		call("get_weather", `{"city": "Paris"}`), call("get_weather", `{"city": "Rome"}`))}
	cand := &openai.Message{Role: "assistant", ToolCalls: calls(
		call("get_weather", `{"city": "Rome"}`), call("get_weather", `{"city": "Paris"}`), call("get_time", `{}`))}
	s := Answer(ref, cand, Request{Tools: tools, Schemas: NewSchemas(SchemasOptions{})})
	if ts := s.Tools; ts.SchemaValid != 2 || ts.UnknownTool != 1 || ts.Candidate != 3 || ts.SchemaOK() || s.Pass {
		t.Errorf("got %+v pass=%v", ts, s.Pass)
	}
}

func TestAnswerChecksResponseFormat(t *testing.T) {
	text := func(s string) *openai.Message {
		return &openai.Message{Role: "assistant", Content: openai.TextContent(s)}
	}
	format := func(schema string) *openai.ResponseFormat {
		return &openai.ResponseFormat{Type: "json_schema",
			JSONSchema: json.RawMessage(`{"name": "person", "strict": true, "schema": ` + schema + `}`)}
	}
	person := format(`{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
		"required": ["name", "age"], "additionalProperties": false}`)
	ref := text(`{"name": "Ada", "age": 36}`)
	tests := []struct {
		name    string
		ref     *openai.Message
		cand    string
		rf      *openai.ResponseFormat
		passF1  float64
		valid   bool
		checked bool
		schema  bool // SchemaValid
		err     bool // SchemaError set
		pass    bool
	}{
		{"valid and equal", ref, `{"age": 36, "name": "Ada"}`, person, 0, true, true, true, false, true},
		{"valid, one field wrong", ref, `{"name": "Ada", "age": 37}`, person, 0, true, true, true, false, false},
		{"valid, one field wrong, lower threshold", ref, `{"name": "Ada", "age": 37}`, person, 0.5, true, true, true, false, true},
		{"missing required", ref, `{"name": "Ada"}`, person, 0.5, true, true, false, false, false},
		{"wrong type", ref, `{"name": "Ada", "age": "36"}`, person, 0.5, true, true, false, false, false},
		{"extra property", ref, `{"name": "Ada", "age": 36, "born": 1815}`, person, 0.5, true, true, false, false, false},
		{"not JSON", ref, `{"name": "Ada", "age": 36`, person, 0, false, false, false, false, false},
		{"text, json_object asked", text(`{"ok": true}`), `ok`, &openai.ResponseFormat{Type: "json_object"}, 0, false, false, false, false, false},
		{"json_object: nothing to check", ref, `{"name": "Ada", "age": 36}`, &openai.ResponseFormat{Type: "json_object"}, 0, true, false, false, false, true},
		{"json_schema without schema", ref, `{"name": "Ada", "age": 36}`, &openai.ResponseFormat{Type: "json_schema", JSONSchema: json.RawMessage(`{"name": "x"}`)}, 0, true, false, false, false, true},
		{"json_schema not an object", ref, `{"name": "Ada", "age": 36}`, &openai.ResponseFormat{Type: "json_schema", JSONSchema: json.RawMessage(`"person"`)}, 0, true, true, false, true, false},
		{"schema does not compile", ref, `{"name": "Ada", "age": 36}`, format(`{"type": "dict"}`), 0, true, true, false, true, false},
		// The format makes a bare JSON value a JSON answer; without it, it is text.
		{"format makes a scalar JSON", text(`42`), `42.0`, &openai.ResponseFormat{Type: "json_schema", JSONSchema: json.RawMessage(`{"name": "n", "schema": {"type": "number"}}`)}, 0, true, true, true, false, true},
		{"no format: a JSON reference still scores as JSON", ref, `{"name": "Ada", "age": 36}`, nil, 0, true, false, false, false, true},
	}
	schemas := NewSchemas(SchemasOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Answer(tc.ref, text(tc.cand), Request{ResponseFormat: tc.rf, Schemas: schemas, JSONPassF1: tc.passF1})
			if s.Kind != KindJSON {
				t.Fatalf("kind %s, want json", s.Kind)
			}
			js := s.JSON
			if js.Valid != tc.valid || js.SchemaChecked != tc.checked || js.SchemaValid != tc.schema || (js.SchemaError != "") != tc.err || s.Pass != tc.pass {
				t.Errorf("got %+v pass=%v, want valid=%v checked=%v schema=%v err=%v pass=%v",
					js, s.Pass, tc.valid, tc.checked, tc.schema, tc.err, tc.pass)
			}
		})
	}
}

// TestSchemasKeepFormatsApart uses the same bytes as a schema and as a
// response_format's json_schema: the cache must not hand one for the other.
func TestSchemasKeepFormatsApart(t *testing.T) {
	schemas := NewSchemas(SchemasOptions{})
	wrapper := []byte(`{"name": "s", "schema": {"type": "string"}}`)
	for range 2 { // compile, then from the cache
		if err := schemas.Validate(wrapper, 1.0); err != nil {
			t.Errorf("as a schema (unknown keywords only) it accepts anything: %v", err)
		}
		if checked, err := schemas.validateFormat(wrapper, 1.0); !checked || !errors.Is(err, ErrSchemaMismatch) {
			t.Errorf("as a format it asks for a string: checked=%v err=%v", checked, err)
		}
	}
	if n := schemas.Compiles(); n != 2 {
		t.Errorf("compiled %d times, want 2", n)
	}
}

func TestAnswerPassThresholds(t *testing.T) {
	text := func(s string) *openai.Message {
		return &openai.Message{Role: "assistant", Content: openai.TextContent(s)}
	}
	ref := text("the cat sat on the mat")
	tests := []struct {
		name      string
		cand      string
		threshold float64
		pass      bool
	}{
		{"ROUGE-L 1", "The cat sat on the mat.", 0, true},
		{"ROUGE-L 0.5 passes the default", "on the mat the cat sat", 0, true},
		{"ROUGE-L 0.5 fails a higher threshold", "on the mat the cat sat", 0.9, false},
		{"disjoint", "a dog ran", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Answer(ref, text(tc.cand), Request{TextPassRougeL: tc.threshold})
			if s.Kind != KindText || s.Pass != tc.pass {
				t.Errorf("got kind=%s rougeL=%v pass=%v, want pass=%v", s.Kind, s.Agreement, s.Pass, tc.pass)
			}
		})
	}
}

// TestSchemasCompileEachSchemaOnce scores 200 calls over 15 tools, from several
// goroutines: each tool's schema is compiled once.
func TestSchemasCompileEachSchemaOnce(t *testing.T) {
	var tools []openai.Tool
	for i := range 15 {
		tools = append(tools, tool(fmt.Sprintf("tool_%d", i),
			fmt.Sprintf(`{"type": "object", "properties": {"n": {"type": "integer", "maximum": %d}}, "required": ["n"]}`, i)))
	}
	schemas := NewSchemas(SchemasOptions{})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := (g*50 + i) % 15
				msg := &openai.Message{Role: "assistant", ToolCalls: calls(call(fmt.Sprintf("tool_%d", n), fmt.Sprintf(`{"n": %d}`, n)))}
				if !Answer(msg, msg, Request{Tools: tools, Schemas: schemas}).Pass {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d valid calls failed", failed.Load())
	}
	if got := schemas.Compiles(); got != 15 {
		t.Errorf("compiled %d times for 15 tools, want 15", got)
	}
	if got := schemas.Len(); got != 15 {
		t.Errorf("holds %d schemas, want 15", got)
	}
}

func TestSchemasCacheInvalidSchemas(t *testing.T) {
	schemas := NewSchemas(SchemasOptions{})
	for range 3 {
		err := schemas.Validate([]byte(`{"type": "dict"}`), map[string]any{})
		if !errors.Is(err, ErrInvalidSchema) {
			t.Fatalf("got %v, want ErrInvalidSchema", err)
		}
	}
	if err := schemas.Validate([]byte(`{"type": `), nil); !errors.Is(err, ErrInvalidSchema) {
		t.Errorf("schema not JSON: got %v, want ErrInvalidSchema", err)
	}
	if got := schemas.Compiles(); got != 2 {
		t.Errorf("compiled %d times, want 2 (each invalid schema once)", got)
	}
	if err := schemas.Validate([]byte(`{"type": "string"}`), 1.0); !errors.Is(err, ErrSchemaMismatch) || errors.Is(err, ErrInvalidSchema) {
		t.Errorf("mismatch: got %v, want ErrSchemaMismatch only", err)
	}
}

func TestSchemasAreBounded(t *testing.T) {
	schema := func(i int) []byte { return fmt.Appendf(nil, `{"type": "integer", "maximum": %d}`, i) }
	t.Run("entries", func(t *testing.T) {
		schemas := NewSchemas(SchemasOptions{MaxEntries: 4})
		for i := range 100 {
			if err := schemas.Validate(schema(i), float64(i)); err != nil {
				t.Fatal(err)
			}
			if n := schemas.Len(); n > 4 {
				t.Fatalf("holds %d schemas, bound 4", n)
			}
		}
		// The most recent four are held; the first was let go and compiles again.
		_ = schemas.Validate(schema(99), 0.0)
		_ = schemas.Validate(schema(0), 0.0)
		if got := schemas.Compiles(); got != 101 {
			t.Errorf("compiled %d times, want 101", got)
		}
	})
	t.Run("least recently used goes first", func(t *testing.T) {
		schemas := NewSchemas(SchemasOptions{MaxEntries: 2})
		_ = schemas.Validate(schema(1), 0.0)
		_ = schemas.Validate(schema(2), 0.0)
		_ = schemas.Validate(schema(1), 0.0) // 1 used last: 2 goes when 3 comes
		_ = schemas.Validate(schema(3), 0.0)
		_ = schemas.Validate(schema(1), 0.0)
		if got := schemas.Compiles(); got != 3 {
			t.Errorf("compiled %d times, want 3 (schema 1 kept)", got)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		small := len(schema(10)) // every schema(10..99) has this length
		schemas := NewSchemas(SchemasOptions{MaxBytes: 3 * small})
		for i := 10; i < 100; i++ {
			_ = schemas.Validate(schema(i), 0.0)
			if n := schemas.Len(); n > 3 {
				t.Fatalf("holds %d schemas of %d bytes, bound %d bytes", n, small, 3*small)
			}
		}
		large := fmt.Appendf(nil, `{"type": "integer", "description": "%0*d"}`, 4*small, 0)
		before := schemas.Compiles()
		for range 3 {
			if err := schemas.Validate(large, 1.0); err != nil {
				t.Fatal(err)
			}
		}
		if got := schemas.Compiles() - before; got != 3 || schemas.Len() > 3 {
			t.Errorf("a schema over the byte bound: compiled %d times for 3 uses (want 3, never kept), %d held", got, schemas.Len())
		}
	})
}

// TestSchemasLoadNoOtherDocument checks that references out of the schema are refused,
// never fetched or read: a server that counts requests and a file that would make the
// schema compile.
func TestSchemasLoadNoOtherDocument(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/schema+json")
		_, _ = w.Write([]byte(`{"type": "string"}`))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "string.json")
	if err := os.WriteFile(file, []byte(`{"type": "string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{
		"http":     srv.URL + "/string.json",
		"file":     "file://" + filepath.ToSlash(file),
		"relative": "string.json",
		"$schema":  srv.URL + "/meta.json",
	}
	for name, ref := range refs {
		t.Run(name, func(t *testing.T) {
			doc := fmt.Sprintf(`{"type": "object", "properties": {"a": {"$ref": %q}}}`, ref)
			if name == "$schema" {
				doc = fmt.Sprintf(`{"$schema": %q, "type": "object"}`, ref)
			}
			err := NewSchemas(SchemasOptions{}).Validate([]byte(doc), map[string]any{"a": "x"})
			if !errors.Is(err, ErrInvalidSchema) || !errors.Is(err, ErrRemoteRef) {
				t.Errorf("got %v, want ErrInvalidSchema and ErrRemoteRef", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the schema server was asked %d times", n)
	}
}

func TestSchemasResolveWhatTheyHold(t *testing.T) {
	tests := []struct {
		name, schema   string
		valid, invalid any
	}{
		{"local $ref", `{"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}}`,
			map[string]any{"a": 1.0}, map[string]any{"a": "1"}},
		{"embedded $id", `{"$id": "https://example.com/root", "$defs": {"s": {"$id": "s", "type": "string"}}, "$ref": "s"}`,
			"x", 1.0},
		{"draft-07 metaschema is built in", `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "boolean"}`,
			true, "true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			schemas := NewSchemas(SchemasOptions{})
			if err := schemas.Validate([]byte(tc.schema), tc.valid); err != nil {
				t.Errorf("valid value: %v", err)
			}
			if err := schemas.Validate([]byte(tc.schema), tc.invalid); !errors.Is(err, ErrSchemaMismatch) {
				t.Errorf("invalid value: got %v, want ErrSchemaMismatch", err)
			}
		})
	}
}
