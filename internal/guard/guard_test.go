package guard

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/openai"
)

const weatherParams = `{"type": "object",
	"properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
	"required": ["city"], "additionalProperties": false}`

const bookParams = `{"type": "object",
	"properties": {"passengers": {"type": "array", "items": {"$ref": "#/$defs/passenger"}}},
	"required": ["passengers"],
	"$defs": {"passenger": {"type": "object", "properties": {"name": {"type": "string"}, "dob": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}}, "required": ["name", "dob"]}}}`

const answerSchema = `{"type": "object", "properties": {"label": {"enum": ["bug", "feature"]}, "score": {"type": "number"}}, "required": ["label"]}`

// tools offers get_weather and book (with schemas) and ping (without one).
func tools() []Tool {
	return []Tool{
		{Type: "function", Name: "get_weather", Parameters: []byte(weatherParams)},
		{Type: "function", Name: "book", Parameters: []byte(bookParams)},
		{Type: "function", Name: "ping"},
	}
}

func withTools() *Request { return &Request{Tools: tools()} }

func call(id, name, args string) openai.ToolCall {
	return openai.ToolCall{ID: id, Type: "function", Function: openai.FunctionCall{Name: name, Arguments: args}}
}

func text(content, finish string) *openai.ChatCompletion {
	return &openai.ChatCompletion{Choices: []openai.Choice{{
		Message:      openai.Message{Role: "assistant", Content: openai.TextContent(content)},
		FinishReason: finish,
	}}}
}

func calls(finish string, cs ...openai.ToolCall) *openai.ChatCompletion {
	return &openai.ChatCompletion{Choices: []openai.Choice{{
		Message:      openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}, ToolCalls: cs},
		FinishReason: finish,
	}}}
}

func refusal(s string) *openai.ChatCompletion {
	a := text("", "stop")
	a.Choices[0].Message.Content = openai.Content{IsNull: true}
	a.Choices[0].Message.Refusal = &s
	return a
}

func fail(c Check, detail string) Failure { return Failure{Check: c, Detail: detail} }

func mustNew(t testing.TB, opts Options) *Guards {
	t.Helper()
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCheck(t *testing.T) {
	jsonObject := &Request{ResponseType: "json_object"}
	jsonSchema := &Request{ResponseType: "json_schema", ResponseSchema: []byte(answerSchema)}
	parts := text("", "stop")
	parts.Choices[0].Message.Content = openai.Content{IsParts: true, Parts: []openai.ContentPart{{Type: "text", Text: "hello"}}}
	textAndCall := calls("tool_calls", call("c1", "ping", `{}`))
	textAndCall.Choices[0].Message.Content = openai.TextContent("Checking.")

	tests := []struct {
		name string
		req  *Request
		ans  *openai.ChatCompletion
		want []Failure
	}{
		// Answers that pass.
		{"text", &Request{}, text("Your flight leaves at 9:40.", "stop"), nil},
		{"text with tools offered", withTools(), text("Which city?", "stop"), nil},
		{"content parts", &Request{}, parts, nil},
		{"one call", withTools(), calls("tool_calls", call("c1", "get_weather", `{"city": "Paris", "days": 3}`)), nil},
		{"call with text", withTools(), textAndCall, nil},
		{"parallel calls", withTools(), calls("tool_calls",
			call("c1", "get_weather", `{"city": "Paris"}`),
			call("c2", "get_weather", `{"city": "Rome"}`),
			call("c3", "book", `{"passengers": [{"name": "Ada", "dob": "1815-12-10"}]}`)), nil},
		{"tool without schema takes any object", withTools(), calls("tool_calls", call("c1", "ping", ` {"anything": [1, 2]} `)), nil},
		{"forced call finishes with stop", &Request{Tools: tools(), ToolChoice: ToolChoice{Mode: ChoiceRequired, Allowed: []string{"ping"}}},
			calls("stop", call("c1", "ping", `{}`)), nil},
		{"json_object", jsonObject, text(` {"a": [1, 2]}`+"\n", "stop"), nil},
		{"json_object answered by a call", &Request{Tools: tools(), ResponseType: "json_object"}, calls("tool_calls", call("c1", "ping", `{}`)), nil},
		{"json_schema", jsonSchema, text(`{"label": "bug", "score": 0.5}`, "stop"), nil},
		{"json_schema without a schema", &Request{ResponseType: "json_schema"}, text(`[1]`, "stop"), nil},
		{"text format is not JSON", &Request{ResponseType: "text"}, text(`not JSON`, "stop"), nil},

		// not_empty
		{"no choices", &Request{}, &openai.ChatCompletion{}, []Failure{
			fail(NotEmpty, "the answer has no choices"),
			fail(FinishReason, "the answer has no choices, so no finish_reason")}},
		{"nil answer", &Request{}, nil, []Failure{
			fail(NotEmpty, "the answer has no choices"),
			fail(FinishReason, "the answer has no choices, so no finish_reason")}},
		{"blank content", &Request{}, text(" \n\t", "stop"), []Failure{fail(NotEmpty, "no content and no tool calls")}},
		{"null content", &Request{}, calls("stop"), []Failure{fail(NotEmpty, "no content and no tool calls")}},

		// not_refusal
		{"refusal field", &Request{}, refusal("I can't help with that."), []Failure{
			fail(NotEmpty, "no content and no tool calls"),
			fail(NotRefusal, "the model refused (the message's refusal is set)")}},
		{"refusal phrase is off by default", &Request{}, text("I'm sorry, but I can't assist with that.", "stop"), nil},
		{"empty refusal field", &Request{}, func() *openai.ChatCompletion {
			a := text("Fine.", "stop")
			empty := ""
			a.Choices[0].Message.Refusal = &empty
			return a
		}(), nil},

		// finish_reason
		{"length", &Request{}, text("The flight", "length"), []Failure{
			fail(FinishReason, "finish_reason is length: the answer was cut off at its token limit")}},
		{"content_filter", &Request{}, text("The", "content_filter"), []Failure{
			fail(FinishReason, "finish_reason is content_filter: the answer was filtered")}},
		{"missing finish_reason", &Request{}, text("The flight", ""), []Failure{
			fail(FinishReason, "finish_reason is missing (a stream cut off?)")}},
		{"tool_calls without calls", withTools(), text("Let me check.", "tool_calls"), []Failure{
			fail(FinishReason, "finish_reason is tool_calls but the answer makes no tool call")}},
		{"unknown finish_reason", &Request{}, text("Hi", "function_call"), []Failure{
			fail(FinishReason, `finish_reason "function_call" is neither stop nor tool_calls`)}},
		{"finish_reason that is not a name", &Request{}, text("Hi", "Sure, here it is"), []Failure{
			fail(FinishReason, "finish_reason is neither stop nor tool_calls, nor a name")}},

		// tool_known
		{"unknown tool", withTools(), calls("tool_calls", call("c1", "get_wether", `{"city": "Paris"}`)), []Failure{
			fail(ToolKnown, `tool call 0 "get_wether" is not among the request's tools`)}},
		{"no tools offered", &Request{}, calls("tool_calls", call("c1", "ping", `{}`)), []Failure{
			fail(ToolKnown, `tool call 0 "ping": the request offers no tools`)}},
		{"no function name", withTools(), calls("tool_calls", call("c1", "", `{}`)), []Failure{
			fail(ToolKnown, "tool call 0 has no function name")}},
		{"no id", withTools(), calls("tool_calls", call("", "ping", `{}`)), []Failure{
			fail(ToolKnown, "tool call 0 has no id")}},
		{"same id twice", withTools(), calls("tool_calls", call("c1", "ping", `{}`), call("c1", "ping", `{}`)), []Failure{
			fail(ToolKnown, "tool calls 0 and 1 have the same id")}},
		{"custom call not offered", withTools(), calls("tool_calls", openai.ToolCall{ID: "c1", Type: "custom"}), []Failure{
			fail(ToolKnown, `tool call 0 is of type "custom", which the request does not offer`)}},
		{"custom call offered", &Request{Tools: append(tools(), Tool{Type: "custom"})},
			calls("tool_calls", openai.ToolCall{ID: "c1", Type: "custom"}), nil},
		{"long tool name is clipped", withTools(), calls("tool_calls", call("c1", strings.Repeat("x", 100), `{}`)), []Failure{
			fail(ToolKnown, fmt.Sprintf("tool call 0 %q is not among the request's tools", strings.Repeat("x", 64)+"..."))}},

		// json_valid
		{"json_object not JSON", jsonObject, text(`{"a": 1,}`, "stop"), []Failure{
			fail(JSONValid, "content is not valid JSON (syntax error at byte 9)")}},
		{"json_object in a code fence", jsonObject, text("```json\n{\"a\": 1}\n```", "stop"), []Failure{
			fail(JSONValid, "content is not valid JSON (syntax error at byte 1)")}},
		{"json_object truncated", jsonObject, text(`{"a": [1, 2`, "length"), []Failure{
			fail(FinishReason, "finish_reason is length: the answer was cut off at its token limit"),
			fail(JSONValid, "content is not valid JSON (syntax error at byte 11)")}},
		{"json_object empty", jsonObject, text("", "stop"), []Failure{
			fail(NotEmpty, "no content and no tool calls"),
			fail(JSONValid, "content is empty")}},
		{"arguments not JSON", withTools(), calls("tool_calls", call("c1", "get_weather", `{"city": Paris}`)), []Failure{
			fail(JSONValid, `tool call 0 "get_weather": arguments are not valid JSON (syntax error at byte 10)`)}},
		{"arguments empty", withTools(), calls("tool_calls", call("c1", "ping", ``)), []Failure{
			fail(JSONValid, `tool call 0 "ping": arguments are empty`)}},
		{"arguments an array", withTools(), calls("tool_calls", call("c1", "ping", `["Paris"]`)), []Failure{
			fail(JSONValid, `tool call 0 "ping": arguments are a JSON array, not an object`)}},
		{"arguments a string", withTools(), calls("tool_calls", call("c1", "get_weather", `"{\"city\": \"Paris\"}"`)), []Failure{
			fail(JSONValid, `tool call 0 "get_weather": arguments are a JSON string, not an object`)}},
		{"arguments null", withTools(), calls("tool_calls", call("c1", "ping", `null`)), []Failure{
			fail(JSONValid, `tool call 0 "ping": arguments are a JSON null, not an object`)}},
		{"arguments of an unknown tool still parsed", withTools(), calls("tool_calls", call("c1", "nope", `{`)), []Failure{
			fail(ToolKnown, `tool call 0 "nope" is not among the request's tools`),
			fail(JSONValid, `tool call 0 "nope": arguments are not valid JSON (syntax error at byte 1)`)}},
		{"number out of range", withTools(), calls("tool_calls", call("c1", "get_weather", `{"city": "Paris", "days": 1e999}`)), []Failure{
			fail(JSONValid, `tool call 0 "get_weather": arguments are JSON that cannot be decoded (a number out of range)`)}},

		// schema_valid
		{"missing required argument", withTools(), calls("tool_calls", call("c1", "get_weather", `{"days": 2}`)), []Failure{
			fail(SchemaValid, `tool call 0 "get_weather": arguments do not match the parameters schema: "required" fails at # (missing "city")`)}},
		{"argument of the wrong type", withTools(), calls("tool_calls", call("c1", "get_weather", `{"city": "Paris", "days": "3"}`)), []Failure{
			fail(SchemaValid, `tool call 0 "get_weather": arguments do not match the parameters schema: "type" fails at #/properties/days (got string, want integer)`)}},
		{"extra argument", withTools(), calls("tool_calls", call("c1", "get_weather", `{"city": "Paris", "secret": "x"}`)), []Failure{
			fail(SchemaValid, `tool call 0 "get_weather": arguments do not match the parameters schema: "additionalProperties" fails at #`)}},
		{"nested argument through $ref", withTools(), calls("tool_calls", call("c1", "book", `{"passengers": [{"name": "Ada", "dob": "10/12/1815"}]}`)), []Failure{
			fail(SchemaValid, `tool call 0 "book": arguments do not match the parameters schema: "pattern" fails at #/$defs/passenger/properties/dob`)}},
		{"one bad call among parallel calls", withTools(), calls("tool_calls",
			call("c1", "get_weather", `{"city": "Paris"}`),
			call("c2", "get_weather", `{"city": "Rome", "days": 0}`)), []Failure{
			fail(SchemaValid, `tool call 1 "get_weather": arguments do not match the parameters schema: "minimum" fails at #/properties/days`)}},
		{"json_schema mismatch", jsonSchema, text(`{"label": "question"}`, "stop"), []Failure{
			fail(SchemaValid, `content does not match response_format's json_schema: "enum" fails at #/properties/label`)}},
		{"json_schema not JSON", jsonSchema, text(`label: bug`, "stop"), []Failure{
			fail(JSONValid, "content is not valid JSON (syntax error at byte 1)")}},
		{"parameters schema does not compile", &Request{Tools: []Tool{{Type: "function", Name: "f", Parameters: []byte(`{"type": 12}`)}}},
			calls("tool_calls", call("c1", "f", `{}`)), []Failure{
				fail(SchemaValid, `tool call 0 "f": the parameters schema does not compile, so the arguments cannot be checked`)}},
		{"parameters schema refers elsewhere", &Request{Tools: []Tool{{Type: "function", Name: "f", Parameters: []byte(`{"$ref": "https://example.com/s.json"}`)}}},
			calls("tool_calls", call("c1", "f", `{}`)), []Failure{
				fail(SchemaValid, `tool call 0 "f": the parameters schema refers to another document (never loaded), so the arguments cannot be checked`)}},
		{"json_schema does not compile", &Request{ResponseType: "json_schema", ResponseSchema: []byte(`{"type": "thing"}`)},
			text(`{}`, "stop"), []Failure{
				fail(SchemaValid, `response_format's json_schema does not compile, so the content cannot be checked`)}},

		// Several checks failing at once, in one answer and across choices.
		{"combined", &Request{Tools: tools(), NoParallelCalls: true}, calls("length",
			call("c1", "get_weather", `{"city": 7}`),
			call("c1", "delete_all", `{}`),
			call("c3", "book", `{"passengers": [`)), []Failure{
			fail(FinishReason, "finish_reason is length: the answer was cut off at its token limit"),
			fail(ToolKnown, "parallel_tool_calls is false but the answer makes 3 tool calls"),
			fail(ToolKnown, `tool call 1 "delete_all" is not among the request's tools`),
			fail(ToolKnown, "tool calls 0 and 1 have the same id"),
			fail(SchemaValid, `tool call 0 "get_weather": arguments do not match the parameters schema: "type" fails at #/properties/city (got number, want string)`),
			fail(JSONValid, `tool call 2 "book": arguments are not valid JSON (syntax error at byte 16)`)}},
		{"choices", withTools(), &openai.ChatCompletion{Choices: []openai.Choice{
			{Index: 0, Message: openai.Message{Role: "assistant", Content: openai.TextContent("Hi")}, FinishReason: "stop"},
			{Index: 1, Message: openai.Message{Role: "assistant", ToolCalls: []openai.ToolCall{call("c1", "nope", `{}`)}}, FinishReason: "tool_calls"},
			{Index: 2, Message: openai.Message{Role: "assistant", Content: openai.TextContent("")}, FinishReason: "stop"},
		}}, []Failure{
			fail(ToolKnown, `choice 1: tool call 0 "nope" is not among the request's tools`),
			fail(NotEmpty, "choice 2: no content and no tool calls")}},
	}
	g := mustNew(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := g.Check(tt.req, tt.ans)
			if got.Pass != (len(tt.want) == 0) {
				t.Errorf("Pass = %v, want %v (%s)", got.Pass, len(tt.want) == 0, got)
			}
			if !reflect.DeepEqual(got.Failed, tt.want) {
				t.Errorf("failures:\n got %s\nwant %s", fmtFailures(got.Failed), fmtFailures(tt.want))
			}
		})
	}
}

func fmtFailures(fs []Failure) string {
	return Result{Failed: fs}.String()
}

func TestToolChoice(t *testing.T) {
	named := ToolChoice{Mode: ChoiceRequired, Allowed: []string{"get_weather"}}
	allowedAuto := ToolChoice{Mode: ChoiceAuto, Allowed: []string{"get_weather", "ping"}}
	allowedRequired := ToolChoice{Mode: ChoiceRequired, Allowed: []string{"get_weather", "ping"}}
	weather := call("c1", "get_weather", `{"city": "Paris"}`)
	ping := call("c2", "ping", `{}`)
	book := call("c3", "book", `{"passengers": []}`)
	tests := []struct {
		name   string
		choice ToolChoice
		ans    *openai.ChatCompletion
		want   string // the ToolKnown failures, as Result.String writes them; "" for none
	}{
		{"auto, text", ToolChoice{}, text("Hi", "stop"), ""},
		{"auto, call", ToolChoice{Mode: ChoiceAuto}, calls("tool_calls", weather), ""},
		{"none, text", ToolChoice{Mode: ChoiceNone}, text("Hi", "stop"), ""},
		{"none, call", ToolChoice{Mode: ChoiceNone}, calls("tool_calls", weather, ping),
			"tool_known: tool_choice is none but the answer makes 2 tool call(s)"},
		{"required, call", ToolChoice{Mode: ChoiceRequired}, calls("tool_calls", ping), ""},
		{"required, text", ToolChoice{Mode: ChoiceRequired}, text("Hi", "stop"),
			"tool_known: tool_choice requires a tool call but the answer makes none"},
		{"named, called", named, calls("stop", weather), ""},
		{"named, called twice", named, calls("tool_calls", weather, call("c4", "get_weather", `{"city": "Rome"}`)), ""},
		{"named, text", named, text("Hi", "stop"),
			`tool_known: tool_choice requires a call to "get_weather" but the answer makes none`},
		{"named, another called", named, calls("tool_calls", ping),
			`tool_known: tool call 0 "ping" is not allowed by tool_choice`},
		{"named, and another", named, calls("tool_calls", weather, ping),
			`tool_known: tool call 1 "ping" is not allowed by tool_choice`},
		{"allowed auto, text", allowedAuto, text("Hi", "stop"), ""},
		{"allowed auto, allowed calls", allowedAuto, calls("tool_calls", weather, ping), ""},
		{"allowed auto, other call", allowedAuto, calls("tool_calls", book),
			`tool_known: tool call 0 "book" is not allowed by tool_choice`},
		{"allowed required, text", allowedRequired, text("Hi", "stop"),
			"tool_known: tool_choice requires a tool call but the answer makes none"},
		{"allowed required, call", allowedRequired, calls("tool_calls", ping), ""},
	}
	g := mustNew(t, Options{Checks: []Check{ToolKnown}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{Tools: tools(), ToolChoice: tt.choice}
			got := g.Check(req, tt.ans)
			if s := got.String(); (tt.want == "" && !got.Pass) || (tt.want != "" && s != tt.want) {
				t.Errorf("got %q, want %q", s, tt.want)
			}
		})
	}
}

func TestChecksTurnedOff(t *testing.T) {
	bad := calls("length", call("c1", "get_weather", `{"days": 2}`), call("c2", "nope", `{`))
	bad.Choices[0].Message.Refusal = new(string)
	*bad.Choices[0].Message.Refusal = "no"
	req := &Request{Tools: tools(), ToolChoice: ToolChoice{Mode: ChoiceNone}}
	all := mustNew(t, Options{}).Check(req, bad)
	for _, c := range AllChecks() {
		if c == NotEmpty {
			continue // the answer has calls
		}
		if !all.Fails(c) {
			t.Errorf("with every check on, %s did not fail: %s", c, all)
		}
	}
	for _, off := range AllChecks() {
		t.Run("without "+string(off), func(t *testing.T) {
			var on []Check
			for _, c := range AllChecks() {
				if c != off {
					on = append(on, c)
				}
			}
			g := mustNew(t, Options{Checks: on})
			if g.Enabled(off) {
				t.Errorf("Enabled(%s) with it off", off)
			}
			got := g.Check(req, bad)
			if got.Fails(off) {
				t.Errorf("%s failed though it is off: %s", off, got)
			}
			for _, f := range all.Failed {
				if f.Check != off && f.Check != JSONValid && f.Check != SchemaValid && !got.Fails(f.Check) {
					t.Errorf("%s no longer fails with %s off", f.Check, off)
				}
			}
		})
	}
	t.Run("one check only", func(t *testing.T) {
		got := mustNew(t, Options{Checks: []Check{FinishReason}}).Check(req, bad)
		want := "finish_reason: finish_reason is length: the answer was cut off at its token limit"
		if got.String() != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

// TestUnparsableReportedOnce: arguments or content that do not parse fail json_valid
// when it is on, else schema_valid when a schema was to be checked, never both.
func TestUnparsableReportedOnce(t *testing.T) {
	argsBad := calls("tool_calls", call("c1", "get_weather", `{"city"`))
	contentBad := text(`{"label"`, "stop")
	schemaReq := &Request{ResponseType: "json_schema", ResponseSchema: []byte(answerSchema)}
	tests := []struct {
		checks []Check
		req    *Request
		ans    *openai.ChatCompletion
		want   string
	}{
		{nil, withTools(), argsBad, `json_valid: tool call 0 "get_weather": arguments are not valid JSON (syntax error at byte 7)`},
		{[]Check{SchemaValid}, withTools(), argsBad,
			`schema_valid: tool call 0 "get_weather": arguments are not valid JSON (syntax error at byte 7), so they cannot match the parameters schema`},
		{[]Check{SchemaValid}, withTools(), calls("tool_calls", call("c1", "ping", `{`)), "pass"}, // no schema to check
		{nil, schemaReq, contentBad, "json_valid: content is not valid JSON (syntax error at byte 8)"},
		{[]Check{SchemaValid}, schemaReq, contentBad,
			"schema_valid: content is not valid JSON (syntax error at byte 8), so it cannot match response_format's json_schema"},
		{[]Check{SchemaValid}, &Request{ResponseType: "json_object"}, contentBad, "pass"},
		{[]Check{JSONValid}, withTools(), calls("tool_calls", call("c1", "get_weather", `{"days": 2}`)), "pass"},
	}
	for i, tt := range tests {
		got := mustNew(t, Options{Checks: tt.checks}).Check(tt.req, tt.ans)
		if got.String() != tt.want {
			t.Errorf("%d: got %q, want %q", i, got, tt.want)
		}
	}
}

func TestRefusalPhrases(t *testing.T) {
	g := mustNew(t, Options{RefusalPhrases: DefaultRefusalPhrases(), MaxRefusalScan: 50})
	tests := []struct {
		content string
		refusal bool
	}{
		{"I'm sorry, but I can't assist with that.", true},
		{"  I’M SORRY, BUT I CAN’T HELP WITH THAT.", true}, // typographic apostrophes, case
		{"Sorry — I cannot comply with this request.", true},
		{"As an AI language model, I have no opinions.", true},
		{"I'm sorry, but I can't change a basic economy reservation.", false},
		{"Your flight is booked. Note that " + strings.Repeat("x", 50) + " I can't help with that.", false}, // beyond the scan
		{"", false},
	}
	for _, tt := range tests {
		got := g.Check(&Request{}, text(tt.content, "stop"))
		if got.Fails(NotRefusal) != tt.refusal {
			t.Errorf("%q: refusal %v, want %v (%s)", tt.content, got.Fails(NotRefusal), tt.refusal, got)
		}
	}
	if got := g.Check(&Request{}, text("I can't help with that.", "stop")).String(); got != "not_refusal: the content opens with a refusal phrase" {
		t.Errorf("detail %q", got)
	}
}

// TestDetailsCarryNoPayload fails answers in every way whose content and arguments
// hold a marker; no detail may repeat it.
func TestDetailsCarryNoPayload(t *testing.T) {
	const secret = "4111-1111-1111-1111"
	reqs := []*Request{
		withTools(),
		{Tools: tools(), ToolChoice: ToolChoice{Mode: ChoiceNone}, NoParallelCalls: true},
		{ResponseType: "json_schema", ResponseSchema: []byte(answerSchema)},
		{ResponseType: "json_object"},
	}
	answers := []*openai.ChatCompletion{
		text(secret, "length"),
		text(`{"label": "`+secret+`"}`, "stop"),
		text(`{"label": `+secret+`}`, "stop"),
		text(`{"label": "bug", "score": "`+secret+`"}`, "stop"),
		text("I can't help with that. "+secret, secret),
		calls("tool_calls",
			call("c1", "get_weather", `{"city": "Paris", "`+secret+`": 1}`),
			call("c2", "get_weather", `{"city": ["`+secret+`"]}`),
			call("c3", "book", `{"passengers": [{"name": "`+secret+`", "dob": "`+secret+`"}]}`),
			call("c4", "ping", secret),
			call("c5", "ping", `"`+secret+`"`),
			call("c6", "get_weather", `{"city": "Paris", "days": "`+secret+`"}`)),
		refusal(secret),
	}
	g := mustNew(t, Options{RefusalPhrases: DefaultRefusalPhrases()})
	n := 0
	for _, req := range reqs {
		for _, ans := range answers {
			for _, f := range g.Check(req, ans).Failed {
				n++
				if strings.Contains(f.Detail, secret) || strings.Contains(f.Detail, "4111") {
					t.Errorf("%s detail repeats the answer: %s", f.Check, f.Detail)
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d failures: the answers do not fail as meant", n)
	}
}

func TestNewRejectsUnknownCheck(t *testing.T) {
	_, err := New(Options{Checks: []Check{ToolKnown, "tool_valid"}})
	if !errors.Is(err, ErrUnknownCheck) {
		t.Fatalf("err = %v, want ErrUnknownCheck", err)
	}
	want := `guard: unknown check "tool_valid" (have not_empty, not_refusal, finish_reason, tool_known, json_valid, schema_valid)`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestSharedSchemasCompileOnce(t *testing.T) {
	schemas := compare.NewSchemas(compare.SchemasOptions{})
	g := mustNew(t, Options{Schemas: schemas})
	ans := calls("tool_calls", call("c1", "get_weather", `{"city": "Paris"}`), call("c2", "book", `{"passengers": []}`))
	for range 5 {
		if r := g.Check(withTools(), ans); !r.Pass {
			t.Fatal(r)
		}
	}
	if schemas.Compiles() != 2 {
		t.Errorf("compiled %d schemas, want 2", schemas.Compiles())
	}
}

// TestStreamReassembled checks answers streamed and reassembled by openai.Accumulator,
// as the gateway holds a stream: a complete one passes; one cut off fails.
func TestStreamReassembled(t *testing.T) {
	events := []string{
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
	}
	g := mustNew(t, Options{})
	req := withTools()
	if !req.HoldStream() {
		t.Error("a request with tools should hold its stream")
	}
	for cut := 1; cut <= len(events); cut++ {
		acc := openai.NewAccumulator()
		for _, e := range events[:cut] {
			if _, err := acc.AddData([]byte(e)); err != nil {
				t.Fatal(err)
			}
		}
		got := g.Check(req, acc.Completion())
		if got.Pass != (cut == len(events)) {
			t.Errorf("after %d of %d events: %s", cut, len(events), got)
		}
	}
}

func TestHoldStream(t *testing.T) {
	tests := []struct {
		req  Request
		want bool
	}{
		{Request{}, false},
		{Request{ResponseType: "text"}, false},
		{Request{ResponseType: "json_object"}, true},
		{Request{ResponseType: "json_schema"}, true},
		{Request{Tools: tools()}, true},
		{Request{Tools: tools(), ToolChoice: ToolChoice{Mode: ChoiceNone}}, false},
	}
	for i, tt := range tests {
		if got := tt.req.HoldStream(); got != tt.want {
			t.Errorf("%d: HoldStream = %v, want %v", i, got, tt.want)
		}
	}
}

func TestCheckConcurrently(t *testing.T) {
	g := mustNew(t, Options{})
	done := make(chan bool)
	for w := range 8 {
		go func() {
			ok := true
			for i := range 50 {
				ans := calls("tool_calls", call("c1", "get_weather", fmt.Sprintf(`{"city": "c%d", "days": %d}`, w, i+1)))
				ok = ok && g.Check(withTools(), ans).Pass
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("a valid answer failed under concurrency")
		}
	}
}
