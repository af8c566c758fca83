// Package dataset loads recorded, real chat-completion calls from public datasets
// (tau-bench agent trajectories, RouteLLM's GSM8K answers, BFCL's questions and ground
// truth) and from logs (OpenAI chat JSON Lines, Data Flywheel logs), and turns them
// into Calls: a request as an agent sent it and the answers real models gave. Importer
// turns the same records into store.Calls with deterministic IDs for `downshift import`.
//
// It is for the cold path, the simulator, the demo and tests: it reads files and the
// bundled examples. It is not for the gateway's hot path, and it neither writes to a
// store nor redacts or seals: the caller runs imported calls through the same privacy
// step as recorded ones.
package dataset

import (
	"encoding/json"
	"fmt"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Model names as the datasets recorded them.
const (
	// ModelGPT4o answered every tau-bench airline turn.
	ModelGPT4o = "gpt-4o"
	// ModelGPT4 is RouteLLM's strong model on GSM8K.
	ModelGPT4 = "gpt-4-1106-preview"
	// ModelMixtral is RouteLLM's weak model on GSM8K.
	ModelMixtral = "mistralai/Mixtral-8x7B-Instruct-v0.1"
)

// Call is one recorded chat-completion call: the request as the agent sent it and the
// answers real models gave to it.
type Call struct {
	// ID names the call stably within its dataset, e.g. "taubench-airline/3/1/7"
	// (task, trial, message index) or "gsm8k/42" (row).
	ID string
	// Dataset is "taubench-airline" or "gsm8k".
	Dataset string
	// Request is the request as parsed wire types. Its Messages share backing arrays
	// with the other calls of the same conversation: do not append to them.
	Request openai.ChatRequest
	// Answers holds one answer per model that answered; the first is the reference
	// (the model the agent asked for).
	Answers []Answer

	rawMessages []json.RawMessage
	rawTools    json.RawMessage
}

// Answer is one model's recorded answer to a call.
type Answer struct {
	// Model is the model that gave the answer, as the dataset names it.
	Model string
	// Message is the assistant message, with content and/or tool calls (ids kept).
	Message openai.Message
	// FinishReason is "tool_calls" when the message calls tools, else "stop".
	FinishReason string
	// Correct is the dataset's verdict on the answer, when it has one.
	Correct *bool
}

// Answer returns the answer the named model gave, if it gave one.
func (c *Call) Answer(model string) (Answer, bool) {
	for _, a := range c.Answers {
		if a.Model == model {
			return a, true
		}
	}
	return Answer{}, false
}

// RequestJSON returns the request as a JSON body ready to POST to
// /v1/chat/completions. Messages and tools are the recorded bytes, unchanged.
func (c *Call) RequestJSON() ([]byte, error) {
	body := struct {
		Model    string            `json:"model"`
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools,omitempty"`
	}{c.Request.Model, c.rawMessages, c.rawTools}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("dataset: encode request of call %s: %w", c.ID, err)
	}
	return b, nil
}

// recordedMessage is a chat message as the datasets store it: content is a string
// or null, never an array of parts.
type recordedMessage struct {
	Role       string            `json:"role"`
	Content    *string           `json:"content"`
	Name       string            `json:"name,omitempty"`
	ToolCalls  []openai.ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
}

func (m recordedMessage) message() openai.Message {
	out := openai.Message{
		Role:       m.Role,
		Name:       m.Name,
		ToolCalls:  m.ToolCalls,
		ToolCallID: m.ToolCallID,
	}
	if m.Content == nil {
		out.Content = openai.Content{IsNull: true}
	} else {
		out.Content = openai.TextContent(*m.Content)
	}
	return out
}

func finishReason(m openai.Message) string {
	if len(m.ToolCalls) > 0 {
		return "tool_calls"
	}
	return "stop"
}
