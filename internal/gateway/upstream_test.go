package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// fakeUpstream is an OpenAI-compatible server over a real socket whose answers are
// scripted by the last user message: "weather" gets two parallel tool calls, "json"
// gets a JSON object, anything else gets text. It streams like OpenAI does (role
// chunk, content or interleaved tool-call argument pieces, finish chunk, optional usage
// chunk, [DONE]) and remembers the bodies it received.
type fakeUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	// handle, when set, answers instead of the script.
	handle func(w http.ResponseWriter, r *http.Request, body []byte) bool
	// script, when set, replaces scriptedAnswer.
	script func(req *openai.ChatRequest) (openai.Message, string)
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeUpstream) received() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.bodies...)
}

const fakeUsagePrompt, fakeUsageCompletion, fakeUsageCached = 57, 13, 7

func (f *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	if f.handle != nil && f.handle(w, r, body) {
		return
	}
	if r.URL.Path == "/v1/embeddings" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"emb","usage":{"prompt_tokens":2,"total_tokens":2}}`)
		return
	}
	var req openai.ChatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, 400)
		return
	}
	answer := scriptedAnswer
	if f.script != nil {
		answer = f.script
	}
	msg, finish := answer(&req)
	usage := &openai.Usage{PromptTokens: fakeUsagePrompt, CompletionTokens: fakeUsageCompletion,
		TotalTokens:         fakeUsagePrompt + fakeUsageCompletion,
		PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: fakeUsageCached}}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_fake")
		_ = json.NewEncoder(w).Encode(openai.ChatCompletion{ID: "chatcmpl-fake", Object: "chat.completion", Created: 1700000000,
			Model: req.Model, Choices: []openai.Choice{{Message: msg, FinishReason: finish}}, Usage: usage})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	send := func(c openai.ChatCompletionChunk) {
		c.ID, c.Object, c.Created, c.Model = "chatcmpl-fake", "chat.completion.chunk", 1700000000, req.Model
		b, _ := json.Marshal(c)
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
	choice := func(d openai.Delta, finish *string) openai.ChatCompletionChunk {
		return openai.ChatCompletionChunk{Choices: []openai.ChunkChoice{{Delta: d, FinishReason: finish}}}
	}
	empty := ""
	send(choice(openai.Delta{Role: "assistant", Content: &empty}, nil))
	if text := msg.Content.String(); text != "" {
		for _, piece := range splitPieces(text, 3) {
			send(choice(openai.Delta{Content: &piece}, nil))
		}
	}
	// Tool calls: first every call's id and name, then argument pieces interleaved
	// across calls, as parallel tool calls arrive from real upstreams.
	for i, tc := range msg.ToolCalls {
		send(choice(openai.Delta{ToolCalls: []openai.ToolCallDelta{{Index: i, ID: tc.ID, Type: "function",
			Function: openai.FunctionCallDelta{Name: tc.Function.Name}}}}, nil))
	}
	pieces := make([][]string, len(msg.ToolCalls))
	for i, tc := range msg.ToolCalls {
		pieces[i] = splitPieces(tc.Function.Arguments, 4)
	}
	for k := 0; ; k++ {
		sent := false
		for i := range pieces {
			if k < len(pieces[i]) {
				send(choice(openai.Delta{ToolCalls: []openai.ToolCallDelta{{Index: i,
					Function: openai.FunctionCallDelta{Arguments: pieces[i][k]}}}}, nil))
				sent = true
			}
		}
		if !sent {
			break
		}
	}
	send(choice(openai.Delta{}, &finish))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		send(openai.ChatCompletionChunk{Choices: []openai.ChunkChoice{}, Usage: usage})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}

func scriptedAnswer(req *openai.ChatRequest) (openai.Message, string) {
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Content.String()
		}
	}
	switch {
	case strings.Contains(last, "weather"):
		return openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}, ToolCalls: []openai.ToolCall{
			{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}},
			{ID: "call_2", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Tokyo","unit":"celsius"}`}},
		}}, "tool_calls"
	case strings.Contains(last, "json"):
		return openai.Message{Role: "assistant", Content: openai.TextContent(`{"name":"Ada","age":36}`)}, "stop"
	}
	return openai.Message{Role: "assistant", Content: openai.TextContent("Hello there, how can I help you today?")}, "stop"
}

// splitPieces cuts s into pieces of n bytes.
func splitPieces(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}
