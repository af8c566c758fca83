package guard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// ErrRequest is wrapped by the errors of ReadRequest and RequestOf: the request holds
// something the checks cannot read (a tool without a name, a tool_choice of an unknown
// form, ...). Such a call cannot be guarded, so it should not go to a candidate.
var ErrRequest = errors.New("guard: request cannot be checked")

// Tool choice modes, as tool_choice names them.
const (
	ChoiceAuto     = "auto"
	ChoiceNone     = "none"
	ChoiceRequired = "required"
)

// Request is what the checks need from the request an answer replies to. The zero
// value is a request with no tools and no response_format: any text answer that
// finishes normally passes. A Request is read-only once built and may be shared.
type Request struct {
	// Tools are the request's tools, in request order.
	Tools []Tool
	// ToolChoice is the request's tool_choice.
	ToolChoice ToolChoice
	// NoParallelCalls is true when parallel_tool_calls is false: at most one call.
	NoParallelCalls bool
	// ResponseType is response_format.type: "" (none), "text", "json_object" or
	// "json_schema".
	ResponseType string
	// ResponseSchema is response_format.json_schema.schema as raw JSON; nil when the
	// format holds no schema.
	ResponseSchema []byte
}

// Tool is one of the request's tools.
type Tool struct {
	// Type is the tool's type: "function", or another kind (custom, ...), whose
	// calls are checked only for being of a kind offered and against tool_choice.
	Type string
	// Name is the function's name; empty for other kinds.
	Name string
	// Parameters is the function's parameters schema as raw JSON; nil when it has
	// none (any object of arguments is valid).
	Parameters []byte
}

// ToolChoice is the request's tool_choice, read into one form: "none", "auto",
// "required", {"type": "function", ...} (Mode required, Allowed holding the one name)
// and {"type": "allowed_tools", ...} (its mode, Allowed its functions).
type ToolChoice struct {
	// Mode is ChoiceAuto (also ""), ChoiceNone or ChoiceRequired (at least one call).
	Mode string
	// Allowed, when not empty, lists the only functions the answer may call.
	Allowed []string
}

// HoldStream reports whether a streamed answer to the request has to be held whole
// before it is sent, because it can only be checked whole: the request offers tools
// (and tool_choice is not "none") or asks for JSON. A free-text answer can be streamed
// through; the gateway can escalate it only before its first byte.
func (r *Request) HoldStream() bool {
	return (len(r.Tools) > 0 && r.ToolChoice.Mode != ChoiceNone) || wantsJSON(r.ResponseType)
}

func wantsJSON(responseType string) bool {
	return responseType == "json_object" || responseType == "json_schema"
}

// tool returns the function tool named name, or nil.
func (r *Request) tool(name string) *Tool {
	for i := range r.Tools {
		if r.Tools[i].Name == name && r.Tools[i].Type == "function" {
			return &r.Tools[i]
		}
	}
	return nil
}

// hasToolType reports whether the request offers a tool of the given non-function type.
func (r *Request) hasToolType(typ string) bool {
	for i := range r.Tools {
		if r.Tools[i].Type == typ {
			return true
		}
	}
	return false
}

// ReadRequest reads a Request from a chat-completion body that openai.ScanChatRequest
// has accepted (the gateway's hot path). It walks the body once, skipping the
// conversation rather than decoding it. The Request's schemas are slices of body,
// which must not change while the Request is in use. Keys match exactly, as OpenAI
// matches them; a key given twice counts with its last value, as in
// openai.DecodeChatRequest, with which it agrees (FuzzReadRequestMatchesDecode).
// When the scan's Head shows no tools and no response_format, the zero Request is
// the same and costs nothing.
func ReadRequest(body []byte) (Request, error) {
	w := &walker{b: body}
	if w.peek() != '{' {
		return Request{}, fmt.Errorf("%w: the body is not a JSON object", ErrRequest)
	}
	var r Request
	// Each member's error, so that a repeated key's last value decides.
	var toolsErr, choiceErr, parallelErr, formatErr error
	w.object(func(key []byte) {
		switch string(key) {
		case "tools":
			r.Tools, toolsErr = readTools(w)
		case "tool_choice":
			r.ToolChoice, choiceErr = readToolChoice(w)
		case "parallel_tool_calls":
			r.NoParallelCalls, parallelErr = false, nil
			switch v := w.value(); string(v) {
			case "false":
				r.NoParallelCalls = true
			case "true", "null":
			default:
				parallelErr = fmt.Errorf("%w: parallel_tool_calls is not a boolean", ErrRequest)
			}
		case "response_format":
			r.ResponseType, r.ResponseSchema, formatErr = readResponseFormat(w)
		default:
			w.skip()
		}
	})
	if w.bad {
		return Request{}, fmt.Errorf("%w: the body is not well-formed JSON", ErrRequest)
	}
	if err := errors.Join(toolsErr, choiceErr, parallelErr, formatErr); err != nil {
		return Request{}, err
	}
	return r, nil
}

// RequestOf builds a Request from a decoded request (offline checks, tests). A
// ChatRequest does not carry parallel_tool_calls: set NoParallelCalls when it matters.
func RequestOf(req *openai.ChatRequest) (Request, error) {
	var r Request
	if len(req.Tools) > 0 {
		r.Tools = make([]Tool, len(req.Tools))
		for i, t := range req.Tools {
			r.Tools[i] = Tool{Type: t.Type, Name: t.Function.Name}
			if t.Type == "function" && len(t.Function.Parameters) > 0 && string(t.Function.Parameters) != "null" {
				r.Tools[i].Parameters = t.Function.Parameters
			}
		}
	}
	if len(req.ToolChoice) > 0 {
		w := &walker{b: req.ToolChoice}
		choice, err := readToolChoice(w)
		if err == nil && w.bad {
			err = fmt.Errorf("%w: tool_choice is not well-formed JSON", ErrRequest)
		}
		if err != nil {
			return Request{}, err
		}
		r.ToolChoice = choice
	}
	if rf := req.ResponseFormat; rf != nil {
		r.ResponseType = rf.Type
		if rf.Type == "json_schema" && len(rf.JSONSchema) > 0 {
			w := &walker{b: rf.JSONSchema}
			schema, err := readJSONSchema(w)
			if err == nil && w.bad {
				err = fmt.Errorf("%w: response_format.json_schema is not well-formed JSON", ErrRequest)
			}
			if err != nil {
				return Request{}, err
			}
			r.ResponseSchema = schema
		}
	}
	return r, nil
}

// readTools reads the tools member. Function names are gathered into one string.
func readTools(w *walker) ([]Tool, error) {
	if w.isNull() {
		return nil, nil
	}
	if w.peek() != '[' {
		w.skip()
		return nil, fmt.Errorf("%w: tools is not an array", ErrRequest)
	}
	var tools []Tool
	var names [][]byte
	var err error
	w.array(func(i int) {
		t, name, e := readTool(w, i)
		tools, names = append(tools, t), append(names, name)
		if err == nil {
			err = e
		}
	})
	if err != nil {
		return nil, err
	}
	n := 0
	for _, name := range names {
		n += len(name)
	}
	var all strings.Builder
	all.Grow(n)
	for _, name := range names {
		all.Write(name)
	}
	s, at := all.String(), 0
	for i, name := range names {
		tools[i].Name = s[at : at+len(name)]
		at += len(name)
	}
	return tools, nil
}

// readTool reads one element of tools, as openai.DecodeChatRequest does: a type, and
// for a function, a name and parameters that are an object if present. The name is
// returned apart, for readTools to gather.
func readTool(w *walker, i int) (Tool, []byte, error) {
	if w.peek() != '{' {
		w.skip()
		return Tool{}, nil, fmt.Errorf("%w: tools[%d] is not an object", ErrRequest, i)
	}
	var (
		typ, name, params     []byte
		typSeen, typOK        bool
		fnSeen, fnObj         bool
		nameSeen, nameOK      bool
		paramsSeen, paramsNul bool
	)
	w.object(func(key []byte) {
		switch string(key) {
		case "type":
			typSeen = true
			typ, typOK = w.text()
		case "function":
			fnSeen, fnObj = true, false
			nameSeen, nameOK, paramsSeen, paramsNul, name, params = false, false, false, false, nil, nil
			if w.isNull() {
				fnSeen = false
				return
			}
			if w.peek() != '{' {
				w.skip()
				return
			}
			fnObj = true
			w.object(func(key []byte) {
				switch string(key) {
				case "name":
					nameSeen = true
					name, nameOK = w.text()
				case "parameters":
					paramsSeen = true
					paramsNul = w.isNull()
					if !paramsNul {
						params = w.value()
					}
				default:
					w.skip()
				}
			})
		default:
			w.skip()
		}
	})
	switch {
	case !typSeen:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].type is missing", ErrRequest, i)
	case !typOK:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].type is not a string", ErrRequest, i)
	case string(typ) != "function":
		return Tool{Type: string(typ)}, nil, nil
	case !fnSeen:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].function is missing", ErrRequest, i)
	case !fnObj:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].function is not an object", ErrRequest, i)
	case !nameSeen:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].function.name is missing", ErrRequest, i)
	case !nameOK:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].function.name is not a string", ErrRequest, i)
	case len(name) == 0:
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].function.name is empty", ErrRequest, i)
	case paramsSeen && !paramsNul && (len(params) == 0 || params[0] != '{'):
		return Tool{}, nil, fmt.Errorf("%w: tools[%d].function.parameters is not an object", ErrRequest, i)
	}
	t := Tool{Type: "function"}
	if paramsSeen && !paramsNul {
		t.Parameters = params[:len(params):len(params)]
	}
	return t, name, nil
}

// readToolChoice reads tool_choice: a mode, or an object choosing a function or a
// set of allowed tools.
func readToolChoice(w *walker) (ToolChoice, error) {
	if w.isNull() {
		return ToolChoice{}, nil
	}
	switch w.peek() {
	case '"':
		mode, _ := w.text()
		switch m := string(mode); m {
		case ChoiceAuto, ChoiceNone, ChoiceRequired:
			return ToolChoice{Mode: m}, nil
		}
		return ToolChoice{}, fmt.Errorf("%w: tool_choice is not auto, none or required", ErrRequest)
	case '{':
	default:
		w.skip()
		return ToolChoice{}, fmt.Errorf("%w: tool_choice is neither a string nor an object", ErrRequest)
	}
	var typ, fnName, mode []byte
	var allowed []string
	allowedOK := false
	w.object(func(key []byte) {
		switch string(key) {
		case "type":
			typ, _ = w.text()
		case "function":
			fnName = functionName(w)
		case "allowed_tools":
			mode, allowed, allowedOK = nil, nil, false
			if w.peek() != '{' {
				w.skip()
				return
			}
			w.object(func(key []byte) {
				switch string(key) {
				case "mode":
					mode, _ = w.text()
				case "tools":
					allowed, allowedOK = allowedTools(w)
				default:
					w.skip()
				}
			})
		default:
			w.skip()
		}
	})
	switch string(typ) {
	case "function":
		if len(fnName) == 0 {
			return ToolChoice{}, fmt.Errorf("%w: tool_choice.function.name is missing", ErrRequest)
		}
		return ToolChoice{Mode: ChoiceRequired, Allowed: []string{string(fnName)}}, nil
	case "allowed_tools":
		m := string(mode)
		if m != ChoiceAuto && m != ChoiceRequired {
			return ToolChoice{}, fmt.Errorf("%w: tool_choice.allowed_tools.mode is not auto or required", ErrRequest)
		}
		if !allowedOK {
			return ToolChoice{}, fmt.Errorf("%w: tool_choice.allowed_tools.tools is not a list of named functions", ErrRequest)
		}
		if len(allowed) == 0 {
			return ToolChoice{Mode: ChoiceNone}, nil // nothing is allowed: no call may be made
		}
		return ToolChoice{Mode: m, Allowed: allowed}, nil
	}
	return ToolChoice{}, fmt.Errorf("%w: tool_choice.type %q is not function or allowed_tools", ErrRequest, clip(string(typ), 32))
}

// functionName reads {"name": ...} and returns the name; nil when there is none.
func functionName(w *walker) []byte {
	if w.peek() != '{' {
		w.skip()
		return nil
	}
	var name []byte
	w.object(func(key []byte) {
		if string(key) == "name" {
			name, _ = w.text()
			return
		}
		w.skip()
	})
	return name
}

// allowedTools reads allowed_tools.tools: ok is false unless it is an array of
// {"type": "function", "function": {"name": ...}}.
func allowedTools(w *walker) (names []string, ok bool) {
	if w.peek() != '[' {
		w.skip()
		return nil, false
	}
	ok = true
	w.array(func(int) {
		if w.peek() != '{' {
			w.skip()
			ok = false
			return
		}
		var typ, name []byte
		w.object(func(key []byte) {
			switch string(key) {
			case "type":
				typ, _ = w.text()
			case "function":
				name = functionName(w)
			default:
				w.skip()
			}
		})
		if string(typ) != "function" || len(name) == 0 {
			ok = false
			return
		}
		names = append(names, string(name))
	})
	return names, ok
}

// readResponseFormat reads response_format's type and, for json_schema, the schema.
func readResponseFormat(w *walker) (typ string, schema []byte, err error) {
	if w.isNull() {
		return "", nil, nil
	}
	if w.peek() != '{' {
		w.skip()
		return "", nil, fmt.Errorf("%w: response_format is not an object", ErrRequest)
	}
	var t, js []byte
	typOK := true
	w.object(func(key []byte) {
		switch string(key) {
		case "type":
			if w.isNull() {
				t, typOK = nil, true
				return
			}
			t, typOK = w.text()
		case "json_schema":
			js = w.value()
		default:
			w.skip()
		}
	})
	if !typOK {
		return "", nil, fmt.Errorf("%w: response_format.type is not a string", ErrRequest)
	}
	typ = string(t)
	if typ != "json_schema" || js == nil {
		return typ, nil, nil
	}
	schema, err = readJSONSchema(&walker{b: js})
	return typ, schema, err
}

// readJSONSchema reads the schema out of response_format.json_schema; nil when it
// holds none.
func readJSONSchema(w *walker) ([]byte, error) {
	if w.isNull() {
		return nil, nil
	}
	if w.peek() != '{' {
		return nil, fmt.Errorf("%w: response_format.json_schema is not an object", ErrRequest)
	}
	var schema []byte
	w.object(func(key []byte) {
		if string(key) == "schema" {
			schema = nil
			if !w.isNull() {
				schema = w.value()
			}
			return
		}
		w.skip()
	})
	if len(schema) > 0 && schema[0] != '{' && string(schema) != "true" && string(schema) != "false" {
		return nil, fmt.Errorf("%w: response_format.json_schema.schema is not a schema", ErrRequest)
	}
	if len(schema) == 0 {
		return nil, nil
	}
	return schema[:len(schema):len(schema)], nil
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "..."
}
