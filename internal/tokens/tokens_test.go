package tokens

import (
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

func TestText(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"hello", 1},
		{"hello world", 2},
	} {
		if got := c.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestPromptGrowsWithMessagesAndTools(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	base := &openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: openai.TextContent("hello world")}}}
	n1 := c.Prompt(base)
	if n1 != perReply+perMessage+2 {
		t.Fatalf("one message: got %d, want %d", n1, perReply+perMessage+2)
	}
	withTool := *base
	withTool.Tools = []openai.Tool{{Type: "function", Function: openai.FunctionDecl{Name: "get_weather", Parameters: []byte(`{"type":"object"}`)}}}
	if n2 := c.Prompt(&withTool); n2 <= n1 {
		t.Fatalf("tools not counted: %d <= %d", n2, n1)
	}
	comp := &openai.ChatCompletion{Choices: []openai.Choice{{Message: openai.Message{Role: "assistant",
		ToolCalls: []openai.ToolCall{{Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}}}}}
	if got := c.Completion(comp); got < perMessage+3 {
		t.Fatalf("tool call completion tokens = %d, too few", got)
	}
}
