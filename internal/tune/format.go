package tune

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Format is a fine-tuning file format: one JSON object per line, one example a line.
type Format string

// Formats.
const (
	// FormatOpenAI is OpenAI's chat fine-tuning format (supervised method): each line
	// {"messages": [...], "tools": [...], "parallel_tool_calls": bool}, with roles
	// system, user, assistant and tool; content strings, null only beside an
	// assistant's tool calls; tool calls as {"id", "type": "function", "function":
	// {"name", "arguments": "<JSON string>"}}; tool messages naming their call in
	// tool_call_id; "tools" on every line that makes a call; "parallel_tool_calls" only
	// when the recorded request set it. Earlier assistant turns carry "weight": 0, so
	// that each line trains on its own target only: those turns are the reference's
	// answers to earlier calls, which are examples of their own. See
	// https://platform.openai.com/docs/api-reference/fine-tuning/chat-input and
	// https://platform.openai.com/docs/guides/supervised-fine-tuning.
	FormatOpenAI Format = "openai"

	// FormatShareGPT is the ShareGPT convention as LLaMA-Factory reads it (its
	// data/README.md, "sharegpt" formatting, and src/llamafactory/data/converter.py):
	// {"conversations": [{"from": "system|human|gpt|function_call|observation",
	// "value": "..."}], "tools": "<JSON string>"}. The system prompt is the first turn;
	// then human or observation turns at odd positions and gpt or function_call turns
	// at even ones, ending on the target. A function_call turn's value is the JSON of
	// {"name", "arguments": {...}} (a list of them for parallel calls), any text beside
	// the calls being dropped, since LLaMA-Factory reads that value as JSON; the
	// results of parallel calls are one observation joined as LLaMA-Factory's own
	// OpenAI-format converter joins them; consecutive user messages are one human turn.
	// "tools" is a JSON string of the functions ({"name", "description",
	// "parameters"}). A call whose turns cannot alternate so is left out. In
	// dataset_info.json: "formatting": "sharegpt", "columns": {"messages":
	// "conversations", "tools": "tools"}; LLaMA-Factory trains on every gpt and
	// function_call turn unless mask_history is set.
	FormatShareGPT Format = "sharegpt"

	// FormatNeMo is NVIDIA NeMo Customizer's chat format: "the OpenAI messages format",
	// {"messages": [...], "tools": [...]} with roles system, user and assistant, the
	// assistant's message last, per
	// https://docs.nvidia.com/nemo/microservices/latest/fine-tune/tutorials/format-training-dataset.html.
	// For tool calling it follows NVIDIA's own examples for Customizer: the tool-calling
	// tutorial (NVIDIA/GenerativeAIExamples, nemo/data-flywheel/tool-calling/
	// 1_data_preparation.ipynb) writes "tools" as OpenAI function tools and the
	// assistant's tool_calls with "arguments" as a JSON object, and the Data Flywheel
	// Blueprint (src/lib/flywheel/util.py, format_training_data) writes an empty string,
	// never null, as the content of assistant messages, because "Customizer expects
	// non-empty content for assistant messages". Tool results are "tool" messages with
	// tool_call_id, as in OpenAI's format.
	FormatNeMo Format = "nemo"
)

// Formats lists the formats Export writes.
func Formats() []Format { return []Format{FormatOpenAI, FormatShareGPT, FormatNeMo} }

// ParseFormat returns the format named s.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, 0, 3)
	for _, f := range Formats() {
		names = append(names, string(f))
	}
	return "", fmt.Errorf("format %q: want %s", s, strings.Join(names, ", "))
}

// line returns the JSON line of an example in format f, without the newline.
// Examples the format cannot carry wrap errUnconvertible.
func (f Format) line(ex *example) ([]byte, error) {
	var v any
	switch f {
	case FormatOpenAI:
		v = openAILine(ex)
	case FormatNeMo:
		v = nemoLine(ex)
	case FormatShareGPT:
		l, err := shareGPTLine(ex)
		if err != nil {
			return nil, err
		}
		v = l
	default:
		return nil, fmt.Errorf("tune: unknown format %q", f)
	}
	return marshal(v)
}

// marshal encodes v without escaping <, > and & (prompts are full of them), compactly.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func tools(ex *example) []openai.Tool {
	var out []openai.Tool
	for _, d := range ex.Tools {
		out = append(out, openai.Tool{Type: "function", Function: d})
	}
	return out
}

type openAIExample struct {
	Messages          []openAIMessage `json:"messages"`
	Tools             []openai.Tool   `json:"tools,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
}

type openAIMessage struct {
	Role       string            `json:"role"`
	Content    *string           `json:"content"`
	Name       string            `json:"name,omitempty"`
	ToolCalls  []openai.ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
	Weight     *int              `json:"weight,omitempty"`
}

func openAILine(ex *example) openAIExample {
	out := openAIExample{Tools: tools(ex), ParallelToolCalls: ex.ParallelToolCalls}
	zero := 0
	for i, m := range ex.Messages {
		om := openAIMessage{Role: m.Role, Name: m.Name, ToolCallID: m.ToolCallID}
		if m.Content != "" || len(m.ToolCalls) == 0 {
			om.Content = &m.Content
		}
		for _, tc := range m.ToolCalls {
			om.ToolCalls = append(om.ToolCalls, openai.ToolCall{ID: tc.ID, Type: "function",
				Function: openai.FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
		}
		if m.Role == "assistant" && i < len(ex.Messages)-1 {
			om.Weight = &zero
		}
		out.Messages = append(out.Messages, om)
	}
	return out
}

type nemoExample struct {
	Messages []nemoMessage `json:"messages"`
	Tools    []openai.Tool `json:"tools,omitempty"`
}

type nemoMessage struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	ToolCalls  []nemoToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type nemoToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function nemoFunction `json:"function"`
}

type nemoFunction struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"` // a JSON object, not a string
}

func nemoLine(ex *example) nemoExample {
	out := nemoExample{Tools: tools(ex)}
	for _, m := range ex.Messages {
		nm := nemoMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			nm.ToolCalls = append(nm.ToolCalls, nemoToolCall{ID: tc.ID, Type: "function",
				Function: nemoFunction{Name: tc.Name, Arguments: json.RawMessage(tc.Arguments)}})
		}
		out.Messages = append(out.Messages, nm)
	}
	return out
}

type shareGPTExample struct {
	Conversations []shareGPTTurn `json:"conversations"`
	Tools         string         `json:"tools,omitempty"`
}

type shareGPTTurn struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

// shareGPTFunction is a function as LLaMA-Factory's tool formatters read it.
type shareGPTFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type shareGPTCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// observationSeparator joins the results of parallel tool calls into one observation
// turn, as LLaMA-Factory's OpenAI-format converter does.
const observationSeparator = "\n</tool_response>\n<tool_response>\n"

func shareGPTLine(ex *example) (shareGPTExample, error) {
	var out shareGPTExample
	if len(ex.Tools) > 0 {
		fns := make([]shareGPTFunction, len(ex.Tools))
		for i, d := range ex.Tools {
			fns[i] = shareGPTFunction{Name: d.Name, Description: d.Description, Parameters: d.Parameters}
		}
		b, err := marshal(fns)
		if err != nil {
			return out, err
		}
		out.Tools = string(b)
	}
	msgs := ex.Messages
	if msgs[0].Role == "system" {
		out.Conversations = append(out.Conversations, shareGPTTurn{From: "system", Value: msgs[0].Content})
		msgs = msgs[1:]
	}
	var turns []shareGPTTurn
	for _, m := range msgs {
		var t shareGPTTurn
		switch {
		case m.Role == "system":
			return out, unconvertible("a system message after the first message (ShareGPT has one system prompt)")
		case m.Role == "user":
			t = shareGPTTurn{From: "human", Value: m.Content}
		case m.Role == "tool":
			t = shareGPTTurn{From: "observation", Value: m.Content}
		case len(m.ToolCalls) > 0:
			calls := make([]shareGPTCall, len(m.ToolCalls))
			for i, tc := range m.ToolCalls {
				calls[i] = shareGPTCall{Name: tc.Name, Arguments: json.RawMessage(tc.Arguments)}
			}
			var v any = calls
			if len(calls) == 1 {
				v = calls[0]
			}
			b, err := marshal(v)
			if err != nil {
				return out, err
			}
			t = shareGPTTurn{From: "function_call", Value: string(b)}
		default:
			t = shareGPTTurn{From: "gpt", Value: m.Content}
		}
		if n := len(turns); n > 0 && turns[n-1].From == t.From {
			switch t.From {
			case "human":
				turns[n-1].Value += "\n\n" + t.Value
				continue
			case "observation":
				turns[n-1].Value += observationSeparator + t.Value
				continue
			}
		}
		turns = append(turns, t)
	}
	for i, t := range turns {
		odd := t.From == "human" || t.From == "observation" // LLaMA-Factory's "odd" turns: 1st, 3rd, ...
		if odd != (i%2 == 0) {
			return out, unconvertible("turns that do not alternate between user or tool and assistant (%s at turn %d)", t.From, i+1)
		}
	}
	if len(turns)%2 != 0 {
		return out, unconvertible("a conversation that does not end on the assistant's turn")
	}
	out.Conversations = append(out.Conversations, turns...)
	return out, nil
}
