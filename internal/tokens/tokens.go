// Package tokens estimates token counts offline, with OpenAI's o200k_base vocabulary,
// for calls whose upstream reported no usage. Estimates are flagged as such wherever
// they are stored; this package is not a substitute for a model's own tokenizer.
package tokens

import (
	"fmt"

	"github.com/tiktoken-go/tokenizer"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Per-message framing that chat models add around each message, and the priming of the
// assistant's reply, as OpenAI documents for its chat formats.
const (
	perMessage = 3
	perReply   = 3
	perTool    = 8
)

// Counter counts tokens. It is safe for concurrent use.
type Counter struct {
	codec tokenizer.Codec
}

// New loads the o200k_base vocabulary (built into the binary; nothing is downloaded).
func New() (*Counter, error) {
	c, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		return nil, fmt.Errorf("tokens: loading o200k_base: %w", err)
	}
	return &Counter{codec: c}, nil
}

// Text counts the tokens of s.
func (c *Counter) Text(s string) int {
	if s == "" {
		return 0
	}
	n, err := c.codec.Count(s)
	if err != nil {
		// Invalid UTF-8: fall back to the usual four bytes a token.
		return (len(s) + 3) / 4
	}
	return n
}

// Prompt estimates the prompt tokens of a request: every message's content, name and
// tool calls, and the declared tools.
func (c *Counter) Prompt(req *openai.ChatRequest) int {
	n := perReply
	for i := range req.Messages {
		n += perMessage + c.message(&req.Messages[i])
	}
	for _, t := range req.Tools {
		n += perTool + c.Text(t.Function.Name) + c.Text(t.Function.Description) + c.Text(string(t.Function.Parameters))
	}
	return n
}

// Completion estimates the completion tokens of a response: every choice's message.
func (c *Counter) Completion(cc *openai.ChatCompletion) int {
	n := 0
	for i := range cc.Choices {
		n += c.message(&cc.Choices[i].Message)
	}
	return n
}

func (c *Counter) message(m *openai.Message) int {
	n := c.Text(m.Content.String()) + c.Text(m.Name)
	if m.Refusal != nil {
		n += c.Text(*m.Refusal)
	}
	for _, tc := range m.ToolCalls {
		n += perMessage + c.Text(tc.Function.Name) + c.Text(tc.Function.Arguments)
	}
	return n
}
