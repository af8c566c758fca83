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
// optional field. Keys match exactly, as OpenAI matches them ("Model" is not
// "model"), and a repeated key counts with its last value. The result shares no
// memory with body.
//
// The body is validated once; objects and arrays are then split in place rather than
// decoded again at every level, which keeps a 20 KB agent request near the cost of
// one validation pass.
func DecodeChatRequest(body []byte) (*ChatRequest, error) {
	if !json.Valid(body) {
		return nil, &RequestError{Message: MessageParseBody}
	}
	top, ok := splitObject(body)
	if !ok {
		return nil, &RequestError{Message: MessageParseBody}
	}
	req := &ChatRequest{}

	rawModel, ok := lookup(top, "model")
	if !ok {
		return nil, &RequestError{Param: "model", Message: "you must provide a model parameter"}
	}
	if err := decodeString(rawModel, "model", &req.Model); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, emptyError("model", "a string with minimum length 1", "an empty string")
	}

	rawMessages, ok := lookup(top, "messages")
	if !ok {
		return nil, missingError("messages")
	}
	msgs, ok := splitArray(rawMessages)
	if !ok {
		return nil, typeError("messages", "an array", rawMessages)
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

	if raw, ok := lookup(top, "stream"); ok && !isNull(raw) {
		switch string(raw) {
		case "true":
			req.Stream = true
		case "false":
		default:
			return nil, typeError("stream", "a boolean", raw)
		}
	}
	if err := decodeOptional(top, "stream_options", &req.StreamOptions); err != nil {
		return nil, err
	}
	if raw, ok := lookup(top, "tools"); ok && !isNull(raw) {
		if err := decodeTools(raw, &req.Tools); err != nil {
			return nil, err
		}
	}
	if raw, ok := lookup(top, "tool_choice"); ok && !isNull(raw) {
		req.ToolChoice = bytes.Clone(raw)
	}
	if err := decodeOptional(top, "response_format", &req.ResponseFormat); err != nil {
		return nil, err
	}
	if raw, ok := lookup(top, "metadata"); ok && !isNull(raw) {
		fields, ok := splitObject(raw)
		if !ok {
			return nil, typeError("metadata", "an object", raw)
		}
		req.Metadata = make(map[string]string, len(fields))
		for _, f := range fields {
			var v string
			if err := decodeString(f.value, "metadata."+f.key, &v); err != nil {
				return nil, err
			}
			req.Metadata[f.key] = v
		}
	}
	if raw, ok := lookup(top, "user"); ok && !isNull(raw) {
		if err := decodeString(raw, "user", &req.User); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// decodeMessage decodes one message, naming the failing parameter under prefix.
func decodeMessage(raw []byte, prefix string, m *Message) error {
	fields, ok := splitObject(raw)
	if !ok {
		return typeError(prefix, "an object", raw)
	}
	rawRole, ok := lookup(fields, "role")
	if !ok {
		return missingError(prefix + ".role")
	}
	if err := decodeString(rawRole, prefix+".role", &m.Role); err != nil {
		return err
	}
	if !validRoles[m.Role] {
		return &RequestError{Param: prefix + ".role", Message: fmt.Sprintf("Invalid value: %s. Supported values "+
			"are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", quoteParam(m.Role))}
	}
	m.Content = Content{IsNull: true}
	if raw, ok := lookup(fields, "content"); ok {
		if err := decodeContent(raw, prefix+".content", &m.Content); err != nil {
			return err
		}
	}
	if raw, ok := lookup(fields, "name"); ok && !isNull(raw) {
		if err := decodeString(raw, prefix+".name", &m.Name); err != nil {
			return err
		}
	}
	if raw, ok := lookup(fields, "tool_calls"); ok && !isNull(raw) {
		calls, ok := splitArray(raw)
		if !ok {
			return typeError(prefix+".tool_calls", "an array", raw)
		}
		m.ToolCalls = make([]ToolCall, len(calls))
		for j, c := range calls {
			if err := decodeField(c, prefix+".tool_calls["+strconv.Itoa(j)+"]", &m.ToolCalls[j]); err != nil {
				return err
			}
		}
	}
	if raw, ok := lookup(fields, "tool_call_id"); ok && !isNull(raw) {
		if err := decodeString(raw, prefix+".tool_call_id", &m.ToolCallID); err != nil {
			return err
		}
	}
	if raw, ok := lookup(fields, "refusal"); ok && !isNull(raw) {
		var r string
		if err := decodeString(raw, prefix+".refusal", &r); err != nil {
			return err
		}
		m.Refusal = &r
	}
	return nil
}

// decodeContent decodes message content, naming the part at fault.
func decodeContent(raw []byte, param string, c *Content) error {
	switch firstByte(raw) {
	case 'n':
		*c = Content{IsNull: true}
		return nil
	case '"':
		*c = Content{}
		return decodeString(raw, param, &c.Text)
	case '[':
		parts, _ := splitArray(raw)
		*c = Content{IsParts: true, Parts: make([]ContentPart, len(parts))}
		for j, part := range parts {
			if err := decodePart(part, param+"["+strconv.Itoa(j)+"]", &c.Parts[j]); err != nil {
				return err
			}
		}
		return nil
	}
	return &RequestError{Param: param, Message: fmt.Sprintf("Invalid type for '%s': expected one of a string "+
		"or array of objects, but got %s instead.", param, jsonKind(raw))}
}

// decodePart decodes one content part the way ContentPart.UnmarshalJSON does, naming
// the parameter at fault.
func decodePart(raw []byte, param string, p *ContentPart) error {
	fields, ok := splitObject(raw)
	if !ok {
		return typeError(param, "an object", raw)
	}
	rawType, ok := lookup(fields, "type")
	if !ok {
		return missingError(param + ".type")
	}
	if err := decodeString(rawType, param+".type", &p.Type); err != nil {
		return err
	}
	if rawText, ok := lookup(fields, "text"); ok && p.Type == "text" {
		if err := decodeString(rawText, param+".text", &p.Text); err != nil {
			return err
		}
	}
	if !isPlainText(p.Type, fields) {
		p.Other = bytes.Clone(raw)
		p.origType, p.origText = p.Type, p.Text
	}
	return nil
}

// decodeTools decodes the tools field, checking that each function tool has a name.
func decodeTools(raw []byte, tools *[]Tool) error {
	items, ok := splitArray(raw)
	if !ok {
		return typeError("tools", "an array", raw)
	}
	*tools = make([]Tool, len(items))
	for i, item := range items {
		prefix := "tools[" + strconv.Itoa(i) + "]"
		fields, ok := splitObject(item)
		if !ok {
			return typeError(prefix, "an object", item)
		}
		t := &(*tools)[i]
		rawType, ok := lookup(fields, "type")
		if !ok {
			return missingError(prefix + ".type")
		}
		if err := decodeString(rawType, prefix+".type", &t.Type); err != nil {
			return err
		}
		if t.Type != "function" {
			continue // other tool kinds (custom, ...) pass through unread
		}
		fp := prefix + ".function"
		rawFn, ok := lookup(fields, "function")
		if !ok || isNull(rawFn) {
			return missingError(fp)
		}
		fn, ok := splitObject(rawFn)
		if !ok {
			return typeError(fp, "an object", rawFn)
		}
		rawName, ok := lookup(fn, "name")
		if !ok {
			return missingError(fp + ".name")
		}
		if err := decodeString(rawName, fp+".name", &t.Function.Name); err != nil {
			return err
		}
		if t.Function.Name == "" {
			return emptyError(fp+".name", "a string with minimum length 1", "an empty string")
		}
		if raw, ok := lookup(fn, "description"); ok && !isNull(raw) {
			if err := decodeString(raw, fp+".description", &t.Function.Description); err != nil {
				return err
			}
		}
		if raw, ok := lookup(fn, "parameters"); ok && !isNull(raw) {
			if firstByte(raw) != '{' {
				return typeError(fp+".parameters", "an object", raw)
			}
			t.Function.Parameters = bytes.Clone(raw)
		}
		if err := decodeOptional(fn, "strict", &t.Function.Strict, fp); err != nil {
			return err
		}
	}
	return nil
}

// lookup returns the value of key among an object's members; the last one wins
// when the key repeats, as with encoding/json.
func lookup(members []member, key string) ([]byte, bool) {
	for i := len(members) - 1; i >= 0; i-- {
		if members[i].key == key {
			return members[i].value, true
		}
	}
	return nil, false
}

// decodeString decodes a JSON string; strings without escapes are copied without
// a second pass of encoding/json.
func decodeString(raw []byte, param string, dst *string) error {
	if firstByte(raw) != '"' {
		return typeError(param, "a string", raw)
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		*dst = string(inner)
		return nil
	}
	return decodeField(raw, param, dst)
}

// decodeOptional decodes the value of key into dst when present and not null. The
// parameter is named key, under prefix[0] when given.
func decodeOptional(fields []member, key string, dst any, prefix ...string) error {
	raw, ok := lookup(fields, key)
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
