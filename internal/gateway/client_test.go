package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	oa "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// These tests drive the gateway with the official Go client, unchanged, over real
// sockets, and check both what the client got and what was recorded.

func newClient(baseURL string, opts ...option.RequestOption) oa.Client {
	return oa.NewClient(append([]option.RequestOption{option.WithBaseURL(baseURL + "/v1/"),
		option.WithAPIKey("sk-client-test"), option.WithMaxRetries(0)}, opts...)...)
}

var weatherTool = oa.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: oa.String("Current weather in a city"),
	Parameters: shared.FunctionParameters{
		"type":       "object",
		"properties": map[string]any{"city": map[string]string{"type": "string"}, "unit": map[string]string{"type": "string"}},
		"required":   []string{"city"},
	},
})

func recordedCompletion(t *testing.T, c store.Call) openai.ChatCompletion {
	t.Helper()
	var cc openai.ChatCompletion
	if err := json.Unmarshal(c.Response, &cc); err != nil {
		t.Fatalf("recorded response is not a chat.completion: %v\n%s", err, c.Response)
	}
	return cc
}

func checkUsageRecorded(t *testing.T, c store.Call) {
	t.Helper()
	if c.PromptTokens != fakeUsagePrompt || c.CompletionTokens != fakeUsageCompletion || c.CachedTokens != fakeUsageCached || c.TokensEstimated {
		t.Errorf("recorded tokens = %d/%d/%d estimated=%v, want %d/%d/%d from the upstream's usage",
			c.PromptTokens, c.CompletionTokens, c.CachedTokens, c.TokensEstimated, fakeUsagePrompt, fakeUsageCompletion, fakeUsageCached)
	}
	// 50 uncached prompt tokens at 2.5, 7 cached at 1.25, 13 completion at 10 ($/Mtok).
	want := (50*2.5 + 7*1.25 + 13*10) / 1e6
	if diff := c.CostUSD - want; diff > 1e-12 || diff < -1e-12 {
		t.Errorf("cost = %g, want %g", c.CostUSD, want)
	}
	if c.ServedModel != "big" || c.Backend != "up" || c.Status != 200 || c.Route != store.RouteReference {
		t.Errorf("recorded served=%q backend=%q status=%d route=%q", c.ServedModel, c.Backend, c.Status, c.Route)
	}
}

func TestOpenAIClientPlainChat(t *testing.T) {
	up := newFakeUpstream(t)
	rec := &memRecorder{}
	gw, _ := startGateway(t, gwOptions{cfg: testConfig(up.URL), recorder: rec})
	client := newClient(gw.URL)

	var hdr http.Header
	resp, err := client.Chat.Completions.New(context.Background(), oa.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []oa.ChatCompletionMessageParamUnion{oa.SystemMessage("You are terse."), oa.UserMessage("hi")},
	}, option.WithHeader("X-Downshift-Workload", "greet"), captureHeaders(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != "Hello there, how can I help you today?" {
		t.Fatalf("content = %q", got)
	}
	if resp.Usage.PromptTokens != fakeUsagePrompt {
		t.Errorf("client usage = %d", resp.Usage.PromptTokens)
	}
	if hdr.Get(HeaderModel) != "big" || hdr.Get(HeaderRoute) != "reference" || hdr.Get(HeaderWorkload) != "greet" {
		t.Errorf("downshift headers = %v", hdr)
	}
	var sent openai.ChatRequest
	if err := json.Unmarshal(up.received()[0], &sent); err != nil || sent.Model != "big-upstream" {
		t.Errorf("upstream got model %q (%v), want the upstream name", sent.Model, err)
	}
	c := waitCalls(t, rec, 1)[0]
	checkUsageRecorded(t, c)
	if c.RequestedModel != "gpt-4o" || c.Workload != "greet" || c.Fingerprint == "" || c.Stream {
		t.Errorf("recorded requested=%q workload=%q fingerprint=%q stream=%v", c.RequestedModel, c.Workload, c.Fingerprint, c.Stream)
	}
	if got := recordedCompletion(t, c).Choices[0].Message.Content.String(); got != "Hello there, how can I help you today?" {
		t.Errorf("recorded content = %q", got)
	}
}

// captureHeaders copies the response headers the client saw into *h.
func captureHeaders(h *http.Header) option.RequestOption {
	return option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(r)
		if resp != nil {
			*h = resp.Header.Clone()
		}
		return resp, err
	})
}

func TestOpenAIClientStreaming(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		t.Run(map[bool]string{false: "without usage", true: "with usage"}[includeUsage], func(t *testing.T) {
			up := newFakeUpstream(t)
			rec := &memRecorder{}
			gw, _ := startGateway(t, gwOptions{cfg: testConfig(up.URL), recorder: rec})
			client := newClient(gw.URL)
			params := oa.ChatCompletionNewParams{Model: "big", Messages: []oa.ChatCompletionMessageParamUnion{oa.UserMessage("hi")}}
			if includeUsage {
				params.StreamOptions = oa.ChatCompletionStreamOptionsParam{IncludeUsage: oa.Bool(true)}
			}
			stream := client.Chat.Completions.NewStreaming(context.Background(), params)
			acc := oa.ChatCompletionAccumulator{}
			chunks, usageChunks := 0, 0
			for stream.Next() {
				ch := stream.Current()
				acc.AddChunk(ch)
				chunks++
				if len(ch.Choices) == 0 && ch.Usage.TotalTokens > 0 {
					usageChunks++
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if got := acc.Choices[0].Message.Content; got != "Hello there, how can I help you today?" {
				t.Fatalf("streamed content = %q", got)
			}
			wantUsage := map[bool]int{false: 0, true: 1}[includeUsage]
			if usageChunks != wantUsage {
				t.Errorf("client saw %d usage chunks, want %d", usageChunks, wantUsage)
			}
			var sent openai.ChatRequest
			_ = json.Unmarshal(up.received()[0], &sent)
			if sent.StreamOptions == nil || !sent.StreamOptions.IncludeUsage {
				t.Error("gateway did not ask the upstream for usage")
			}
			c := waitCalls(t, rec, 1)[0]
			checkUsageRecorded(t, c)
			if !c.Stream || c.TTFT <= 0 || c.TTFT > c.Latency {
				t.Errorf("stream=%v ttft=%v latency=%v", c.Stream, c.TTFT, c.Latency)
			}
			cc := recordedCompletion(t, c)
			if cc.Object != "chat.completion" || cc.Choices[0].Message.Content.String() != "Hello there, how can I help you today?" ||
				cc.Choices[0].FinishReason != "stop" {
				t.Errorf("reassembled = %+v", cc)
			}
		})
	}
}

func TestOpenAIClientParallelToolCalls(t *testing.T) {
	for _, streaming := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "stream"}[streaming], func(t *testing.T) {
			up := newFakeUpstream(t)
			rec := &memRecorder{}
			gw, _ := startGateway(t, gwOptions{cfg: testConfig(up.URL), recorder: rec})
			client := newClient(gw.URL)
			params := oa.ChatCompletionNewParams{
				Model:             "gpt-4o",
				Messages:          []oa.ChatCompletionMessageParamUnion{oa.UserMessage("weather in Paris and Tokyo?")},
				Tools:             []oa.ChatCompletionToolUnionParam{weatherTool},
				ParallelToolCalls: oa.Bool(true),
			}
			var calls []oa.ChatCompletionMessageToolCallUnion
			var finish string
			if streaming {
				stream := client.Chat.Completions.NewStreaming(context.Background(), params)
				acc := oa.ChatCompletionAccumulator{}
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				calls, finish = acc.Choices[0].Message.ToolCalls, acc.Choices[0].FinishReason
			} else {
				resp, err := client.Chat.Completions.New(context.Background(), params)
				if err != nil {
					t.Fatal(err)
				}
				calls, finish = resp.Choices[0].Message.ToolCalls, resp.Choices[0].FinishReason
			}
			want := []struct{ id, args string }{{"call_1", `{"city":"Paris","unit":"celsius"}`}, {"call_2", `{"city":"Tokyo","unit":"celsius"}`}}
			if len(calls) != 2 || finish != "tool_calls" {
				t.Fatalf("client got %d tool calls, finish %q", len(calls), finish)
			}
			for i, w := range want {
				if calls[i].ID != w.id || calls[i].Function.Name != "get_weather" || calls[i].Function.Arguments != w.args {
					t.Errorf("client tool call %d = %+v", i, calls[i])
				}
			}
			var sent map[string]json.RawMessage
			_ = json.Unmarshal(up.received()[0], &sent)
			if string(sent["parallel_tool_calls"]) != "true" || len(sent["tools"]) == 0 {
				t.Errorf("tools or parallel_tool_calls not passed through: %s", up.received()[0])
			}
			c := waitCalls(t, rec, 1)[0]
			checkUsageRecorded(t, c)
			m := recordedCompletion(t, c).Choices[0]
			if m.FinishReason != "tool_calls" || len(m.Message.ToolCalls) != 2 {
				t.Fatalf("recorded choice = %+v", m)
			}
			for i, w := range want {
				tc := m.Message.ToolCalls[i]
				if tc.ID != w.id || tc.Function.Name != "get_weather" || tc.Function.Arguments != w.args {
					t.Errorf("recorded tool call %d = %+v", i, tc)
				}
			}
		})
	}
}

func TestOpenAIClientJSONSchema(t *testing.T) {
	up := newFakeUpstream(t)
	rec := &memRecorder{}
	gw, _ := startGateway(t, gwOptions{cfg: testConfig(up.URL), recorder: rec})
	client := newClient(gw.URL)
	schema := map[string]any{"type": "object", "properties": map[string]any{
		"name": map[string]string{"type": "string"}, "age": map[string]string{"type": "integer"}},
		"required": []string{"name", "age"}, "additionalProperties": false}
	resp, err := client.Chat.Completions.New(context.Background(), oa.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []oa.ChatCompletionMessageParamUnion{oa.UserMessage("extract the person as json: Ada, 36")},
		ResponseFormat: oa.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: schema, Strict: oa.Bool(true)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var person struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	if err := json.Unmarshal([]byte(resp.Choices[0].Message.Content), &person); err != nil || person.Name != "Ada" || person.Age != 36 {
		t.Fatalf("answer %q: %+v %v", resp.Choices[0].Message.Content, person, err)
	}
	var sent openai.ChatRequest
	_ = json.Unmarshal(up.received()[0], &sent)
	if sent.ResponseFormat == nil || sent.ResponseFormat.Type != "json_schema" || len(sent.ResponseFormat.JSONSchema) == 0 {
		t.Errorf("response_format not passed through: %s", up.received()[0])
	}
	c := waitCalls(t, rec, 1)[0]
	checkUsageRecorded(t, c)
	if got := recordedCompletion(t, c).Choices[0].Message.Content.String(); got != `{"name":"Ada","age":36}` {
		t.Errorf("recorded content = %q", got)
	}
}
