package openai

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
)

// RequestFormat is what scoring an answer needs of its request: the tools offered and
// the response format asked for.
type RequestFormat struct {
	Tools          []Tool
	ResponseFormat *ResponseFormat
}

// FormatReader reads the tools and response_format of chat-completion bodies,
// skipping the conversation, and keeps the decoded tools of the last tool sets it saw:
// an agent sends the same tools with every call, and decoding them is most of the
// cost. The Tools it returns are shared between calls: do not modify them. The zero
// value is ready to use and safe for concurrent use.
type FormatReader struct {
	mu    sync.Mutex
	tools map[string][]Tool // raw tools JSON -> decoded
}

// maxToolSets bounds a FormatReader's cache; it is emptied when full.
const maxToolSets = 256

// Read returns body's tools and response_format. A later duplicate key wins, as in
// DecodeChatRequest, with which it agrees.
func (r *FormatReader) Read(body []byte) (RequestFormat, error) {
	var f RequestFormat
	top := gjson.ParseBytes(body)
	if !top.IsObject() {
		return f, fmt.Errorf("openai: request body is not a JSON object")
	}
	var tools, format string
	top.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "tools":
			tools = v.Raw
		case "response_format":
			format = v.Raw
		}
		return true
	})
	if tools != "" && tools != "null" {
		var err error
		if f.Tools, err = r.decodeTools(tools); err != nil {
			return f, err
		}
	}
	if format != "" && format != "null" {
		if err := json.Unmarshal([]byte(format), &f.ResponseFormat); err != nil {
			return f, fmt.Errorf("openai: response_format: %w", err)
		}
	}
	return f, nil
}

func (r *FormatReader) decodeTools(raw string) ([]Tool, error) {
	r.mu.Lock()
	t, ok := r.tools[raw]
	r.mu.Unlock()
	if ok {
		return t, nil
	}
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return nil, fmt.Errorf("openai: tools: %w", err)
	}
	r.mu.Lock()
	if r.tools == nil || len(r.tools) >= maxToolSets {
		r.tools = make(map[string][]Tool)
	}
	r.tools[strings.Clone(raw)] = t // raw is a slice of the whole body
	r.mu.Unlock()
	return t, nil
}

// PatchScanned is PatchRequest for a body that ScanChatRequest has accepted, and so
// is known to be a valid JSON object: it skips PatchRequest's validation pass, the
// larger part of its cost on a long conversation.
func PatchScanned(body []byte, set map[string]any) ([]byte, error) {
	members, ok := splitObject(body)
	if !ok {
		return nil, ErrNotObject
	}
	return patchMembers(members, len(body), set)
}
