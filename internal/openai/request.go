package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RequestError says why a chat-completion request was rejected, in the words the
// client sees. Param names the offending parameter the way OpenAI does
// ("messages[3].role"), or is empty when no single parameter is at fault.
type RequestError struct {
	Param   string
	Message string
}

// Error returns the client-facing message, prefixed by the parameter.
func (e *RequestError) Error() string {
	if e.Param == "" {
		return "openai: invalid request: " + e.Message
	}
	return "openai: invalid request: " + e.Param + ": " + e.Message
}

// MessageParseBody is the message of the error for a body that is not a JSON object.
const MessageParseBody = "We could not parse the JSON body of your request. (HINT: This likely means " +
	"you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what " +
	"was sent was not valid JSON.)"

// validRoles holds the message roles a request may use; it is never written.
var validRoles = map[string]bool{
	"system": true, "developer": true, "user": true,
	"assistant": true, "tool": true, "function": true,
}

// DecodeChatRequest decodes and checks a chat-completion request body. It fails with
// a *RequestError when the body is not a JSON object, when model or messages are
// missing or of the wrong type, when a message is not an object or has no valid role,
// or when stream, stream_options, tools or another known field has the wrong type.
// Unknown top-level fields are allowed and ignored; null counts as absent for every
// optional field.
func DecodeChatRequest(body []byte) (*ChatRequest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, &RequestError{Message: MessageParseBody}
	}
	req := &ChatRequest{}

	rawModel, ok := top["model"]
	if !ok {
		return nil, &RequestError{Param: "model", Message: "you must provide a model parameter"}
	}
	if err := decodeField(rawModel, "model", &req.Model); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, emptyError("model", "a string with minimum length 1", "an empty string")
	}

	rawMessages, ok := top["messages"]
	if !ok {
		return nil, missingError("messages")
	}
	var msgs []json.RawMessage
	if err := decodeField(rawMessages, "messages", &msgs); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, emptyError("messages", "an array with minimum length 1", "an empty array")
	}
	req.Messages = make([]Message, len(msgs))
	for i, raw := range msgs {
		if err := decodeMessage(raw, "messages["+strconv.Itoa(i)+"]", &req.Messages[i]); err != nil {
			return nil, err
		}
	}

	if err := decodeOptional(top, "stream", &req.Stream); err != nil {
		return nil, err
	}
	if err := decodeOptional(top, "stream_options", &req.StreamOptions); err != nil {
		return nil, err
	}
	if raw, ok := top["tools"]; ok && !isNull(raw) {
		if err := decodeTools(raw, &req.Tools); err != nil {
			return nil, err
		}
	}
	if raw, ok := top["tool_choice"]; ok && !isNull(raw) {
		req.ToolChoice = raw
	}
	if err := decodeOptional(top, "response_format", &req.ResponseFormat); err != nil {
		return nil, err
	}
	if raw, ok := top["metadata"]; ok && !isNull(raw) {
		var fields map[string]json.RawMessage
		if err := decodeField(raw, "metadata", &fields); err != nil {
			return nil, err
		}
		req.Metadata = make(map[string]string, len(fields))
		for k, v := range fields {
			var s string
			if err := decodeField(v, "metadata."+k, &s); err != nil {
				return nil, err
			}
			req.Metadata[k] = s
		}
	}
	if err := decodeOptional(top, "user", &req.User); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeMessage decodes one message, naming the failing parameter under prefix.
func decodeMessage(raw json.RawMessage, prefix string, m *Message) error {
	if firstByte(raw) != '{' {
		return typeError(prefix, "an object", raw)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return typeError(prefix, "an object", raw)
	}
	rawRole, ok := fields["role"]
	if !ok {
		return missingError(prefix + ".role")
	}
	if err := decodeField(rawRole, prefix+".role", &m.Role); err != nil {
		return err
	}
	if !validRoles[m.Role] {
		return &RequestError{Param: prefix + ".role", Message: fmt.Sprintf("Invalid value: %s. Supported values "+
			"are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", quoteParam(m.Role))}
	}
	m.Content = Content{IsNull: true}
	if raw, ok := fields["content"]; ok {
		if err := decodeContent(raw, prefix+".content", &m.Content); err != nil {
			return err
		}
	}
	if err := decodeOptional(fields, "name", &m.Name, prefix); err != nil {
		return err
	}
	if raw, ok := fields["tool_calls"]; ok && !isNull(raw) {
		var calls []json.RawMessage
		if err := decodeField(raw, prefix+".tool_calls", &calls); err != nil {
			return err
		}
		m.ToolCalls = make([]ToolCall, len(calls))
		for j, c := range calls {
			if err := decodeField(c, prefix+".tool_calls["+strconv.Itoa(j)+"]", &m.ToolCalls[j]); err != nil {
				return err
			}
		}
	}
	if err := decodeOptional(fields, "tool_call_id", &m.ToolCallID, prefix); err != nil {
		return err
	}
	return decodeOptional(fields, "refusal", &m.Refusal, prefix)
}

// decodeContent decodes message content, naming the part at fault.
func decodeContent(raw json.RawMessage, param string, c *Content) error {
	switch firstByte(raw) {
	case 'n', '"':
		if err := c.UnmarshalJSON(raw); err == nil {
			return nil
		}
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			break
		}
		*c = Content{IsParts: true, Parts: make([]ContentPart, len(parts))}
		for j, part := range parts {
			pp := param + "[" + strconv.Itoa(j) + "]"
			if firstByte(part) != '{' {
				return typeError(pp, "an object", part)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(part, &fields); err != nil {
				return typeError(pp, "an object", part)
			}
			rawType, ok := fields["type"]
			if !ok {
				return missingError(pp + ".type")
			}
			var typ string
			if err := decodeField(rawType, pp+".type", &typ); err != nil {
				return err
			}
			if rawText, ok := fields["text"]; ok && typ == "text" {
				var text string
				if err := decodeField(rawText, pp+".text", &text); err != nil {
					return err
				}
			}
			if err := c.Parts[j].UnmarshalJSON(part); err != nil {
				return &RequestError{Param: pp, Message: fmt.Sprintf("Invalid value for '%s'.", pp)}
			}
		}
		return nil
	}
	return &RequestError{Param: param, Message: fmt.Sprintf("Invalid type for '%s': expected one of a string "+
		"or array of objects, but got %s instead.", param, jsonKind(raw))}
}

// decodeTools decodes the tools field, checking that each function tool has a name.
func decodeTools(raw json.RawMessage, tools *[]Tool) error {
	var items []json.RawMessage
	if err := decodeField(raw, "tools", &items); err != nil {
		return err
	}
	*tools = make([]Tool, len(items))
	for i, item := range items {
		prefix := "tools[" + strconv.Itoa(i) + "]"
		if firstByte(item) != '{' {
			return typeError(prefix, "an object", item)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(item, &fields); err != nil {
			return typeError(prefix, "an object", item)
		}
		t := &(*tools)[i]
		rawType, ok := fields["type"]
		if !ok {
			return missingError(prefix + ".type")
		}
		if err := decodeField(rawType, prefix+".type", &t.Type); err != nil {
			return err
		}
		if t.Type != "function" {
			continue // other tool kinds (custom, ...) pass through unread
		}
		rawFn, ok := fields["function"]
		if !ok || isNull(rawFn) {
			return missingError(prefix + ".function")
		}
		if firstByte(rawFn) != '{' {
			return typeError(prefix+".function", "an object", rawFn)
		}
		var fn map[string]json.RawMessage
		if err := json.Unmarshal(rawFn, &fn); err != nil {
			return typeError(prefix+".function", "an object", rawFn)
		}
		fp := prefix + ".function"
		rawName, ok := fn["name"]
		if !ok {
			return missingError(fp + ".name")
		}
		if err := decodeField(rawName, fp+".name", &t.Function.Name); err != nil {
			return err
		}
		if t.Function.Name == "" {
			return emptyError(fp+".name", "a string with minimum length 1", "an empty string")
		}
		if err := decodeOptional(fn, "description", &t.Function.Description, fp); err != nil {
			return err
		}
		if raw, ok := fn["parameters"]; ok && !isNull(raw) {
			if firstByte(raw) != '{' {
				return typeError(fp+".parameters", "an object", raw)
			}
			t.Function.Parameters = raw
		}
		if err := decodeOptional(fn, "strict", &t.Function.Strict, fp); err != nil {
			return err
		}
	}
	return nil
}

// decodeOptional decodes fields[key] into dst when present and not null. The
// parameter is named key, under prefix[0] when given.
func decodeOptional(fields map[string]json.RawMessage, key string, dst any, prefix ...string) error {
	raw, ok := fields[key]
	if !ok || isNull(raw) {
		return nil
	}
	param := key
	if len(prefix) > 0 {
		param = prefix[0] + "." + key
	}
	return decodeField(raw, param, dst)
}

// decodeField decodes raw into dst, turning a type mismatch into a *RequestError
// that names param, or the nested parameter that mismatched.
func decodeField(raw json.RawMessage, param string, dst any) error {
	if isNull(raw) {
		return typeError(param, wantOf(dst), raw)
	}
	err := json.Unmarshal(raw, dst)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" && te.Type != nil {
		p := param + fieldPath(te.Field)
		return &RequestError{Param: p, Message: fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.",
			p, kindOfType(te.Type.Kind().String()), valueKind(te.Value))}
	}
	if want := wantOf(dst); want != jsonKind(raw) {
		return typeError(param, want, raw)
	}
	return &RequestError{Param: param, Message: fmt.Sprintf("Invalid value for '%s'.", param)}
}

// fieldPath turns encoding/json's dotted field path ("0.function.name") into
// OpenAI's parameter notation ("[0].function.name").
func fieldPath(f string) string {
	var b strings.Builder
	for _, part := range strings.Split(f, ".") {
		if _, err := strconv.Atoi(part); err == nil {
			b.WriteString("[" + part + "]")
		} else {
			b.WriteString("." + part)
		}
	}
	return b.String()
}

// wantOf names the JSON kind a destination expects.
func wantOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *bool:
		return "a boolean"
	case *[]json.RawMessage, *[]ToolCall:
		return "an array"
	case **string:
		return "a string"
	case **bool:
		return "a boolean"
	}
	return "an object"
}

// kindOfType names the JSON kind a Go reflect.Kind stands for.
func kindOfType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "float64", "float32":
		return "a number"
	}
	return "an object"
}

// valueKind turns encoding/json's description of a value ("number", "bool", ...)
// into OpenAI's wording.
func valueKind(v string) string {
	switch {
	case v == "string":
		return "a string"
	case v == "bool":
		return "a boolean"
	case v == "array":
		return "an array"
	case v == "object":
		return "an object"
	case strings.HasPrefix(v, "number"):
		if strings.ContainsAny(strings.TrimPrefix(v, "number"), ".eE") {
			return "a decimal"
		}
		return "an integer"
	}
	return v
}

func typeError(param, want string, raw []byte) *RequestError {
	return &RequestError{Param: param, Message: fmt.Sprintf(
		"Invalid type for '%s': expected %s, but got %s instead.", param, want, jsonKind(raw))}
}

func missingError(param string) *RequestError {
	return &RequestError{Param: param, Message: "Missing required parameter: '" + param + "'."}
}

func emptyError(param, want, got string) *RequestError {
	return &RequestError{Param: param, Message: fmt.Sprintf(
		"Invalid '%s': %s. Expected %s, but got %s instead.", param, strings.TrimPrefix(got, "an "), want, got)}
}

// quoteParam quotes a client-supplied value for an error message, cut short so a
// huge value cannot bloat the response.
func quoteParam(s string) string {
	const max = 64
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "..."
	}
	return "'" + s + "'"
}

func isNull(raw []byte) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func firstByte(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}
