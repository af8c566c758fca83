package openai

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files from the current output")

// accumulateSSE runs a raw SSE body through the reader and an accumulator, as the
// gateway does, and returns the completion and whether [DONE] was seen.
func accumulateSSE(t testing.TB, body []byte) (*ChatCompletion, bool) {
	t.Helper()
	sr := NewSSEReader(bytes.NewReader(body))
	acc := NewAccumulator()
	done := false
	for {
		ev, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		if IsDone(ev) {
			done = true
			continue
		}
		if _, err := acc.AddData(ev.Data); err != nil {
			t.Fatalf("AddData(%s): %v", ev.Data, err)
		}
	}
	return acc.Completion(), done
}

func TestAccumulatorGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/stream/*.sse")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found %d streams, want at least 8", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sse")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, done := accumulateSSE(t, body)
			if !done {
				t.Errorf("stream has no [DONE]")
			}
			got, err := json.MarshalIndent(c, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".sse") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("completion differs from %s:\ngot:\n%s", golden, got)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestAccumulatorMergesInterleavedToolCalls(t *testing.T) {
	acc := NewAccumulator()
	tc := func(idx int, id, name, args string) *ChatCompletionChunk {
		d := ToolCallDelta{Index: idx, ID: id, Function: FunctionCallDelta{Name: name, Arguments: args}}
		if id != "" {
			d.Type = "function"
		}
		return &ChatCompletionChunk{ID: "c1", Choices: []ChunkChoice{{Delta: Delta{ToolCalls: []ToolCallDelta{d}}}}}
	}
	acc.Add(&ChatCompletionChunk{ID: "c1", Model: "m", Created: 5, Choices: []ChunkChoice{{Delta: Delta{Role: "assistant"}}}})
	acc.Add(tc(1, "call_b", "second", `{"b"`))
	acc.Add(tc(0, "call_a", "first", `{"a"`))
	acc.Add(tc(1, "", "", `:2}`))
	acc.Add(tc(0, "call_x", "renamed", `:1}`)) // later id/name do not overwrite
	acc.Add(&ChatCompletionChunk{Choices: []ChunkChoice{{FinishReason: ptr("tool_calls")}}})
	acc.Add(&ChatCompletionChunk{Choices: []ChunkChoice{{FinishReason: nil}}}) // null does not reset
	c := acc.Completion()
	if len(c.Choices) != 1 {
		t.Fatalf("%d choices", len(c.Choices))
	}
	m := c.Choices[0].Message
	want := []ToolCall{
		{ID: "call_a", Type: "function", Function: FunctionCall{Name: "first", Arguments: `{"a":1}`}},
		{ID: "call_b", Type: "function", Function: FunctionCall{Name: "second", Arguments: `{"b":2}`}},
	}
	if len(m.ToolCalls) != 2 || m.ToolCalls[0] != want[0] || m.ToolCalls[1] != want[1] {
		t.Errorf("tool calls = %+v, want %+v", m.ToolCalls, want)
	}
	if !m.Content.IsNull {
		t.Errorf("content = %+v, want null", m.Content)
	}
	if c.Choices[0].FinishReason != "tool_calls" || c.Object != "chat.completion" || c.ID != "c1" || c.Created != 5 || c.Model != "m" {
		t.Errorf("completion %+v", c)
	}
}

func TestAccumulatorContent(t *testing.T) {
	tests := []struct {
		name   string
		deltas []Delta
		want   string // JSON of the message
	}{
		{"text", []Delta{{Role: "assistant", Content: ptr("")}, {Content: ptr("a")}, {Content: ptr("b")}},
			`{"role":"assistant","content":"ab"}`},
		{"empty text stays a string", []Delta{{Role: "assistant", Content: ptr("")}},
			`{"role":"assistant","content":""}`},
		{"no content at all is null", []Delta{{Role: "assistant"}},
			`{"role":"assistant","content":null}`},
		{"role defaults to assistant", []Delta{{Content: ptr("x")}},
			`{"role":"assistant","content":"x"}`},
		{"refusal with empty content is null content", []Delta{{Content: ptr(""), Refusal: ptr("I can")}, {Refusal: ptr("'t.")}},
			`{"role":"assistant","content":null,"refusal":"I can't."}`},
		{"text and tool call keep text", []Delta{{Content: ptr("Checking.")}, {ToolCalls: []ToolCallDelta{{ID: "c", Function: FunctionCallDelta{Name: "f", Arguments: "{}"}}}}},
			`{"role":"assistant","content":"Checking.","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc := NewAccumulator()
			for _, d := range tt.deltas {
				acc.Add(&ChatCompletionChunk{Choices: []ChunkChoice{{Delta: d}}})
			}
			got, err := json.Marshal(acc.Completion().Choices[0].Message)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAccumulatorSortsChoicesAndKeepsHeader(t *testing.T) {
	acc := NewAccumulator()
	acc.Add(&ChatCompletionChunk{Object: "", Choices: nil}) // an opening chunk with nothing in it
	acc.Add(&ChatCompletionChunk{ID: "id", Created: 7, Model: "m", SystemFingerprint: "fp", ServiceTier: "default",
		Choices: []ChunkChoice{{Index: 2, Delta: Delta{Content: ptr("c")}}}})
	acc.Add(&ChatCompletionChunk{ID: "other", Model: "other", Simulated: true,
		Choices: []ChunkChoice{{Index: 0, Delta: Delta{Content: ptr("a")}, FinishReason: ptr("stop")}}})
	acc.Add(&ChatCompletionChunk{Usage: &Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}})
	acc.Add(nil)
	c := acc.Completion()
	if c.ID != "id" || c.Created != 7 || c.Model != "m" || c.SystemFingerprint != "fp" || c.ServiceTier != "default" || !c.Simulated {
		t.Errorf("header %+v", c)
	}
	if len(c.Choices) != 2 || c.Choices[0].Index != 0 || c.Choices[1].Index != 2 || c.Choices[0].Message.Content.Text != "a" {
		t.Errorf("choices %+v", c.Choices)
	}
	if c.Usage == nil || c.Usage.TotalTokens != 3 {
		t.Errorf("usage %+v", c.Usage)
	}
	// Completion is a snapshot: adding more does not change a returned completion.
	acc.Add(&ChatCompletionChunk{Choices: []ChunkChoice{{Index: 0, Delta: Delta{Content: ptr("b")}}}, Usage: &Usage{TotalTokens: 9}})
	if c.Choices[0].Message.Content.Text != "a" || c.Usage.TotalTokens != 3 {
		t.Errorf("earlier completion changed")
	}
	if got := acc.Completion().Choices[0].Message.Content.Text; got != "ab" {
		t.Errorf("content %q", got)
	}
}

func TestAccumulatorEmpty(t *testing.T) {
	got, err := json.Marshal(NewAccumulator().Completion())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"","object":"chat.completion","created":0,"model":"","choices":[]}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestAddDataReturnsTheChunk(t *testing.T) {
	acc := NewAccumulator()
	c, err := acc.AddData([]byte(`{"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`))
	if err != nil || c.ID != "x" || *c.Choices[0].Delta.Content != "hi" {
		t.Fatalf("got %+v, %v", c, err)
	}
	if _, err := acc.AddData([]byte(`[DONE]`)); err == nil {
		t.Errorf("[DONE] parsed as a chunk")
	}
	c, err = acc.AddData([]byte(`{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}`))
	if err != nil || c.Error == nil || c.Error.Message != "overloaded" {
		t.Errorf("error chunk: %+v %v", c, err)
	}
	if got := acc.Completion().Choices[0].Message.Content.Text; got != "hi" {
		t.Errorf("content %q", got)
	}
}

func TestIsUsageOnly(t *testing.T) {
	tests := []struct {
		name string
		c    *ChatCompletionChunk
		want bool
	}{
		{"nil", nil, false},
		{"usage, no choices", &ChatCompletionChunk{Usage: &Usage{TotalTokens: 1}}, true},
		{"usage, empty choices", &ChatCompletionChunk{Choices: []ChunkChoice{}, Usage: &Usage{}}, true},
		{"usage with a choice", &ChatCompletionChunk{Choices: []ChunkChoice{{}}, Usage: &Usage{}}, false},
		{"no usage, no choices", &ChatCompletionChunk{}, false},
	}
	for _, tt := range tests {
		if got := IsUsageOnly(tt.c); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
