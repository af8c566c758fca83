package openai

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/tidwall/gjson"
)

// Head is what the gateway's hot path needs from a chat-completion request, read in
// one pass over the bytes without decoding the conversation. Decoding a tau-bench-sized
// request (20 KB, 14 tools) with DecodeChatRequest costs about ten times as much; the
// conversation itself is decoded only off the hot path, when something needs it.
type Head struct {
	Model         string
	Stream        bool
	IncludeUsage  bool     // stream_options.include_usage
	Workload      string   // metadata.workload
	HasSystem     bool     // a system or developer message exists; System returns the first
	ToolNames     []string // function names of tools, in request order
	ResponseType  string   // response_format.type
	Messages      int
	modelStart    int // byte span of the model value
	modelEnd      int
	streamOptsAt  int // byte span of the stream_options value; -1 when absent
	streamOptsEnd int
	closeAt       int // index of the top-level closing brace

	// The first system message's content: a string's raw bytes in the body (decoded
	// by System, off the request path), or the content itself.
	system     Content
	sysRaw     []byte
	sysLazy    bool
	sysEscaped bool
}

// System returns the content of the first system (or developer) message; see
// HasSystem. A string content is decoded on each call: the scan only validates it,
// since the gateway needs it after the answer (for the fingerprint), not before.
func (h *Head) System() Content {
	if !h.sysLazy {
		return h.system
	}
	if !h.sysEscaped {
		return Content{Text: string(h.sysRaw)}
	}
	text, _ := unescape(h.sysRaw) // validated by the scan, so it cannot fail
	return Content{Text: text}
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
			h.system, h.HasSystem = m.Content, true
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

// scanFast reads a Head from a well-formed request in one validating pass; ok is false
// when the body is not plainly well-formed (the caller then decodes it fully for a
// precise verdict). Anything the decoder might read differently (repeated or escaped
// keys, keys that differ only in case where the decoder ignores case) also makes it
// give up rather than guess.
func scanFast(body []byte) (h *Head, ok bool) {
	s := &jsonScanner{b: body}
	h = &Head{modelStart: -1, streamOptsAt: -1}
	var seen [7]bool
	// member reports whether the key is name, seen for the first time; a repeated key
	// leaves the last-one-wins rule to the decoder.
	member := func(ks, ke int, i int, name string) bool {
		if !s.key(ks, ke, name) {
			return false
		}
		if seen[i] {
			s.fail()
		}
		seen[i] = true
		return true
	}
	if s.peek() != '{' {
		return nil, false
	}
	s.object(func(ks, ke int) {
		if s.keyEscaped {
			s.fail()
			return
		}
		switch {
		case member(ks, ke, 0, "model"):
			h.modelStart = s.i
			s.stringValue(&h.Model)
			h.modelEnd = s.i
		case member(ks, ke, 1, "stream"):
			s.boolValue(&h.Stream)
		case member(ks, ke, 2, "stream_options"):
			h.streamOptsAt = s.i
			s.objectOrNull(func(ks, ke int) {
				if caseFold(s, ks, ke, "include_usage") {
					s.boolValue(&h.IncludeUsage)
					return
				}
				s.value()
			})
			h.streamOptsEnd = s.i
		case member(ks, ke, 3, "messages"):
			if s.peek() != '[' {
				s.fail()
				return
			}
			s.array(func() { h.scanMessage(s) })
		case member(ks, ke, 4, "tools"):
			s.arrayOrNull(func() { h.scanTool(s) })
		case member(ks, ke, 5, "metadata"):
			s.objectOrNull(func(ks, ke int) {
				if s.keyEscaped {
					s.fail()
				} else if s.key(ks, ke, "workload") {
					s.stringValue(&h.Workload)
				} else {
					s.value()
				}
			})
		case member(ks, ke, 6, "response_format"):
			s.objectOrNull(func(ks, ke int) {
				if caseFold(s, ks, ke, "type") {
					s.stringValue(&h.ResponseType)
					return
				}
				s.value()
			})
		default:
			s.value()
		}
	})
	if s.bad || !s.atEnd() || h.Model == "" || h.Messages == 0 || h.modelStart < 0 {
		return nil, false
	}
	h.closeAt = closingBrace(body)
	return h, h.closeAt > 0
}

// caseFold reports whether the key is name. The decoder matches keys of nested
// option objects without regard to case, so a key equal to name only when case is
// ignored (or escaped) makes the scan give up, leaving the verdict to the decoder.
func caseFold(s *jsonScanner, ks, ke int, name string) bool {
	if s.keyEscaped {
		s.fail()
		return false
	}
	if s.key(ks, ke, name) {
		return true
	}
	if ke-ks == len(name) && strings.EqualFold(string(s.b[ks:ke]), name) {
		s.fail()
	}
	return false
}

// scanMessage reads one element of messages: an object with a valid role; the first
// system or developer message's content is kept.
func (h *Head) scanMessage(s *jsonScanner) {
	h.Messages++
	var role string
	roleSeen := false
	cs, ce := -1, -1
	var contentKind byte
	s.objectOnly(func(ks, ke int) {
		switch {
		case s.keyEscaped:
			s.fail()
		case s.key(ks, ke, "role"):
			if roleSeen {
				s.fail()
			}
			roleSeen = true
			s.stringValue(&role)
		case s.key(ks, ke, "content"):
			if cs >= 0 {
				s.fail()
			}
			cs, ce, contentKind = s.value()
		default:
			s.value()
		}
	})
	if s.bad || !validRoles[role] {
		s.fail()
		return
	}
	if h.HasSystem || (role != "system" && role != "developer") {
		return
	}
	h.HasSystem = true
	switch contentKind {
	case 0, 'n':
		h.system = Content{IsNull: true}
	case '"':
		h.sysRaw, h.sysLazy, h.sysEscaped = s.b[cs+1:ce-1], true, bytesHasBackslash(s.b[cs:ce])
	case '[':
		if json.Unmarshal(s.b[cs:ce], &h.system) != nil {
			s.fail()
		}
	default:
		s.fail()
	}
}

// scanTool reads one element of tools: its type and, for a function, its name.
func (h *Head) scanTool(s *jsonScanner) {
	var typ, name string
	typSeen, fnSeen := false, false
	s.objectOnly(func(ks, ke int) {
		switch {
		case s.keyEscaped:
			s.fail()
		case s.key(ks, ke, "type"):
			if typSeen {
				s.fail()
			}
			typSeen = true
			s.stringValue(&typ)
		case s.key(ks, ke, "function"):
			if fnSeen {
				s.fail()
			}
			fnSeen = true
			s.objectOnly(func(ks, ke int) {
				switch {
				case s.keyEscaped:
					s.fail()
				case s.key(ks, ke, "name"):
					if name != "" {
						s.fail()
					}
					s.stringValue(&name)
				default:
					s.value()
				}
			})
		default:
			s.value()
		}
	})
	switch {
	case s.bad || !typSeen:
		s.fail()
	case typ != "function":
		// Other tool kinds (custom, ...) pass through unread, as in DecodeChatRequest.
		h.ToolNames = append(h.ToolNames, "")
	case name == "":
		s.fail()
	default:
		h.ToolNames = append(h.ToolNames, name)
	}
}

func bytesHasBackslash(b []byte) bool { return bytes.IndexByte(b, '\\') >= 0 }

// Request returns a ChatRequest holding what the Head knows, for code that reads
// requests as ChatRequest (workload fingerprints and tags): model, stream, the first
// system message, tool names, response format type and metadata.workload. It is not
// the conversation; decode the body with DecodeChatRequest for that.
func (h *Head) Request() *ChatRequest {
	req := &ChatRequest{Model: h.Model, Stream: h.Stream}
	if h.HasSystem {
		req.Messages = []Message{{Role: "system", Content: h.System()}}
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
