package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bundled loads the bundled calls once for the whole test binary.
var bundled = sync.OnceValues(func() ([]dataset.Call, error) {
	return dataset.BundledCalls(dataset.NameTauBench, dataset.NameGSM8K)
})

func bundledCalls(t testing.TB) []dataset.Call {
	t.Helper()
	calls, err := bundled()
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// noSleep makes latency free in tests.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// start runs a Server behind a real socket.
func start(t testing.TB, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Sleep == nil {
		opts.Sleep = noSleep
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func post(t testing.TB, ts *httptest.Server, path string, body []byte) *http.Response {
	t.Helper()
	resp, err := ts.Client().Post(ts.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeCompletion(t testing.TB, resp *http.Response) (*openai.ChatCompletion, []byte) {
	t.Helper()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(raw, &cc); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if cc.Object != "chat.completion" || len(cc.Choices) != 1 || cc.Usage == nil || cc.Usage.PromptTokens == 0 {
		t.Fatalf("completion shape: %s", raw)
	}
	return &cc, raw
}

// streamResult is a stream read to its end.
type streamResult struct {
	chunks []*openai.ChatCompletionChunk
	done   bool  // [DONE] arrived
	err    error // how reading ended, when not with [DONE]
	acc    *openai.Accumulator
}

func readStream(t testing.TB, resp *http.Response) streamResult {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	res := streamResult{acc: openai.NewAccumulator()}
	rd := openai.NewSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			res.err = err
			return res
		}
		if openai.IsDone(ev) {
			res.done = true
			if _, err := rd.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("event after [DONE]: %v", err)
			}
			return res
		}
		c, err := res.acc.AddData(ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		res.chunks = append(res.chunks, c)
	}
}

// sampleTau returns every 40th tau-bench call plus every call whose answer has both
// text and tool calls.
func sampleTau(calls []dataset.Call) []*dataset.Call {
	var out []*dataset.Call
	for i := range calls {
		c := &calls[i]
		if c.Dataset != "taubench-airline" {
			continue
		}
		m := c.Answers[0].Message
		if i%40 == 0 || (len(m.ToolCalls) > 0 && m.Content.String() != "") {
			out = append(out, c)
		}
	}
	return out
}

func TestReplayReturnsRecordedTauAnswers(t *testing.T) {
	calls := bundledCalls(t)
	_, ts := start(t, Options{Calls: calls})
	sample := sampleTau(calls)
	if len(sample) < 100 {
		t.Fatalf("sample of %d calls is too small", len(sample))
	}
	for _, c := range sample {
		want := c.Answers[0]
		body, err := c.RequestJSON()
		if err != nil {
			t.Fatal(err)
		}
		resp := post(t, ts, "/v1/chat/completions", body)
		cc, raw := decodeCompletion(t, resp)
		got := cc.Choices[0]
		if !reflect.DeepEqual(got.Message, want.Message) || got.FinishReason != want.FinishReason {
			t.Fatalf("%s: got %+v %s\nwant %+v %s", c.ID, got.Message, got.FinishReason, want.Message, want.FinishReason)
		}
		if resp.Header.Get(HeaderReplayed) != "true" || resp.Header.Get(HeaderSimulated) != "" ||
			resp.Header.Get(HeaderReplayedModel) != dataset.ModelGPT4o || resp.Header.Get(HeaderReplayedMatch) != MatchExact {
			t.Fatalf("%s: headers %v", c.ID, resp.Header)
		}
		if bytes.Contains(raw, []byte(`"simulated"`)) || cc.Model != "gpt-4o" {
			t.Fatalf("%s: replayed answer marked simulated or wrong model: %s", c.ID, raw)
		}
	}
}

func TestReplayStreamReassemblesToRecordedAnswer(t *testing.T) {
	calls := bundledCalls(t)
	_, ts := start(t, Options{Calls: calls})
	for _, c := range sampleTau(calls)[:30] {
		var req map[string]any
		body, _ := c.RequestJSON()
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatal(err)
		}
		req["stream"] = true
		res := readStream(t, post(t, ts, "/v1/chat/completions", mustJSON(t, req)))
		if !res.done {
			t.Fatalf("%s: stream ended with %v, not [DONE]", c.ID, res.err)
		}
		got := res.acc.Completion().Choices[0]
		want := c.Answers[0]
		if !reflect.DeepEqual(got.Message, want.Message) || got.FinishReason != want.FinishReason {
			t.Fatalf("%s: stream reassembles to %+v, want %+v", c.ID, got.Message, want.Message)
		}
	}
}

func TestReplayGSM8KAnswerFollowsModel(t *testing.T) {
	calls := bundledCalls(t)
	_, ts := start(t, Options{Calls: calls})
	rows, err := dataset.BundledGSM8K()
	if err != nil {
		t.Fatal(err)
	}
	row := rows[7]
	for _, tc := range []struct {
		model, recorded, answer string
		simulated               bool
	}{
		{dataset.ModelGPT4, dataset.ModelGPT4, row.GPT4Answer, false},
		{"gpt-4", dataset.ModelGPT4, row.GPT4Answer, false},
		{dataset.ModelMixtral, dataset.ModelMixtral, row.MixtralAnswer, false},
		{"mixtral-8x7b", dataset.ModelMixtral, row.MixtralAnswer, false},
		// A model with no answer of its own gets the reference answer, which is not
		// its own: simulated.
		{"small-model-1b", dataset.ModelGPT4, row.GPT4Answer, true},
	} {
		t.Run(tc.model, func(t *testing.T) {
			body := mustJSON(t, map[string]any{"model": tc.model, "messages": []map[string]string{{"role": "user", "content": row.Prompt}}})
			resp := post(t, ts, "/v1/chat/completions", body)
			cc, _ := decodeCompletion(t, resp)
			if got := cc.Choices[0].Message.Content.String(); got != tc.answer {
				t.Errorf("answer %q, want %q", got, tc.answer)
			}
			if got := resp.Header.Get(HeaderReplayedModel); got != tc.recorded {
				t.Errorf("replayed model %q, want %q", got, tc.recorded)
			}
			if cc.Model != tc.model {
				t.Errorf("model field %q, want the requested %q", cc.Model, tc.model)
			}
			replayed := resp.Header.Get(HeaderReplayed) == "true"
			if sim := resp.Header.Get(HeaderSimulated) == "true"; sim != tc.simulated || cc.Simulated != tc.simulated ||
				replayed == tc.simulated || resp.Header.Get(HeaderReplayedMatch) != MatchExact {
				t.Errorf("simulated: header %v, body %v, replayed %v, match %q; want simulated %v",
					sim, cc.Simulated, replayed, resp.Header.Get(HeaderReplayedMatch), tc.simulated)
			}
		})
	}
}

func TestConversationKey(t *testing.T) {
	msg := func(role, text string, calls ...openai.ToolCall) openai.Message {
		return openai.Message{Role: role, Content: openai.TextContent(text), ToolCalls: calls}
	}
	call := func(id, name, args string) openai.ToolCall {
		return openai.ToolCall{ID: id, Type: "function", Function: openai.FunctionCall{Name: name, Arguments: args}}
	}
	base := []openai.Message{msg("system", "policy"), msg("user", "hi"), msg("assistant", "", call("call_1", "f", `{"a":1}`))}
	for _, tc := range []struct {
		name string
		msgs []openai.Message
		same bool
	}{
		{"whitespace around content", []openai.Message{msg("system", " policy\n"), msg("user", "hi  "), msg("assistant", "", call("call_1", "f", `{"a":1}`))}, true},
		{"other tool-call id", []openai.Message{msg("system", "policy"), msg("user", "hi"), msg("assistant", "", call("call_9", "f", `{"a":1}`))}, true},
		{"pretty arguments", []openai.Message{msg("system", "policy"), msg("user", "hi"), msg("assistant", "", call("call_1", "f", "{\n  \"a\": 1\n}"))}, true},
		{"parts instead of string", []openai.Message{msg("system", "policy"),
			{Role: "user", Content: openai.Content{IsParts: true, Parts: []openai.ContentPart{{Type: "text", Text: "hi"}}}},
			msg("assistant", "", call("call_1", "f", `{"a":1}`))}, true},
		{"other text", []openai.Message{msg("system", "policy"), msg("user", "hi!"), msg("assistant", "", call("call_1", "f", `{"a":1}`))}, false},
		{"other role", []openai.Message{msg("system", "policy"), msg("developer", "hi"), msg("assistant", "", call("call_1", "f", `{"a":1}`))}, false},
		{"other arguments", []openai.Message{msg("system", "policy"), msg("user", "hi"), msg("assistant", "", call("call_1", "f", `{"a":2}`))}, false},
		{"other function", []openai.Message{msg("system", "policy"), msg("user", "hi"), msg("assistant", "", call("call_1", "g", `{"a":1}`))}, false},
		{"text moved between messages", []openai.Message{msg("system", "policyhi"), msg("user", ""), msg("assistant", "", call("call_1", "f", `{"a":1}`))}, false},
		{"one message fewer", base[:2], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := conversationKey(tc.msgs) == conversationKey(base); got != tc.same {
				t.Errorf("same key = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestUnknownConversation(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"a question nobody recorded"}]}`)
	t.Run("error", func(t *testing.T) {
		_, ts := start(t, Options{Calls: bundledCalls(t)})
		resp := post(t, ts, "/v1/chat/completions", body)
		raw, _ := io.ReadAll(resp.Body)
		var e openai.ErrorResponse
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound || e.Error.Code == nil || *e.Error.Code != CodeNoRecordedAnswer ||
			!strings.Contains(e.Error.Message, "no recorded answer for this conversation") {
			t.Fatalf("status %d body %s", resp.StatusCode, raw)
		}
	})
	t.Run("synthetic", func(t *testing.T) {
		_, ts := start(t, Options{Calls: bundledCalls(t), Unknown: UnknownSynthetic})
		resp := post(t, ts, "/v1/chat/completions", body)
		cc, _ := decodeCompletion(t, resp)
		if !cc.Simulated || resp.Header.Get(HeaderSimulated) != "true" || resp.Header.Get(HeaderReplayed) != "" ||
			resp.Header.Get(HeaderReplayedModel) != "" || resp.Header.Get(HeaderReplayedMatch) != "" {
			t.Fatalf("invented answer not marked: %+v %v", cc, resp.Header)
		}
		if !strings.HasPrefix(cc.Choices[0].Message.Content.String(), "[simulated answer]") {
			t.Errorf("text %q", cc.Choices[0].Message.Content.String())
		}
	})
}

func TestBadRequests(t *testing.T) {
	_, ts := start(t, Options{Mode: ModeSynthetic})
	for _, tc := range []struct {
		name, path, body string
		status           int
		param            string
	}{
		{"not json", "/v1/chat/completions", `{`, 400, ""},
		{"no messages", "/v1/chat/completions", `{"model":"m"}`, 400, "messages"},
		{"bad tool_choice", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}`, 400, "tool_choice"},
		{"unknown route", "/v1/completions", `{}`, 404, ""},
		{"embedding without input", "/v1/embeddings", `{"model":"e"}`, 400, "input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, ts, tc.path, []byte(tc.body))
			raw, _ := io.ReadAll(resp.Body)
			var e openai.ErrorResponse
			if err := json.Unmarshal(raw, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("not an OpenAI error body: %s", raw)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
				t.Errorf("param %v, want %q: %s", e.Error.Param, tc.param, raw)
			}
		})
	}
}
