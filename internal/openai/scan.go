package openai

import (
	"bytes"
	"encoding/json"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Head is what the gateway's hot path needs from a chat-completion request, read in
// one pass over the bytes without decoding the conversation. Decoding a tau-bench-sized
// request (20 KB, 14 tools) with DecodeChatRequest costs about ten times as much; the
// conversation itself is decoded only off the hot path, when something needs it.
type Head struct {
	Model         string
	Stream        bool
	IncludeUsage  bool   // stream_options.include_usage
	Workload      string // metadata.workload
	System        Content
	HasSystem     bool     // a system or developer message exists; System is the first
	ToolNames     []string // function names of tools, in request order
	ResponseType  string   // response_format.type
	Messages      int
	modelStart    int // byte span of the model value
	modelEnd      int
	streamOptsAt  int // byte span of the stream_options value; -1 when absent
	streamOptsEnd int
	closeAt       int // index of the top-level closing brace
}

// ScanChatRequest reads the Head of a chat-completion request. It checks what the
// gateway relies on: a JSON object; model; messages as a non-empty array of objects with
// valid roles; the shapes of stream, stream_options, tools, metadata and
// response_format. Deeper checks (each message's content, tool calls) are left to the
// upstream, whose 400 the gateway passes on. Every body DecodeChatRequest accepts is
// accepted with the same Head, and any body the scan rejects is handed to
// DecodeChatRequest, so errors are DecodeChatRequest's.
func ScanChatRequest(body []byte) (*Head, error) {
	if h, ok := scanFast(body); ok {
		return h, nil
	}
	req, err := DecodeChatRequest(body)
	if err != nil {
		return nil, err
	}
	return headOf(req), nil
}

// headOf builds a Head from a decoded request. It has no byte spans, so Forward
// falls back to PatchRequest for it.
func headOf(req *ChatRequest) *Head {
	h := &Head{Model: req.Model, Stream: req.Stream, Messages: len(req.Messages), modelStart: -1, streamOptsAt: -1}
	h.IncludeUsage = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	h.Workload = req.Metadata["workload"]
	for _, m := range req.Messages {
		if m.Role == "system" || m.Role == "developer" {
			h.System, h.HasSystem = m.Content, true
			break
		}
	}
	for _, t := range req.Tools {
		h.ToolNames = append(h.ToolNames, t.Function.Name)
	}
	if req.ResponseFormat != nil {
		h.ResponseType = req.ResponseFormat.Type
	}
	return h
}

// scanFast reads a Head from a well-formed request; ok is false when the body is not
// plainly well-formed (the caller then decodes it fully for a precise verdict).
func scanFast(body []byte) (h *Head, ok bool) {
	if !gjson.ValidBytes(body) {
		return nil, false
	}
	// gjson reads strings; aliasing the bytes avoids copying the body. The body is
	// never modified while the Head's strings are in use (they are copied out below
	// where they outlive the call: Model, Workload, tool names are small).
	root := gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body)))
	if !root.IsObject() {
		return nil, false
	}
	h = &Head{modelStart: -1, streamOptsAt: -1}
	ok = true
	seen := map[string]bool{}
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model", "stream", "stream_options", "messages", "tools", "metadata", "response_format":
			if seen[k.Str] {
				ok = false // repeated keys: leave the last-one-wins rule to the decoder
				return false
			}
			seen[k.Str] = true
		default:
			return true
		}
		switch k.Str {
		case "model":
			if v.Type != gjson.String || v.Str == "" {
				ok = false
			}
			h.Model = clone(v.Str)
			h.modelStart, h.modelEnd = v.Index, v.Index+len(v.Raw)
		case "stream":
			switch v.Type {
			case gjson.True:
				h.Stream = true
			case gjson.False, gjson.Null:
			default:
				ok = false
			}
		case "stream_options":
			switch {
			case v.IsObject():
				iu := v.Get("include_usage")
				switch iu.Type {
				case gjson.True:
					h.IncludeUsage = true
				case gjson.False, gjson.Null:
				default:
					ok = false
				}
				h.streamOptsAt, h.streamOptsEnd = v.Index, v.Index+len(v.Raw)
			case v.Type == gjson.Null:
				h.streamOptsAt, h.streamOptsEnd = v.Index, v.Index+len(v.Raw)
			default:
				ok = false
			}
		case "messages":
			ok = h.scanMessages(v)
		case "tools":
			ok = h.scanTools(v)
		case "metadata":
			switch {
			case v.IsObject():
				if w := v.Get("workload"); w.Exists() {
					if w.Type != gjson.String {
						ok = false
					}
					h.Workload = clone(w.Str)
				}
			case v.Type != gjson.Null:
				ok = false
			}
		case "response_format":
			switch {
			case v.IsObject():
				t := v.Get("type")
				if t.Type != gjson.String {
					ok = false
				}
				h.ResponseType = clone(t.Str)
			case v.Type != gjson.Null:
				ok = false
			}
		}
		return ok
	})
	if !ok || h.Model == "" || h.Messages == 0 {
		return nil, false
	}
	h.closeAt = closingBrace(body)
	return h, h.closeAt > 0
}

func (h *Head) scanMessages(v gjson.Result) bool {
	if !v.IsArray() {
		return false
	}
	ok := true
	v.ForEach(func(_, m gjson.Result) bool {
		h.Messages++
		if !m.IsObject() {
			ok = false
			return false
		}
		role := m.Get("role")
		if role.Type != gjson.String || !validRoles[role.Str] {
			ok = false
			return false
		}
		if !h.HasSystem && (role.Str == "system" || role.Str == "developer") {
			c := m.Get("content")
			switch c.Type {
			case gjson.String:
				h.System = Content{Text: clone(c.Str)}
			case gjson.Null:
				h.System = Content{IsNull: true}
			default:
				if !c.IsArray() || json.Unmarshal([]byte(c.Raw), &h.System) != nil {
					ok = false
					return false
				}
			}
			h.HasSystem = true
		}
		return true
	})
	return ok && h.Messages > 0
}

func (h *Head) scanTools(v gjson.Result) bool {
	if v.Type == gjson.Null {
		return true
	}
	if !v.IsArray() {
		return false
	}
	ok := true
	v.ForEach(func(_, t gjson.Result) bool {
		typ := t.Get("type")
		if !t.IsObject() || typ.Type != gjson.String {
			ok = false
			return false
		}
		if typ.Str != "function" {
			// Other tool kinds (custom, ...) pass through unread, as in DecodeChatRequest.
			h.ToolNames = append(h.ToolNames, "")
			return true
		}
		name := t.Get("function.name")
		if name.Type != gjson.String || name.Str == "" {
			ok = false
			return false
		}
		h.ToolNames = append(h.ToolNames, clone(name.Str))
		return true
	})
	return ok
}

// clone copies s so that it does not alias the request body.
func clone(s string) string { return string([]byte(s)) }

func closingBrace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case '}':
			return i
		case ' ', '\t', '\r', '\n':
		default:
			return -1
		}
	}
	return -1
}

// Request returns a ChatRequest holding what the Head knows, for code that reads
// requests as ChatRequest (workload fingerprints and tags): model, stream, the first
// system message, tool names, response format type and metadata.workload. It is not
// the conversation; decode the body with DecodeChatRequest for that.
func (h *Head) Request() *ChatRequest {
	req := &ChatRequest{Model: h.Model, Stream: h.Stream}
	if h.HasSystem {
		req.Messages = []Message{{Role: "system", Content: h.System}}
	}
	if len(h.ToolNames) > 0 {
		req.Tools = make([]Tool, len(h.ToolNames))
		for i, n := range h.ToolNames {
			req.Tools[i] = Tool{Type: "function", Function: FunctionDecl{Name: n}}
		}
	}
	if h.ResponseType != "" {
		req.ResponseFormat = &ResponseFormat{Type: h.ResponseType}
	}
	if h.Workload != "" {
		req.Metadata = map[string]string{"workload": h.Workload}
	}
	return req
}

// Forward returns the body to send upstream: model set to upstreamModel and, when
// includeUsage is true, stream_options.include_usage set, with every other byte as the
// client sent it. When nothing changes, body itself is returned.
func (h *Head) Forward(body []byte, upstreamModel string, includeUsage bool) ([]byte, error) {
	needUsage := includeUsage && !h.IncludeUsage
	if upstreamModel == h.Model && !needUsage {
		return body, nil
	}
	if h.modelStart < 0 || h.closeAt <= 0 {
		set := map[string]any{"model": upstreamModel}
		if needUsage {
			set["stream_options"] = IncludeUsage()
		}
		return PatchRequest(body, set)
	}
	model, err := json.Marshal(upstreamModel)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(body)+len(model)+48)
	switch {
	case !needUsage:
		out = append(out, body[:h.modelStart]...)
		out = append(out, model...)
		out = append(out, body[h.modelEnd:]...)
	case h.streamOptsAt < 0:
		// No stream_options: add one before the closing brace.
		out = append(out, body[:h.modelStart]...)
		out = append(out, model...)
		out = append(out, body[h.modelEnd:h.closeAt]...)
		out = append(out, `,"stream_options":{"include_usage":true}`...)
		out = append(out, body[h.closeAt:]...)
	default:
		// stream_options exists without include_usage true: merge into it.
		opts, err := PatchRequest(body[h.streamOptsAt:h.streamOptsEnd], map[string]any{"include_usage": true})
		if err != nil {
			opts = []byte(`{"include_usage":true}`) // it was null
		}
		first, second := [2]int{h.modelStart, h.modelEnd}, [2]int{h.streamOptsAt, h.streamOptsEnd}
		firstVal, secondVal := []byte(model), opts
		if second[0] < first[0] {
			first, second = second, first
			firstVal, secondVal = secondVal, firstVal
		}
		out = append(out, body[:first[0]]...)
		out = append(out, firstVal...)
		out = append(out, body[first[1]:second[0]]...)
		out = append(out, secondVal...)
		out = append(out, body[second[1]:]...)
	}
	return out, nil
}

// ChunkIsUsageOnly reports whether the data of a stream event is a chunk with no
// choices and a usage object: what stream_options.include_usage adds at the end. It
// reads the bytes without decoding the chunk, as IsUsageOnly does for a decoded one.
func ChunkIsUsageOnly(data []byte) bool {
	if !bytes.Contains(data, []byte(`"usage"`)) {
		return false
	}
	r := gjson.ParseBytes(data)
	choices := r.Get("choices")
	return r.Get("usage").IsObject() && (!choices.Exists() || choices.Type == gjson.Null || (choices.IsArray() && len(choices.Array()) == 0))
}

// ChunkCarriesAnswer reports whether the data of a stream event holds a piece of an
// answer: content, a refusal or a tool call in any choice's delta.
func ChunkCarriesAnswer(data []byte) bool {
	found := false
	gjson.GetBytes(data, "choices").ForEach(func(_, ch gjson.Result) bool {
		d := ch.Get("delta")
		if c := d.Get("content"); c.Type == gjson.String && c.Str != "" {
			found = true
		} else if r := d.Get("refusal"); r.Type == gjson.String && r.Str != "" {
			found = true
		} else if tc := d.Get("tool_calls"); tc.IsArray() && len(tc.Array()) > 0 {
			found = true
		}
		return !found
	})
	return found
}
