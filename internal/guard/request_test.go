package guard

import (
	"errors"
	"reflect"
	"testing"
	"unsafe"

	"github.com/downshift-dev/downshift/internal/openai"
)

func TestReadRequest(t *testing.T) {
	const msgs = `"model": "m", "messages": [{"role": "user", "content": "hi \"tools\": []"}]`
	tests := []struct {
		name string
		body string
		want Request
	}{
		{"bare", `{` + msgs + `}`, Request{}},
		{"tools", `{` + msgs + `, "tools": [
			{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
			{"type": "function", "function": {"name": "ping", "parameters": null}},
			{"type": "custom", "custom": {"name": "grammar"}}]}`,
			Request{Tools: []Tool{
				{Type: "function", Name: "get_weather", Parameters: []byte(`{"type": "object"}`)},
				{Type: "function", Name: "ping"},
				{Type: "custom"}}}},
		{"null members", `{` + msgs + `, "tools": null, "tool_choice": null, "response_format": null, "parallel_tool_calls": null}`, Request{}},
		{"tool_choice none", `{` + msgs + `, "tool_choice": "none"}`, Request{ToolChoice: ToolChoice{Mode: ChoiceNone}}},
		{"tool_choice auto", `{` + msgs + `, "tool_choice": "auto"}`, Request{ToolChoice: ToolChoice{Mode: ChoiceAuto}}},
		{"tool_choice required", `{` + msgs + `, "tool_choice": "required"}`, Request{ToolChoice: ToolChoice{Mode: ChoiceRequired}}},
		{"tool_choice function", `{` + msgs + `, "tool_choice": {"type": "function", "function": {"name": "ping"}}}`,
			Request{ToolChoice: ToolChoice{Mode: ChoiceRequired, Allowed: []string{"ping"}}}},
		{"tool_choice allowed_tools", `{` + msgs + `, "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required",
			"tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}]}}}`,
			Request{ToolChoice: ToolChoice{Mode: ChoiceRequired, Allowed: []string{"a", "b"}}}},
		{"tool_choice allowed_tools empty", `{` + msgs + `, "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}`,
			Request{ToolChoice: ToolChoice{Mode: ChoiceNone}}},
		{"parallel_tool_calls false", `{` + msgs + `, "parallel_tool_calls": false}`, Request{NoParallelCalls: true}},
		{"parallel_tool_calls true", `{` + msgs + `, "parallel_tool_calls": true}`, Request{}},
		{"json_object", `{` + msgs + `, "response_format": {"type": "json_object"}}`, Request{ResponseType: "json_object"}},
		{"json_schema", `{` + msgs + `, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": {"type": "object", "required": ["a"]}}}}`,
			Request{ResponseType: "json_schema", ResponseSchema: []byte(`{"type": "object", "required": ["a"]}`)}},
		{"json_schema without schema", `{` + msgs + `, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}`,
			Request{ResponseType: "json_schema"}},
		{"repeated key, the last counts", `{` + msgs + `, "tool_choice": "none", "tool_choice": "required"}`,
			Request{ToolChoice: ToolChoice{Mode: ChoiceRequired}}},
		{"escaped key", `{` + msgs + `, "tool_ch\u006fice": "none"}`, Request{ToolChoice: ToolChoice{Mode: ChoiceNone}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := openai.ScanChatRequest([]byte(tt.body)); err != nil {
				t.Fatalf("the gateway would not accept the body: %v", err)
			}
			got, err := ReadRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %s\nwant %s", fmtRequest(got), fmtRequest(tt.want))
			}
		})
	}
}

func fmtRequest(r Request) string {
	s := "tools:"
	for _, t := range r.Tools {
		s += " {" + t.Type + " " + t.Name + " " + string(t.Parameters) + "}"
	}
	return s + " choice: " + r.ToolChoice.Mode + " " + reflect.ValueOf(r.ToolChoice.Allowed).String() +
		" noParallel: " + map[bool]string{true: "true", false: "false"}[r.NoParallelCalls] +
		" format: " + r.ResponseType + " " + string(r.ResponseSchema)
}

func TestReadRequestRejects(t *testing.T) {
	const msgs = `"model": "m", "messages": [{"role": "user", "content": "hi"}]`
	tests := []struct{ name, body, want string }{
		{"not an object", `[1]`, "guard: request cannot be checked: the body is not a JSON object"},
		{"tools not array", `{` + msgs + `, "tools": {}}`, "guard: request cannot be checked: tools is not an array"},
		{"tool not object", `{` + msgs + `, "tools": [1]}`, "guard: request cannot be checked: tools[0] is not an object"},
		{"tool without name", `{` + msgs + `, "tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {}}]}`,
			"guard: request cannot be checked: tools[1].function.name is missing"},
		{"parameters not object", `{` + msgs + `, "tools": [{"type": "function", "function": {"name": "a", "parameters": []}}]}`,
			"guard: request cannot be checked: tools[0].function.parameters is not an object"},
		{"tool_choice unknown mode", `{` + msgs + `, "tool_choice": "any"}`, "guard: request cannot be checked: tool_choice is not auto, none or required"},
		{"tool_choice unknown type", `{` + msgs + `, "tool_choice": {"type": "web_search"}}`,
			`guard: request cannot be checked: tool_choice.type "web_search" is not function or allowed_tools`},
		{"tool_choice function without name", `{` + msgs + `, "tool_choice": {"type": "function", "function": {}}}`,
			"guard: request cannot be checked: tool_choice.function.name is missing"},
		{"parallel_tool_calls not bool", `{` + msgs + `, "parallel_tool_calls": "no"}`, "guard: request cannot be checked: parallel_tool_calls is not a boolean"},
		{"response_format not object", `{` + msgs + `, "response_format": "json"}`, "guard: request cannot be checked: response_format is not an object"},
		{"json_schema.schema not schema", `{` + msgs + `, "response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}`,
			"guard: request cannot be checked: response_format.json_schema.schema is not a schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadRequest([]byte(tt.body))
			if !errors.Is(err, ErrRequest) || err.Error() != tt.want {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestReadRequestSharesBody: schemas are slices of the body, not copies.
func TestReadRequestSharesBody(t *testing.T) {
	body := []byte(`{"model": "m", "messages": [{"role": "user", "content": "hi"}],
		"tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}],
		"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}}`)
	r, err := ReadRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{r.Tools[0].Parameters, r.ResponseSchema} {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		start := uintptr(unsafe.Pointer(unsafe.SliceData(body)))
		if p < start || p >= start+uintptr(len(body)) {
			t.Errorf("%s is a copy", b)
		}
	}
}

func TestRequestOf(t *testing.T) {
	body := []byte(`{"model": "m", "messages": [{"role": "user", "content": "hi"}],
		"tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
			{"type": "function", "function": {"name": "b"}}],
		"tool_choice": {"type": "function", "function": {"name": "a"}},
		"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}}`)
	dec, err := openai.DecodeChatRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := RequestOf(dec)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReadRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RequestOf  %s\nReadRequest %s", fmtRequest(got), fmtRequest(want))
	}
	dec.ToolChoice = []byte(`"sometimes"`)
	if _, err := RequestOf(dec); !errors.Is(err, ErrRequest) {
		t.Errorf("bad tool_choice: err = %v", err)
	}
}
