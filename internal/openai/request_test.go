package openai

import (
	"errors"
	"strings"
	"testing"
)

const okMessages = `"messages":[{"role":"user","content":"hi"}]`

func TestDecodeChatRequestErrors(t *testing.T) {
	roles := "Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
	tests := []struct {
		name, body, param, message string
	}{
		{"not JSON", `{"model":`, "", MessageParseBody},
		{"empty body", ``, "", MessageParseBody},
		{"array body", `[1]`, "", MessageParseBody},
		{"null body", `null`, "", MessageParseBody},
		{"string body", `"x"`, "", MessageParseBody},
		{"trailing garbage", `{"model":"m",` + okMessages + `} x`, "", MessageParseBody},
		{"model missing", `{` + okMessages + `}`, "model", "you must provide a model parameter"},
		{"model empty", `{"model":"",` + okMessages + `}`, "model",
			"Invalid 'model': empty string. Expected a string with minimum length 1, but got an empty string instead."},
		{"model number", `{"model":4,` + okMessages + `}`, "model",
			"Invalid type for 'model': expected a string, but got an integer instead."},
		{"model null", `{"model":null,` + okMessages + `}`, "model",
			"Invalid type for 'model': expected a string, but got null instead."},
		{"messages missing", `{"model":"m"}`, "messages", "Missing required parameter: 'messages'."},
		{"messages string", `{"model":"m","messages":"hi"}`, "messages",
			"Invalid type for 'messages': expected an array, but got a string instead."},
		{"messages object", `{"model":"m","messages":{}}`, "messages",
			"Invalid type for 'messages': expected an array, but got an object instead."},
		{"messages empty", `{"model":"m","messages":[]}`, "messages",
			"Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."},
		{"message not object", `{"model":"m","messages":[{"role":"user","content":"a"},"hi"]}`, "messages[1]",
			"Invalid type for 'messages[1]': expected an object, but got a string instead."},
		{"role missing", `{"model":"m","messages":[{"content":"hi"}]}`, "messages[0].role",
			"Missing required parameter: 'messages[0].role'."},
		{"role invalid", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":"c"},{"role":"bot","content":"d"}]}`,
			"messages[3].role", "Invalid value: 'bot'. " + roles},
		{"role case matters", `{"model":"m","messages":[{"role":"User","content":"a"}]}`,
			"messages[0].role", "Invalid value: 'User'. " + roles},
		{"role not string", `{"model":"m","messages":[{"role":1}]}`, "messages[0].role",
			"Invalid type for 'messages[0].role': expected a string, but got an integer instead."},
		{"content number", `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content",
			"Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an integer instead."},
		{"content part not object", `{"model":"m","messages":[{"role":"user","content":["a"]}]}`, "messages[0].content[0]",
			"Invalid type for 'messages[0].content[0]': expected an object, but got a string instead."},
		{"content part without type", `{"model":"m","messages":[{"role":"user","content":[{"text":"a"}]}]}`, "messages[0].content[0].type",
			"Missing required parameter: 'messages[0].content[0].type'."},
		{"content part text not string", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":true}]}]}`, "messages[0].content[0].text",
			"Invalid type for 'messages[0].content[0].text': expected a string, but got a boolean instead."},
		{"tool call id not string", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":7}]}]}`,
			"messages[0].tool_calls[1].id", "Invalid type for 'messages[0].tool_calls[1].id': expected a string, but got an integer instead."},
		{"tool_calls not array", `{"model":"m","messages":[{"role":"assistant","tool_calls":{}}]}`, "messages[0].tool_calls",
			"Invalid type for 'messages[0].tool_calls': expected an array, but got an object instead."},
		{"stream string", `{"model":"m",` + okMessages + `,"stream":"true"}`, "stream",
			"Invalid type for 'stream': expected a boolean, but got a string instead."},
		{"stream number", `{"model":"m",` + okMessages + `,"stream":1}`, "stream",
			"Invalid type for 'stream': expected a boolean, but got an integer instead."},
		{"stream_options include_usage", `{"model":"m",` + okMessages + `,"stream_options":{"include_usage":"yes"}}`,
			"stream_options.include_usage", "Invalid type for 'stream_options.include_usage': expected a boolean, but got a string instead."},
		{"tools object", `{"model":"m",` + okMessages + `,"tools":{}}`, "tools",
			"Invalid type for 'tools': expected an array, but got an object instead."},
		{"tool not object", `{"model":"m",` + okMessages + `,"tools":[1]}`, "tools[0]",
			"Invalid type for 'tools[0]': expected an object, but got an integer instead."},
		{"tool type missing", `{"model":"m",` + okMessages + `,"tools":[{"function":{"name":"f"}}]}`, "tools[0].type",
			"Missing required parameter: 'tools[0].type'."},
		{"tool function missing", `{"model":"m",` + okMessages + `,"tools":[{"type":"function"}]}`, "tools[0].function",
			"Missing required parameter: 'tools[0].function'."},
		{"tool function name missing", `{"model":"m",` + okMessages + `,"tools":[{"type":"function","function":{"name":"ok"}},{"type":"function","function":{"description":"d"}}]}`,
			"tools[1].function.name", "Missing required parameter: 'tools[1].function.name'."},
		{"tool function name empty", `{"model":"m",` + okMessages + `,"tools":[{"type":"function","function":{"name":""}}]}`,
			"tools[0].function.name", "Invalid 'tools[0].function.name': empty string. Expected a string with minimum length 1, but got an empty string instead."},
		{"tool parameters not object", `{"model":"m",` + okMessages + `,"tools":[{"type":"function","function":{"name":"f","parameters":"{}"}}]}`,
			"tools[0].function.parameters", "Invalid type for 'tools[0].function.parameters': expected an object, but got a string instead."},
		{"metadata value not string", `{"model":"m",` + okMessages + `,"metadata":{"workload":3}}`, "metadata.workload",
			"Invalid type for 'metadata.workload': expected a string, but got an integer instead."},
		{"response_format type", `{"model":"m",` + okMessages + `,"response_format":"json"}`, "response_format",
			"Invalid type for 'response_format': expected an object, but got a string instead."},
		{"user number", `{"model":"m",` + okMessages + `,"user":1.5}`, "user",
			"Invalid type for 'user': expected a string, but got a decimal instead."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeChatRequest([]byte(tt.body))
			if err == nil {
				t.Fatalf("no error; decoded %+v", req)
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v is not a *RequestError", err, err)
			}
			if re.Param != tt.param {
				t.Errorf("Param = %q, want %q", re.Param, tt.param)
			}
			if re.Message != tt.message {
				t.Errorf("Message = %q\nwant      %q", re.Message, tt.message)
			}
			if !strings.Contains(re.Error(), re.Message) {
				t.Errorf("Error() = %q does not hold the message", re.Error())
			}
		})
	}
}

func TestDecodeChatRequestReadsKnownFields(t *testing.T) {
	body := `{
	  "model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
	  "unknown_field": {"kept": "by the gateway, ignored here"},
	  "temperature": null, "tool_choice": "auto", "user": "u-1",
	  "metadata": {"workload": "route-ticket"},
	  "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
	  "messages": [
	    {"role": "developer", "content": "be brief"},
	    {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}}]},
	    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"a\":1}"}}]},
	    {"role": "tool", "tool_call_id": "call_1", "content": "{\"ok\":true}"},
	    {"role": "assistant", "content": null, "refusal": "no"}
	  ],
	  "tools": [
	    {"type": "function", "function": {"name": "get", "description": "gets", "parameters": {"type": "object"}, "strict": true}},
	    {"type": "custom", "custom": {"name": "grammar_tool"}}
	  ]
	}`
	req, err := DecodeChatRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.Model != "gpt-4o" || !req.Stream || req.StreamOptions == nil || !req.StreamOptions.IncludeUsage {
		t.Errorf("model/stream: %+v", req)
	}
	if string(req.ToolChoice) != `"auto"` || req.User != "u-1" || req.Metadata["workload"] != "route-ticket" {
		t.Errorf("tool_choice/user/metadata: %s %q %v", req.ToolChoice, req.User, req.Metadata)
	}
	if req.ResponseFormat == nil || req.ResponseFormat.Type != "json_schema" || len(req.ResponseFormat.JSONSchema) == 0 {
		t.Errorf("response_format: %+v", req.ResponseFormat)
	}
	if len(req.Messages) != 5 {
		t.Fatalf("%d messages", len(req.Messages))
	}
	m := req.Messages
	if m[0].Role != "developer" || m[0].Content.Text != "be brief" {
		t.Errorf("message 0: %+v", m[0])
	}
	if !m[1].Content.IsParts || len(m[1].Content.Parts) != 2 || m[1].Content.Parts[1].Type != "image_url" || len(m[1].Content.Parts[1].Other) == 0 {
		t.Errorf("message 1: %+v", m[1])
	}
	if !m[2].Content.IsNull || len(m[2].ToolCalls) != 1 || m[2].ToolCalls[0].Function.Arguments != `{"a":1}` {
		t.Errorf("message 2: %+v", m[2])
	}
	if m[3].ToolCallID != "call_1" || m[3].Content.Text != `{"ok":true}` {
		t.Errorf("message 3: %+v", m[3])
	}
	if m[4].Refusal == nil || *m[4].Refusal != "no" || !m[4].Content.IsNull {
		t.Errorf("message 4: %+v", m[4])
	}
	if len(req.Tools) != 2 || req.Tools[0].Function.Name != "get" || req.Tools[0].Function.Strict == nil ||
		string(req.Tools[0].Function.Parameters) != `{"type": "object"}` || req.Tools[1].Type != "custom" {
		t.Errorf("tools: %+v", req.Tools)
	}
}

func TestDecodeChatRequestKeyCaseMatters(t *testing.T) {
	// encoding/json would match "Model" to the model field; OpenAI would not.
	_, err := DecodeChatRequest([]byte(`{"Model":"m",` + okMessages + `}`))
	var re *RequestError
	if !errors.As(err, &re) || re.Param != "model" {
		t.Fatalf("got %v, want a model error", err)
	}
}

func TestDecodeChatRequestNullOptionalFieldsAreAbsent(t *testing.T) {
	body := `{"model":"m",` + okMessages + `,"stream":null,"stream_options":null,"tools":null,"tool_choice":null,"response_format":null,"metadata":null,"user":null}`
	req, err := DecodeChatRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.Stream || req.StreamOptions != nil || req.Tools != nil || req.ToolChoice != nil || req.ResponseFormat != nil || req.Metadata != nil {
		t.Errorf("got %+v", req)
	}
}

func TestRequestErrorMessageCutsLongValues(t *testing.T) {
	role := strings.Repeat("é", 100)
	_, err := DecodeChatRequest([]byte(`{"model":"m","messages":[{"role":"` + role + `"}]}`))
	var re *RequestError
	if !errors.As(err, &re) {
		t.Fatal(err)
	}
	if len(re.Message) > 200 || !strings.Contains(re.Message, "...") {
		t.Errorf("message not cut: %q", re.Message)
	}
	if !strings.HasPrefix(re.Message, "Invalid value: 'éé") {
		t.Errorf("message %q", re.Message)
	}
}
