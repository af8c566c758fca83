package guard

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// FuzzReadRequestMatchesDecode holds ReadRequest, the gateway's one-pass read, to
// what RequestOf makes of openai.DecodeChatRequest's decoding of the same body:
// wherever the decoder accepts a body, both give the same Request or both refuse it.
// On any input ReadRequest must not panic.
func FuzzReadRequestMatchesDecode(f *testing.F) {
	const msgs = `"model": "m", "messages": [{"role": "user", "content": "hi \"x\" \\"}]`
	for _, s := range []string{
		`{` + msgs + `}`,
		`{` + msgs + `, "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}},
			{"type": "function", "function": {"name": "b\u00e9", "description": "d", "parameters": null}}, {"type": "custom", "custom": {"name": "c"}}]}`,
		`{` + msgs + `, "tool_choice": {"type": "function", "function": {"name": "a"}}, "parallel_tool_calls": false}`,
		`{` + msgs + `, "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "a"}}]}}}`,
		`{` + msgs + `, "tool_choice": "required", "tool_choice": "none"}`,
		`{` + msgs + `, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}}}`,
		`{` + msgs + `, "response_format": {"type": "json_object"}, "tools": [], "tool_choice": null}`,
		`{"tools": [{"type": "function", "function": {"name": "a", "name": "b"}}], ` + msgs + `}`,
		`{` + msgs + `, "tools": [{"function": {"name": "a"}, "type": "function"}], "response_format": {"json_schema": {"schema": true}, "type": "json_schema"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ReadRequest(body) // must not panic, whatever the input
		dec, decErr := openai.DecodeChatRequest(body)
		if decErr != nil || caseFoldedFormatKeys(body) {
			return
		}
		want, wantErr := RequestOf(dec)
		if err != nil {
			if wantErr == nil && !strings.Contains(err.Error(), "parallel_tool_calls") {
				t.Fatalf("ReadRequest refuses what the decoder reads: %v", err)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("ReadRequest reads what RequestOf refuses (%v): %s", wantErr, fmtRequest(got))
		}
		got.NoParallelCalls = false // a ChatRequest does not carry it
		if !reflect.DeepEqual(normal(got), normal(want)) {
			t.Fatalf("ReadRequest %s\nRequestOf   %s", fmtRequest(got), fmtRequest(want))
		}
	})
}

// normal makes empty slices nil, which DeepEqual tells apart.
func normal(r Request) Request {
	if len(r.Tools) == 0 {
		r.Tools = nil
	}
	if len(r.ToolChoice.Allowed) == 0 {
		r.ToolChoice.Allowed = nil
	}
	return r
}

// caseFoldedFormatKeys reports whether response_format has a key that encoding/json
// (which the decoder uses for it) matches to type or json_schema without case, while
// OpenAI and ReadRequest match keys exactly.
func caseFoldedFormatKeys(body []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return false
	}
	var rf map[string]json.RawMessage
	if json.Unmarshal(top["response_format"], &rf) != nil {
		return false
	}
	for k := range rf {
		for _, name := range []string{"type", "json_schema"} {
			if k != name && strings.EqualFold(k, name) {
				return true
			}
		}
	}
	return false
}

// FuzzCheck runs every check on answers with arbitrary content, arguments, names and
// finish reasons, against requests asking for JSON and schemas: Check must not panic,
// Pass must agree with Failed, and a detail must not quote content or arguments.
func FuzzCheck(f *testing.F) {
	f.Add("Hello", `{"city": "Paris"}`, "get_weather", "stop", uint8(0))
	f.Add(`{"label": "bug"}`, `{"passengers": [{"name": "A", "dob": "x"}]}`, "book", "tool_calls", uint8(3))
	f.Add("I can't help with that.", `[`, "", "length", uint8(1))
	g := mustNew(f, Options{RefusalPhrases: DefaultRefusalPhrases()})
	reqs := []*Request{
		withTools(),
		{ResponseType: "json_object"},
		{ResponseType: "json_schema", ResponseSchema: []byte(answerSchema)},
		{Tools: tools(), ToolChoice: ToolChoice{Mode: ChoiceRequired, Allowed: []string{"book"}}, NoParallelCalls: true},
	}
	f.Fuzz(func(t *testing.T, content, args, name, finish string, shape uint8) {
		req := reqs[int(shape)%len(reqs)]
		ans := text(content, finish)
		if shape&4 != 0 {
			ans = calls(finish, call("c1", name, args), call("c2", "get_weather", args))
			ans.Choices[0].Message.Content = openai.TextContent(content)
		}
		r := g.Check(req, ans)
		if r.Pass != (len(r.Failed) == 0) {
			t.Fatalf("Pass %v with %d failures", r.Pass, len(r.Failed))
		}
		for _, fl := range r.Failed {
			for _, payload := range []string{content, args} {
				if len(payload) >= 12 && strings.Contains(fl.Detail, payload) && !strings.Contains(name, payload) {
					t.Fatalf("%s detail quotes the answer: %s", fl.Check, fl.Detail)
				}
			}
		}
	})
}
