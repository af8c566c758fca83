package sim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// invent makes up an answer to req: a tool call when tools are offered (always when
// tool_choice requires one, never when it is "none", else at ToolCallShare), JSON when
// response_format asks for it, else text. The same request always gets the same
// answer under the same seed.
func (s *Server) invent(req *openai.ChatRequest, parallel bool) (openai.Message, string, error) {
	rng := requestRand(s.opts.Seed, conversationKey(req.Messages))
	choice, err := parseToolChoice(req.ToolChoice)
	if err != nil {
		return openai.Message{}, "", err
	}
	if len(req.Tools) > 0 && choice.mode != "none" {
		share := s.opts.ToolCallShare
		if share == 0 {
			share = 0.5
		}
		if choice.mode == "required" || choice.name != "" || rng.Float64() < share {
			calls, err := inventToolCalls(rng, req.Tools, choice.name, parallel)
			if err != nil {
				return openai.Message{}, "", err
			}
			return openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}, ToolCalls: calls}, "tool_calls", nil
		}
	}
	text, err := inventContent(rng, req)
	if err != nil {
		return openai.Message{}, "", err
	}
	return openai.Message{Role: "assistant", Content: openai.TextContent(text)}, "stop", nil
}

// toolChoice is the request's tool_choice: mode "auto", "none" or "required", or a
// named function.
type toolChoice struct {
	mode string
	name string
}

func parseToolChoice(raw json.RawMessage) (toolChoice, error) {
	if len(raw) == 0 {
		return toolChoice{mode: "auto"}, nil
	}
	var mode string
	if err := json.Unmarshal(raw, &mode); err == nil {
		switch mode {
		case "auto", "none", "required":
			return toolChoice{mode: mode}, nil
		}
		return toolChoice{}, badParam("tool_choice", fmt.Sprintf("invalid value %q: want none, auto, required or a function", mode))
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Function.Name == "" {
		return toolChoice{}, badParam("tool_choice", "want none, auto, required or {\"type\":\"function\",\"function\":{\"name\":...}}")
	}
	return toolChoice{mode: "required", name: named.Function.Name}, nil
}

func badParam(param, msg string) error {
	return &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest, code: openai.CodeInvalidValue, param: param, msg: msg}
}

// inventToolCalls calls the named tool, or one or (when parallel) sometimes two
// tools picked at random, with arguments built from their schemas.
func inventToolCalls(rng *rand.Rand, tools []openai.Tool, name string, parallel bool) ([]openai.ToolCall, error) {
	var picked []openai.FunctionDecl
	if name != "" {
		i := slices.IndexFunc(tools, func(t openai.Tool) bool { return t.Function.Name == name })
		if i < 0 {
			return nil, badParam("tool_choice", fmt.Sprintf("tool_choice names %q, which is not in tools", name))
		}
		picked = append(picked, tools[i].Function)
	} else {
		n := 1
		if parallel && len(tools) > 1 && rng.Float64() < 0.25 {
			n = 2
		}
		for _, i := range rng.Perm(len(tools))[:n] {
			picked = append(picked, tools[i].Function)
		}
	}
	calls := make([]openai.ToolCall, 0, len(picked))
	for _, fn := range picked {
		args, err := exampleJSON(rng, fn.Parameters, false)
		if err != nil {
			return nil, badParam("tools", fmt.Sprintf("function %s: parameters: %v", fn.Name, err))
		}
		calls = append(calls, openai.ToolCall{
			ID:       "call_sim_" + randomAlnum(rng, 20),
			Type:     "function",
			Function: openai.FunctionCall{Name: fn.Name, Arguments: string(args)},
		})
	}
	return calls, nil
}

// inventContent returns text, or JSON when response_format asks for it.
func inventContent(rng *rand.Rand, req *openai.ChatRequest) (string, error) {
	text := inventText(rng, req)
	rf := req.ResponseFormat
	if rf == nil {
		return text, nil
	}
	switch rf.Type {
	case "", "text":
		return text, nil
	case "json_object":
		b, err := marshal(map[string]string{"answer": text})
		return string(b), err
	case "json_schema":
		var js struct {
			Schema json.RawMessage `json:"schema"`
		}
		if err := json.Unmarshal(rf.JSONSchema, &js); err != nil {
			return "", badParam("response_format.json_schema", "want an object with a schema")
		}
		b, err := exampleJSON(rng, js.Schema, true)
		if err != nil {
			return "", badParam("response_format.json_schema.schema", err.Error())
		}
		return string(b), nil
	}
	return "", badParam("response_format.type", fmt.Sprintf("invalid value %q: want text, json_object or json_schema", rf.Type))
}

var fillerWords = strings.Fields(`the request was handled and the details look consistent with
what was asked so the next step is to confirm them with you before anything changes please
let me know if this matches your needs or if something should be adjusted`)

// inventText writes a plainly simulated answer of a seeded length.
func inventText(rng *rand.Rand, req *openai.ChatRequest) string {
	var b strings.Builder
	b.WriteString("[simulated answer] ")
	if last := lastUserText(req.Messages); last != "" {
		if r := []rune(last); len(r) > 60 {
			last = string(r[:60]) + "..."
		}
		fmt.Fprintf(&b, "About %q: ", last)
	}
	n := 12 + rng.IntN(40)
	for i := range n {
		w := fillerWords[rng.IntN(len(fillerWords))]
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(w)
	}
	b.WriteByte('.')
	return b.String()
}

func lastUserText(msgs []openai.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return strings.Join(strings.Fields(msgs[i].Content.String()), " ")
		}
	}
	return ""
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomAlnum(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[rng.IntN(len(alnum))]
	}
	return string(b)
}
