package guard

import (
	"reflect"
	"testing"

	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// tauCall is one bundled tau-bench call: the request body as the agent sent it and
// GPT-4o's recorded answer as a chat.completion.
type tauCall struct {
	id   string
	body []byte
	req  *openai.ChatRequest
	ans  *openai.ChatCompletion
}

func tauCalls(t testing.TB) []tauCall {
	t.Helper()
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]tauCall, 0, len(calls))
	for i := range calls {
		c := &calls[i]
		body, err := c.RequestJSON()
		if err != nil {
			t.Fatal(err)
		}
		a, ok := c.Answer(dataset.ModelGPT4o)
		if !ok {
			t.Fatalf("%s: no GPT-4o answer", c.ID)
		}
		out = append(out, tauCall{id: c.ID, body: body, req: &c.Request, ans: &openai.ChatCompletion{
			Object: "chat.completion", Model: a.Model,
			Choices: []openai.Choice{{Message: a.Message, FinishReason: a.FinishReason}},
		}})
	}
	if len(out) < 2000 {
		t.Fatalf("only %d tau-bench calls", len(out))
	}
	return out
}

// TestTauBenchAnswersPass runs every guard on each of GPT-4o's recorded tau-bench
// airline answers to the request it answered: a real reference model's answers must
// not be escalated. The request is read from the body as the gateway reads it, and
// must agree with the decoded request.
func TestTauBenchAnswersPass(t *testing.T) {
	calls := tauCalls(t)
	schemas := compare.NewSchemas(compare.SchemasOptions{})
	g := mustNew(t, Options{Schemas: schemas})
	phrases := mustNew(t, Options{Checks: []Check{NotRefusal}, RefusalPhrases: DefaultRefusalPhrases()})
	pass, withCalls, toolCalls, refusals := 0, 0, 0, 0
	for _, c := range calls {
		if _, err := openai.ScanChatRequest(c.body); err != nil {
			t.Fatalf("%s: the gateway would reject the request: %v", c.id, err)
		}
		req, err := ReadRequest(c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		decoded, err := RequestOf(c.req)
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		if !reflect.DeepEqual(req, decoded) {
			t.Fatalf("%s: ReadRequest and RequestOf disagree:\n%s\n%s", c.id, fmtRequest(req), fmtRequest(decoded))
		}
		if len(req.Tools) != 14 {
			t.Fatalf("%s: %d tools", c.id, len(req.Tools))
		}
		r := g.Check(&req, c.ans)
		if r.Pass {
			pass++
		} else {
			t.Errorf("%s: %s", c.id, r)
		}
		if n := len(c.ans.Choices[0].Message.ToolCalls); n > 0 {
			withCalls++
			toolCalls += n
		}
		if phrases.Check(&req, c.ans).Fails(NotRefusal) {
			refusals++
		}
	}
	t.Logf("%d of %d GPT-4o answers pass every guard (%d with %d tool calls, schema-checked); %d schemas compiled",
		pass, len(calls), withCalls, toolCalls, schemas.Compiles())
	t.Logf("with DefaultRefusalPhrases on, %d answers would count as refusals", refusals)
	if refusals > 0 {
		t.Errorf("DefaultRefusalPhrases flags %d of GPT-4o's tau-bench answers", refusals)
	}
}

// TestTauBenchSpoiledAnswersFail spoils real tool-call answers in the ways a small
// model does and checks each is caught, under the check meant to catch it.
func TestTauBenchSpoiledAnswersFail(t *testing.T) {
	var c *tauCall
	calls := tauCalls(t)
	for i := range calls {
		if len(calls[i].ans.Choices[0].Message.ToolCalls) == 1 && len(calls[i].ans.Choices[0].Message.ToolCalls[0].Function.Arguments) > 20 {
			c = &calls[i]
			break
		}
	}
	if c == nil {
		t.Fatal("no tau-bench answer with one call and arguments")
	}
	req, err := ReadRequest(c.body)
	if err != nil {
		t.Fatal(err)
	}
	g := mustNew(t, Options{})
	spoil := func(f func(tc *openai.ToolCall, ch *openai.Choice)) *openai.ChatCompletion {
		ch := c.ans.Choices[0]
		ch.Message.ToolCalls = append([]openai.ToolCall(nil), ch.Message.ToolCalls...)
		f(&ch.Message.ToolCalls[0], &ch)
		return &openai.ChatCompletion{Choices: []openai.Choice{ch}}
	}
	tests := []struct {
		name string
		ans  *openai.ChatCompletion
		want Check
	}{
		{"truncated arguments", spoil(func(tc *openai.ToolCall, _ *openai.Choice) {
			tc.Function.Arguments = tc.Function.Arguments[:len(tc.Function.Arguments)/2]
		}), JSONValid},
		{"invented tool", spoil(func(tc *openai.ToolCall, _ *openai.Choice) { tc.Function.Name = "refund_everything" }), ToolKnown},
		{"no arguments", spoil(func(tc *openai.ToolCall, _ *openai.Choice) { tc.Function.Arguments = "{}" }), SchemaValid},
		{"cut off", spoil(func(_ *openai.ToolCall, ch *openai.Choice) { ch.FinishReason = "length" }), FinishReason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Check(&req, tt.ans)
			if !r.Fails(tt.want) {
				t.Errorf("%s not caught by %s: %s", c.id, tt.want, r)
			}
		})
	}
	if r := g.Check(&req, c.ans); !r.Pass {
		t.Errorf("spoiling changed the original: %s", r)
	}
}
