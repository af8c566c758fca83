// Package openai holds the OpenAI chat-completions wire types downshift reads and
// writes, the server-sent-events reader and writer, and the stream accumulator that
// turns a stream of chunks back into one chat.completion.
//
// It is pure: no servers, no clients, no I/O beyond the readers and writers it is given.
// Everything the gateway does not understand is passed through untouched, so these types
// model only the fields downshift acts on; the raw bytes stay the source of truth.
package openai

import (
	"bytes"
	"encoding/json"
)

// ChatRequest is the part of a chat-completion request that downshift reads.
// Unknown fields are not kept here: the gateway forwards the client's own bytes,
// patched only at the top level (see PatchRequest).
type ChatRequest struct {
	Model          string            `json:"model"`
	Messages       []Message         `json:"messages"`
	Stream         bool              `json:"stream,omitempty"`
	StreamOptions  *StreamOptions    `json:"stream_options,omitempty"`
	Tools          []Tool            `json:"tools,omitempty"`
	ToolChoice     json.RawMessage   `json:"tool_choice,omitempty"`
	ResponseFormat *ResponseFormat   `json:"response_format,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	User           string            `json:"user,omitempty"`
}

// StreamOptions is the stream_options request field.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage,omitempty"`
}

// ResponseFormat is the response_format request field: "text", "json_object" or
// "json_schema" (with JSONSchema set).
type ResponseFormat struct {
	Type       string          `json:"type"`
	JSONSchema json.RawMessage `json:"json_schema,omitempty"`
}

// Tool is one entry of the tools request field.
type Tool struct {
	Type     string       `json:"type"`
	Function FunctionDecl `json:"function"`
}

// FunctionDecl declares a function the model may call.
type FunctionDecl struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// Message is one chat message, in a request or in a response choice.
type Message struct {
	Role       string     `json:"role"`
	Content    Content    `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Refusal    *string    `json:"refusal,omitempty"`
}

// ToolCall is a call the model made, as it appears in a complete message.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names a function and carries its arguments as a JSON-encoded string,
// exactly as OpenAI sends them.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ContentPart is one element of array-form message content.
type ContentPart struct {
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
	// Other carries the whole object of a non-text part (image_url, input_audio,
	// file, ...), or of a text part with fields beyond type and text, as raw JSON, so
	// that it survives a decode and re-encode. Type and Text, when changed, are
	// written over it.
	Other json.RawMessage `json:"-"`

	// origType and origText are Type and Text as decoded alongside Other, to tell
	// whether Other can be written back as it is.
	origType, origText string
}

// Content is message content: null, a string, or an array of parts. It re-encodes in
// the form it was decoded from.
type Content struct {
	Text  string
	Parts []ContentPart
	// IsParts is true when the content was (or is to be) an array of parts.
	IsParts bool
	// IsNull is true when the content was JSON null or absent.
	IsNull bool
}

// TextContent returns string content.
func TextContent(s string) Content { return Content{Text: s} }

// String returns the text of the content: the string, or the text parts joined by
// newlines. Non-text parts are left out.
func (c Content) String() string {
	if !c.IsParts {
		return c.Text
	}
	var b bytes.Buffer
	for _, p := range c.Parts {
		if p.Type == "text" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// ChatCompletion is a complete (non-streamed, or reassembled) chat-completion response.
type ChatCompletion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []Choice `json:"choices"`
	Usage             *Usage   `json:"usage,omitempty"`
	SystemFingerprint string   `json:"system_fingerprint,omitempty"`
	ServiceTier       string   `json:"service_tier,omitempty"`
	// Simulated is set by downshift's simulator on answers that are not the named
	// model's own: invented, degraded, or another model's recorded answer replayed.
	Simulated bool `json:"simulated,omitempty"`
}

// Choice is one choice of a ChatCompletion.
type Choice struct {
	Index        int             `json:"index"`
	Message      Message         `json:"message"`
	FinishReason string          `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs,omitempty"`
}

// Usage counts tokens as the upstream reported them.
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails breaks prompt tokens down.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
	AudioTokens  int `json:"audio_tokens,omitempty"`
}

// CompletionTokensDetails breaks completion tokens down.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
	AudioTokens     int `json:"audio_tokens,omitempty"`
}

// ChatCompletionChunk is one event of a streamed chat completion.
type ChatCompletionChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	Choices           []ChunkChoice `json:"choices"`
	Usage             *Usage        `json:"usage,omitempty"`
	SystemFingerprint string        `json:"system_fingerprint,omitempty"`
	ServiceTier       string        `json:"service_tier,omitempty"`
	Simulated         bool          `json:"simulated,omitempty"`
	// Error is set when an upstream reports an error in the middle of a stream, as
	// a data event holding {"error": {...}} instead of a chunk.
	Error *APIError `json:"error,omitempty"`
}

// ChunkChoice is one choice of a chunk.
type ChunkChoice struct {
	Index        int             `json:"index"`
	Delta        Delta           `json:"delta"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs,omitempty"`
}

// Delta is the increment a chunk carries for one choice.
type Delta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	Refusal   *string         `json:"refusal,omitempty"`
	ToolCalls []ToolCallDelta `json:"tool_calls,omitempty"`
}

// ToolCallDelta is a piece of a tool call in a stream; pieces with the same Index
// belong to the same call, and their Arguments concatenate.
type ToolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function FunctionCallDelta `json:"function"`
}

// FunctionCallDelta is a piece of a function call in a stream.
type FunctionCallDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// ErrorResponse is OpenAI's error body: {"error": {...}}.
type ErrorResponse struct {
	Error APIError `json:"error"`
}

// APIError is the object inside an ErrorResponse.
type APIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}
