package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// Output is the kind of answer a call got.
type Output string

// Kinds of answer. The mix of a workload is over OutputToolCall, OutputJSON and
// OutputText; failed calls and calls whose answer is not known are left out of it.
const (
	OutputToolCall Output = "tool_call" // the answer called one or more tools
	OutputJSON     Output = "json"      // the answer's content is a JSON object or array
	OutputText     Output = "text"      // anything else the model wrote
	OutputError    Output = "error"     // the call failed (status >= 400)
	OutputUnknown  Output = ""          // no answer to look at (payloads not loaded)
)

// Call is what the report needs of one recorded call. FromStoreCall builds it from a
// store.Call; tests and importers may fill it directly.
type Call struct {
	ID          string
	Workload    string // the client's tag
	WorkloadID  string // the workload discovery assigned (see Input.Assign)
	Fingerprint string

	RequestedModel string
	ServedModel    string

	PromptTokens     int
	CompletionTokens int
	CachedTokens     int
	CostUSD          float64
	Latency          time.Duration
	StartedAt        time.Time
	Status           int

	Output       Output
	Tools        []string // the tools the answer called, in order (repeats kept)
	ToolsOffered int      // how many tools the request offered
	// Prompt is the text prompt diversity is measured on: the request's user messages
	// (the system prompt when there are none), at most MaxPromptBytes from the end.
	Prompt string
}

// MaxPromptBytes bounds Call.Prompt as FromStoreCall fills it. The end of a long
// conversation is what sets one call apart from another; a bound keeps 100k calls in
// memory at a few hundred MB at most.
const MaxPromptBytes = 2048

// ErrSealed is returned by FromStoreCall for a call whose payloads are still sealed.
var ErrSealed = errors.New("report: call payloads are sealed; open them first (seal.Keyring.OpenCall)")

// FromStoreCall builds a report Call from a stored call whose Request and Response are
// plaintext JSON (opened with seal.Keyring.OpenCall when they were sealed). A call
// listed without payloads gets OutputUnknown (or OutputError) and no prompt; a payload
// that is not the JSON expected is an error.
func FromStoreCall(c store.Call) (Call, error) {
	if c.KeyID != "" {
		return Call{}, fmt.Errorf("call %s: %w", c.ID, ErrSealed)
	}
	rc := Call{
		ID: c.ID, Workload: c.Workload, WorkloadID: c.WorkloadID, Fingerprint: c.Fingerprint,
		RequestedModel: c.RequestedModel, ServedModel: c.ServedModel,
		PromptTokens: c.PromptTokens, CompletionTokens: c.CompletionTokens, CachedTokens: c.CachedTokens,
		CostUSD: c.CostUSD, Latency: c.Latency, StartedAt: c.StartedAt, Status: c.Status,
	}
	if len(c.Request) > 0 {
		prompt, offered, err := readRequest(c.Request)
		if err != nil {
			return Call{}, fmt.Errorf("call %s: request: %w", c.ID, err)
		}
		rc.Prompt, rc.ToolsOffered = prompt, offered
	}
	switch {
	case c.Status >= 400:
		rc.Output = OutputError
	case len(c.Response) > 0:
		out, tools, err := ReadAnswer(c.Response)
		if err != nil {
			return Call{}, fmt.Errorf("call %s: response: %w", c.ID, err)
		}
		rc.Output, rc.Tools = out, tools
	}
	return rc, nil
}

// readRequest returns the prompt text and the number of tools a chat request offers.
// It walks the JSON with gjson rather than decoding it: agent requests run to tens of
// KB, mostly a system prompt and tool schemas the report does not need, and decoding
// them with encoding/json took ~220 µs for 13 KB, 20 s for 100k calls.
func readRequest(b []byte) (prompt string, tools int, err error) {
	if !gjson.ValidBytes(b) {
		return "", 0, errors.New("not valid JSON")
	}
	req := gjson.ParseBytes(b)
	if !req.IsObject() {
		return "", 0, errors.New("not a JSON object")
	}
	var user, system strings.Builder
	var systems []gjson.Result // read only when there is no user message
	req.Get("messages").ForEach(func(_, m gjson.Result) bool {
		switch m.Get("role").String() {
		case "user":
			if user.Len() > 0 {
				user.WriteByte('\n')
			}
			writeContent(&user, m.Get("content"))
		case "system", "developer":
			systems = append(systems, m.Get("content"))
		}
		return true
	})
	prompt = user.String()
	if prompt == "" {
		for _, c := range systems {
			writeContent(&system, c)
		}
		prompt = system.String()
	}
	if t := req.Get("tools"); t.IsArray() {
		tools = int(req.Get("tools.#").Int())
	}
	return tail(prompt, MaxPromptBytes), tools, nil
}

// writeContent writes the text of message content, a string or an array of parts (the
// text parts joined by newlines, as openai.Content.String does).
func writeContent(b *strings.Builder, c gjson.Result) {
	if c.Type == gjson.String {
		b.WriteString(c.String())
		return
	}
	first := true
	c.ForEach(func(_, part gjson.Result) bool {
		if part.Get("type").String() == "text" {
			if !first {
				b.WriteByte('\n')
			}
			b.WriteString(part.Get("text").String())
			first = false
		}
		return true
	})
}

// tail returns the last n bytes of s or fewer, starting on a rune boundary.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return s
}

// ReadAnswer tells what kind of answer a chat.completion is and which tools it called,
// looking at its first choice. An OpenAI error body reads as OutputError.
func ReadAnswer(b []byte) (Output, []string, error) {
	var resp struct {
		Choices []struct {
			Message struct {
				Content   openai.Content `json:"content"`
				ToolCalls []struct {
					Function struct {
						Name string `json:"name"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return OutputUnknown, nil, err
	}
	if len(resp.Error) > 0 && string(resp.Error) != "null" {
		return OutputError, nil, nil
	}
	if len(resp.Choices) == 0 {
		return OutputUnknown, nil, errors.New("no choices")
	}
	m := resp.Choices[0].Message
	if len(m.ToolCalls) > 0 {
		names := make([]string, len(m.ToolCalls))
		for i, tc := range m.ToolCalls {
			names[i] = tc.Function.Name
		}
		return OutputToolCall, names, nil
	}
	if IsJSONAnswer(m.Content.String()) {
		return OutputJSON, nil, nil
	}
	return OutputText, nil, nil
}

// IsJSONAnswer reports whether an answer's text is a JSON object or array, alone or
// in one Markdown code fence (```json ... ```), as models often wrap it. A bare string
// or number is text: nothing structured to check it against.
func IsJSONAnswer(s string) bool {
	s = strings.TrimSpace(s)
	if body, ok := strings.CutPrefix(s, "```"); ok {
		body, ok = strings.CutSuffix(body, "```")
		if !ok {
			return false
		}
		// The fence's info string ("json") runs to the end of its first line.
		if i := strings.IndexByte(body, '\n'); i >= 0 && !strings.ContainsAny(body[:i], "{[") {
			body = body[i+1:]
		}
		s = strings.TrimSpace(body)
	}
	if s == "" || (s[0] != '{' && s[0] != '[') {
		return false
	}
	return json.Valid([]byte(s))
}
