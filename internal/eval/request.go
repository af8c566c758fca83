package eval

import (
	"encoding/json"
	"fmt"

	"github.com/downshift-dev/downshift/internal/openai"
)

// BuildRequest returns the body to send a candidate for call c: the recorded request
// with the model set to upstream and streaming on with usage (so time to first token
// and tokens are measured the same way for every candidate), and, when examples is
// not empty, examples added to the first system message (a system message is put
// first when the request has none). Every other field is sent as recorded.
func BuildRequest(c *Call, upstream, examples string) ([]byte, error) {
	set := map[string]any{
		"model":          upstream,
		"stream":         true,
		"stream_options": openai.IncludeUsage(),
		"n":              nil, // one answer per call is what is scored
	}
	if examples != "" {
		msgs, err := withExamples(c.Request, examples)
		if err != nil {
			return nil, fmt.Errorf("eval: call %s: %w", c.ID, err)
		}
		set["messages"] = msgs
	}
	body, err := openai.PatchRequest(c.Request, set)
	if err != nil {
		return nil, fmt.Errorf("eval: call %s: %w", c.ID, err)
	}
	return body, nil
}

// withExamples returns the request's messages with text appended to the first system
// message's content (a string, or an array of parts that gets one more text part).
func withExamples(request []byte, text string) (json.RawMessage, error) {
	var top struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(request, &top); err != nil {
		return nil, err
	}
	for i, raw := range top.Messages {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		var role string
		_ = json.Unmarshal(m["role"], &role)
		if role != "system" && role != "developer" {
			continue
		}
		content, err := appendText(m["content"], text)
		if err != nil {
			return nil, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		m["content"] = content
		if top.Messages[i], err = json.Marshal(m); err != nil {
			return nil, err
		}
		return json.Marshal(top.Messages)
	}
	sys, err := json.Marshal(map[string]string{"role": "system", "content": text})
	if err != nil {
		return nil, err
	}
	return json.Marshal(append([]json.RawMessage{sys}, top.Messages...))
}

func appendText(content json.RawMessage, text string) (json.RawMessage, error) {
	var s string
	if err := json.Unmarshal(content, &s); err == nil {
		if s != "" {
			s += "\n\n"
		}
		return json.Marshal(s + text)
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(content, &parts); err != nil {
		return nil, fmt.Errorf("neither a string nor an array of parts")
	}
	part, err := json.Marshal(map[string]string{"type": "text", "text": text})
	if err != nil {
		return nil, err
	}
	return json.Marshal(append(parts, part))
}
