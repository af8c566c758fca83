package discover

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

func TestShapeKey(t *testing.T) {
	calls := func(names ...string) Action {
		return Action{Label: OutputToolCalls, Output: OutputToolCalls, Tools: names}
	}
	text := Action{Label: OutputText, Output: OutputText}
	for _, tc := range []struct {
		name        string
		t           template
		a           Action
		requestOnly bool
		want        string
	}{
		{"no tools, text", template{}, text, false, "tools=none,answer=text"},
		{"json format", template{format: "json_object"}, Action{Label: OutputJSON, Output: OutputJSON}, false, "tools=none,format=json_object,answer=json"},
		{"one tool, declined", template{tools: []string{"f"}}, text, false, "tools=one,answer=text"},
		{"one tool, one call", template{tools: []string{"f"}}, calls("f"), false, "tools=one,calls=one"},
		{"one tool, called twice", template{tools: []string{"f"}}, calls("f", "f"), false, "tools=one,calls=several"},
		{"several tools, one call", template{tools: []string{"f", "g", "h"}}, calls("g"), false, "tools=several,calls=one"},
		{"several tools, several calls", template{tools: []string{"f", "g"}}, calls("f", "g"), false, "tools=several,calls=several"},
		{"no answer", template{tools: []string{"f"}}, Action{}, false, "tools=one"},
		{"request only", template{tools: []string{"f", "g"}}, calls("f", "g"), true, "tools=several"},
		{"bad request", template{bad: true}, text, false, "bad-request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := shapeKey(tc.t, tc.a, tc.requestOnly); got != tc.want {
				t.Errorf("shapeKey = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDiscoverSplitsPooledCallsByTaskShape gives every call a template of its own (a
// tool no other call offers) and words drawn from one vocabulary, so that only the
// shape of the task tells the three kinds apart: one tool offered and called once,
// several offered and one called, one offered and called several times. Discovery
// must find the three exactly; from the request alone, it must keep calls offered one
// tool apart from calls offered several.
func TestDiscoverSplitsPooledCallsByTaskShape(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	var calls []Call
	var shapes, offered []string
	for i := range 90 {
		shape := []string{"single", "choose", "repeat"}[i%3]
		tools := []string{fmt.Sprintf("tool_%d", i)}
		if shape == "choose" {
			tools = append(tools, fmt.Sprintf("other_%d", i), fmt.Sprintf("third_%d", i))
		}
		req := openai.ChatRequest{Model: "gpt-4o", Messages: []openai.Message{{Role: "user",
			Content: openai.TextContent(fmt.Sprintf("Please %s the %s for %s and the %s.", pick(r, fixProblems), pick(r, fixSubjects), pick(r, fixNames), pick(r, fixSubjects)))}}}
		for _, name := range tools {
			req.Tools = append(req.Tools, openai.Tool{Type: "function", Function: openai.FunctionDecl{
				Name: name, Parameters: json.RawMessage(`{"type":"object","properties":{}}`)}})
		}
		answer := openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}}
		n := 1
		if shape == "repeat" {
			n = 2 + r.IntN(3)
		}
		for j := range n {
			answer.ToolCalls = append(answer.ToolCalls, openai.ToolCall{ID: fmt.Sprint("call_", j), Type: "function",
				Function: openai.FunctionCall{Name: tools[0], Arguments: "{}"}})
		}
		body, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		gt, err := json.Marshal(answer)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, Call{ID: fmt.Sprint("c", i), Request: body, GroundTruth: gt})
		shapes = append(shapes, shape)
		offered = append(offered, map[bool]string{true: "one", false: "several"}[len(tools) == 1])
	}
	for _, requestOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("request only %v", requestOnly), func(t *testing.T) {
			res, err := Discover(context.Background(), calls, Options{Seed: 1, RequestOnly: requestOnly})
			if err != nil {
				t.Fatal(err)
			}
			want := shapes
			if requestOnly {
				want = offered
			}
			ag, err := Compare(want, clustersOf(res, calls))
			if err != nil {
				t.Fatal(err)
			}
			if ag.ARI != 1 {
				for _, w := range res.Workloads {
					t.Logf("%s %d %s", w.ID, len(w.CallIDs), w.Label)
				}
				t.Errorf("%s; want the shapes exactly", fmtAgreement(ag))
			}
		})
	}
}
