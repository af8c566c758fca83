package sim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

const weatherTools = `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
 "properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer"},
 "detail":{"type":"boolean"}},"required":["city","unit","days"]}}},
 {"type":"function","function":{"name":"book","parameters":{"type":"object","properties":{
 "when":{"type":"string","format":"date"},"people":{"type":"array","items":{"type":"object",
 "properties":{"name":{"type":"string"},"age":{"type":["integer","null"]}},"required":["name","age"]}}},"required":["when","people"]}}}]`

func TestSyntheticAnswers(t *testing.T) {
	_, ts := start(t, Options{Mode: ModeSynthetic, Seed: 1})
	req := func(extra string) []byte {
		return []byte(`{"model":"tiny","messages":[{"role":"user","content":"plan my trip"}]` + extra + `}`)
	}
	for _, tc := range []struct {
		name  string
		body  []byte
		check func(t *testing.T, m openai.Message, finish string)
	}{
		{"text", req(""), func(t *testing.T, m openai.Message, finish string) {
			if finish != "stop" || !strings.HasPrefix(m.Content.String(), `[simulated answer] About "plan my trip": `) {
				t.Errorf("%s %q", finish, m.Content.String())
			}
		}},
		{"required tool call", req(`,"tool_choice":"required","tools":` + weatherTools), func(t *testing.T, m openai.Message, finish string) {
			if finish != "tool_calls" || len(m.ToolCalls) == 0 || !m.Content.IsNull {
				t.Fatalf("%s %+v", finish, m)
			}
			for _, tc := range m.ToolCalls {
				if !strings.HasPrefix(tc.ID, "call_sim_") || tc.Type != "function" {
					t.Errorf("call %+v", tc)
				}
				var args map[string]any
				if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil {
					t.Fatalf("arguments %q: %v", tc.Function.Arguments, err)
				}
				checkArgs(t, tc.Function.Name, args)
			}
		}},
		{"named tool", req(`,"tool_choice":{"type":"function","function":{"name":"book"}},"tools":` + weatherTools), func(t *testing.T, m openai.Message, finish string) {
			if len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Name != "book" {
				t.Fatalf("%+v", m.ToolCalls)
			}
			var args map[string]any
			if err := json.Unmarshal([]byte(m.ToolCalls[0].Function.Arguments), &args); err != nil {
				t.Fatal(err)
			}
			checkArgs(t, "book", args)
		}},
		{"tool_choice none", req(`,"tool_choice":"none","tools":` + weatherTools), func(t *testing.T, m openai.Message, finish string) {
			if len(m.ToolCalls) != 0 || finish != "stop" {
				t.Errorf("called tools under tool_choice none: %+v", m)
			}
		}},
		{"json_object", req(`,"response_format":{"type":"json_object"}`), func(t *testing.T, m openai.Message, finish string) {
			var v map[string]string
			if err := json.Unmarshal([]byte(m.Content.String()), &v); err != nil || v["answer"] == "" {
				t.Errorf("content %q is not a JSON object: %v", m.Content.String(), err)
			}
		}},
		{"json_schema", req(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object",
			"properties":{"label":{"type":"string","enum":["spam","ham"]},"score":{"type":"number"},"tags":{"type":"array","items":{"type":"string"}}}}}}`),
			func(t *testing.T, m openai.Message, finish string) {
				var v struct {
					Label *string  `json:"label"`
					Score *float64 `json:"score"`
					Tags  []string `json:"tags"`
				}
				if err := json.Unmarshal([]byte(m.Content.String()), &v); err != nil {
					t.Fatalf("content %q: %v", m.Content.String(), err)
				}
				if v.Label == nil || (*v.Label != "spam" && *v.Label != "ham") || v.Score == nil || len(v.Tags) != 1 {
					t.Errorf("content %q does not fit the schema", m.Content.String())
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, ts, "/v1/chat/completions", tc.body)
			cc, raw := decodeCompletion(t, resp)
			if !cc.Simulated || resp.Header.Get(HeaderSimulated) != "true" || !strings.Contains(string(raw), `"simulated":true`) {
				t.Errorf("not marked simulated: %s", raw)
			}
			tc.check(t, cc.Choices[0].Message, cc.Choices[0].FinishReason)

			again, _ := decodeCompletion(t, post(t, ts, "/v1/chat/completions", tc.body))
			a, _ := json.Marshal(cc.Choices[0].Message)
			b, _ := json.Marshal(again.Choices[0].Message)
			if string(a) != string(b) {
				t.Errorf("same request, different answers:\n%s\n%s", a, b)
			}
		})
	}
}

func checkArgs(t *testing.T, name string, args map[string]any) {
	t.Helper()
	switch name {
	case "get_weather":
		if args["city"] != "sample_city" || (args["unit"] != "celsius" && args["unit"] != "fahrenheit") {
			t.Errorf("get_weather args %v", args)
		}
		if d, ok := args["days"].(float64); !ok || d != float64(int(d)) {
			t.Errorf("days %v is not an integer", args["days"])
		}
		if _, ok := args["detail"]; ok {
			t.Errorf("optional property filled: %v", args)
		}
	case "book":
		people, ok := args["people"].([]any)
		if args["when"] != "2024-05-15" || !ok || len(people) != 1 {
			t.Fatalf("book args %v", args)
		}
		p := people[0].(map[string]any)
		if p["name"] != "sample_name" {
			t.Errorf("person %v", p)
		}
		if _, ok := p["age"].(float64); !ok {
			t.Errorf("age %v: want the integer of [integer, null]", p["age"])
		}
	default:
		t.Errorf("unknown tool %q", name)
	}
}

func TestSyntheticToolCallShare(t *testing.T) {
	for _, tc := range []struct {
		share    float64
		min, max int
	}{{-1, 0, 0}, {0, 30, 70}, {1, 100, 100}} {
		s, err := New(Options{Mode: ModeSynthetic, ToolCallShare: tc.share})
		if err != nil {
			t.Fatal(err)
		}
		var tools []openai.Tool
		if err := json.Unmarshal([]byte(weatherTools), &tools); err != nil {
			t.Fatal(err)
		}
		calls, parallel := 0, 0
		for i := range 100 {
			req := &openai.ChatRequest{Model: "m", Tools: tools, Messages: []openai.Message{
				{Role: "user", Content: openai.TextContent(strings.Repeat("x", i+1))}}}
			m, _, err := s.invent(req, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.ToolCalls) > 0 {
				calls++
			}
			if len(m.ToolCalls) > 1 {
				parallel++
			}
		}
		if calls < tc.min || calls > tc.max {
			t.Errorf("share %v: %d of 100 answers call tools, want %d..%d", tc.share, calls, tc.min, tc.max)
		}
		if tc.share == 1 && (parallel == 0 || parallel == 100) {
			t.Errorf("share 1: %d parallel answers; want some", parallel)
		}
	}
}

func TestSyntheticStreamMarksEveryChunk(t *testing.T) {
	_, ts := start(t, Options{Mode: ModeSynthetic, Calls: []dataset.Call{parallelCall()}})
	// Recorded, but synthetic mode still invents.
	res := readStream(t, post(t, ts, "/v1/chat/completions",
		[]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Oslo?"}],"stream":true,"stream_options":{"include_usage":true}}`)))
	if !res.done {
		t.Fatal(res.err)
	}
	for _, c := range res.chunks {
		if !c.Simulated {
			t.Fatalf("chunk not marked simulated: %+v", c)
		}
	}
	if got := res.acc.Completion().Choices[0].Message.Content.String(); !strings.HasPrefix(got, "[simulated answer]") {
		t.Errorf("invented %q", got)
	}
}

func TestParallelToolCallsFlag(t *testing.T) {
	for body, want := range map[string]bool{
		`{"model":"m"}`: true,
		`{"model":"m","parallel_tool_calls":true}`:  true,
		`{"model":"m","parallel_tool_calls":false}`: false,
		`{"model":"m","parallel_tool_calls":"no"}`:  true,
	} {
		if got := parallelToolCalls([]byte(body)); got != want {
			t.Errorf("%s: %v, want %v", body, got, want)
		}
	}
}
