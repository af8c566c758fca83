package tune

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/openai"
)

// errUnconvertible is wrapped by the conversions for calls that no format here can
// carry faithfully (images, unknown roles, malformed tool calls); such calls are left
// out and counted, never written half converted.
var errUnconvertible = errors.New("tune: cannot be written as a chat fine-tuning example")

func unconvertible(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnconvertible, fmt.Sprintf(format, args...))
}

// example is one call made ready to write, in OpenAI's chat terms and with only what
// every format can carry: the request's messages, then the reference's answer as the
// target, last; the tools offered; and parallel_tool_calls when the request set it.
type example struct {
	CallID            string
	Messages          []message // the prompt, then the target
	Tools             []openai.FunctionDecl
	ParallelToolCalls *bool
}

// message is one message of an example. Content is text only.
type message struct {
	Role       string // system, user, assistant or tool
	Content    string
	Name       string // system, user and assistant messages only
	ToolCalls  []toolCall
	ToolCallID string // tool messages: the id of the call this answers
}

// toolCall is one function call of an assistant message.
type toolCall struct {
	ID        string
	Name      string
	Arguments string // a JSON object, as the model wrote it
}

// target is the message the example trains on: the reference's answer.
func (e *example) target() *message { return &e.Messages[len(e.Messages)-1] }

// hasAnswer reports whether a recorded answer says anything: text or a tool call.
func hasAnswer(m *openai.Message) bool {
	return len(m.ToolCalls) > 0 || strings.TrimSpace(m.Content.String()) != ""
}

// newExample converts a prepared call. Tool calls without an id get one ("call_1",
// ...) and tool results without a tool_call_id are matched to the earliest call not
// yet answered, so that every tool message names an earlier call; developer messages
// become system messages (the role fine-tuning formats know). Calls whose messages
// hold anything but text, other roles, tool calls whose arguments are not a JSON
// object, tool results that answer no earlier call, or tool calls with no tools
// declared wrap errUnconvertible.
func newExample(c *eval.Call) (*example, error) {
	ex := &example{CallID: c.ID}
	ids := newCallIDs()
	for i := range c.Req.Messages {
		m, err := convertMessage(&c.Req.Messages[i], ids)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		ex.Messages = append(ex.Messages, m)
	}
	answer := c.Answer
	answer.Role = "assistant"
	t, err := convertMessage(&answer, ids)
	if err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	ex.Messages = append(ex.Messages, t)

	calls := false
	for i := range ex.Messages {
		calls = calls || len(ex.Messages[i].ToolCalls) > 0
	}
	for _, tool := range c.Req.Tools {
		if tool.Type != "function" && tool.Type != "" {
			return nil, unconvertible("a tool of type %q (only functions can be written)", tool.Type)
		}
		if tool.Function.Name == "" {
			return nil, unconvertible("a tool without a name")
		}
		ex.Tools = append(ex.Tools, tool.Function)
	}
	if calls && len(ex.Tools) == 0 {
		return nil, unconvertible("tool calls, but the request declares no tools")
	}
	var p struct {
		ParallelToolCalls *bool `json:"parallel_tool_calls"`
	}
	if err := json.Unmarshal(c.Request, &p); err == nil {
		ex.ParallelToolCalls = p.ParallelToolCalls
	}
	return ex, nil
}

// callIDs gives tool calls their ids and tells which call a tool result answers. A
// recorded id that repeats (some servers number calls afresh each turn) is written
// under a new id, and a tool result naming it answers the latest call so named.
type callIDs struct {
	latest  map[string]string // recorded id -> the id written for the latest call so named
	used    map[string]bool   // ids written
	pending []string          // ids written whose calls are not answered yet, oldest first
	n       int
}

func newCallIDs() *callIDs {
	return &callIDs{latest: map[string]string{}, used: map[string]bool{}}
}

func (ids *callIDs) assign(recorded string) string {
	id := recorded
	for id == "" || ids.used[id] {
		ids.n++
		id = fmt.Sprintf("call_%d", ids.n)
	}
	ids.used[id] = true
	if recorded != "" {
		ids.latest[recorded] = id
	}
	ids.pending = append(ids.pending, id)
	return id
}

func (ids *callIDs) answer(recorded string) (string, error) {
	var id string
	switch {
	case recorded != "":
		var ok bool
		if id, ok = ids.latest[recorded]; !ok {
			return "", unconvertible("a tool result for call %q, which no earlier message made", recorded)
		}
	case len(ids.pending) > 0:
		id = ids.pending[0]
	default:
		return "", unconvertible("a tool result without a tool_call_id, and no call is waiting for one")
	}
	for i, p := range ids.pending {
		if p == id {
			ids.pending = append(ids.pending[:i], ids.pending[i+1:]...)
			break
		}
	}
	return id, nil
}

func convertMessage(m *openai.Message, ids *callIDs) (message, error) {
	out := message{Role: m.Role, Name: m.Name}
	switch m.Role {
	case "system", "user", "assistant", "tool":
	case "developer":
		out.Role = "system"
	default:
		return message{}, unconvertible("role %q", m.Role)
	}
	if m.Content.IsParts {
		for _, p := range m.Content.Parts {
			if p.Type != "text" {
				return message{}, unconvertible("content of type %q (only text can be written)", p.Type)
			}
		}
	}
	out.Content = m.Content.String()
	if len(m.ToolCalls) > 0 && out.Role != "assistant" {
		return message{}, unconvertible("tool calls in a %s message", m.Role)
	}
	for _, tc := range m.ToolCalls {
		if tc.Type != "function" && tc.Type != "" {
			return message{}, unconvertible("a tool call of type %q", tc.Type)
		}
		if tc.Function.Name == "" {
			return message{}, unconvertible("a tool call without a function name")
		}
		args, err := objectArguments(tc.Function.Arguments)
		if err != nil {
			return message{}, fmt.Errorf("call of %s: %w", tc.Function.Name, err)
		}
		out.ToolCalls = append(out.ToolCalls, toolCall{ID: ids.assign(tc.ID), Name: tc.Function.Name, Arguments: args})
	}
	switch out.Role {
	case "tool":
		id, err := ids.answer(m.ToolCallID)
		if err != nil {
			return message{}, err
		}
		out.ToolCallID, out.Name = id, ""
	case "assistant":
		if len(out.ToolCalls) == 0 && strings.TrimSpace(out.Content) == "" {
			return message{}, unconvertible("an assistant message with neither text nor tool calls")
		}
	}
	return out, nil
}

// objectArguments checks that a tool call's arguments are a JSON object. Empty
// arguments, which some servers send for a function without parameters, become "{}".
func objectArguments(s string) (string, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "{}", nil
	}
	if t[0] != '{' || !json.Valid([]byte(t)) {
		return "", unconvertible("arguments that are not a JSON object")
	}
	return s, nil
}
