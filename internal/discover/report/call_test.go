package report

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

func TestIsJSONAnswer(t *testing.T) {
	for s, want := range map[string]bool{
		`{"intent":"refund"}`:                  true,
		"  [1, 2, 3]\n":                        true,
		"```json\n{\"a\": 1}\n```":             true,
		"```\n[\"x\"]\n```":                    true,
		"```{\"a\":1}```":                      true,
		`"just a string"`:                      false,
		`42`:                                   false,
		`{"broken": `:                          false,
		"Sure! Here it is: {\"a\": 1}":         false,
		"```json\n{\"a\": 1}\n``` and more":    false,
		"```json\n{\"a\": 1}":                  false,
		"":                                     false,
		"I cannot help with that reservation.": false,
	} {
		if got := IsJSONAnswer(s); got != want {
			t.Errorf("IsJSONAnswer(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestFromStoreCall(t *testing.T) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	base := store.Call{ID: "c1", StartedAt: at, Workload: "tag", WorkloadID: "w1", Fingerprint: "fp",
		RequestedModel: "gpt-4o", ServedModel: "llama", Status: 200, PromptTokens: 10, CompletionTokens: 5,
		CachedTokens: 2, CostUSD: 0.5, Latency: time.Second}
	req := `{"model":"gpt-4o","messages":[{"role":"system","content":"You are an airline agent."},
		{"role":"user","content":"Change my flight"},{"role":"assistant","content":"Sure"},
		{"role":"user","content":[{"type":"text","text":"to Boston"},{"type":"image_url","image_url":{"url":"x"}}]}],
		"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],"temperature":0}`
	for _, tc := range []struct {
		name     string
		status   int
		req      string
		resp     string
		output   Output
		tools    []string
		prompt   string
		offered  int
		wantFail bool
	}{
		{name: "tool calls", status: 200, req: req, output: OutputToolCall, tools: []string{"update_flight", "get_user"},
			resp:   `{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"update_flight","arguments":"{}"}},{"id":"2","type":"function","function":{"name":"get_user","arguments":"{}"}}]}}]}`,
			prompt: "Change my flight\nto Boston", offered: 2},
		{name: "JSON content", status: 200, req: `{"messages":[{"role":"user","content":"classify"}]}`,
			resp: `{"choices":[{"message":{"role":"assistant","content":"{\"label\":\"refund\"}"}}]}`, output: OutputJSON, prompt: "classify"},
		{name: "text, system prompt when no user message", status: 200,
			req:  `{"messages":[{"role":"system","content":"Summarise the day."}]}`,
			resp: `{"choices":[{"message":{"role":"assistant","content":"A calm day."}}]}`, output: OutputText, prompt: "Summarise the day."},
		{name: "failed call", status: 502, req: req, resp: `{"error":{"message":"upstream","type":"upstream_error"}}`,
			output: OutputError, prompt: "Change my flight\nto Boston", offered: 2},
		{name: "error body with 200", status: 200, req: req, resp: `{"error":{"message":"x"}}`, output: OutputError,
			prompt: "Change my flight\nto Boston", offered: 2},
		{name: "listed without payloads", status: 200, output: OutputUnknown},
		{name: "response not JSON", status: 200, resp: `not json`, wantFail: true},
		{name: "request not JSON", status: 200, req: `{`, wantFail: true},
		{name: "no choices", status: 200, resp: `{"choices":[]}`, wantFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Status = tc.status
			if tc.req != "" {
				c.Request = []byte(tc.req)
			}
			if tc.resp != "" {
				c.Response = []byte(tc.resp)
			}
			got, err := FromStoreCall(c)
			if tc.wantFail {
				if err == nil || !strings.Contains(err.Error(), "c1") {
					t.Fatalf("err = %v, want an error naming the call", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Call{ID: "c1", Workload: "tag", WorkloadID: "w1", Fingerprint: "fp", RequestedModel: "gpt-4o",
				ServedModel: "llama", PromptTokens: 10, CompletionTokens: 5, CachedTokens: 2, CostUSD: 0.5,
				Latency: time.Second, StartedAt: at, Status: tc.status,
				Output: tc.output, Tools: tc.tools, ToolsOffered: tc.offered, Prompt: tc.prompt}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestFromStoreCallRefusesSealedPayloads(t *testing.T) {
	_, err := FromStoreCall(store.Call{ID: "c1", KeyID: "k1", Request: []byte{1, 2, 3}})
	if !errors.Is(err, ErrSealed) {
		t.Errorf("err = %v, want ErrSealed", err)
	}
}

func TestPromptKeepsTheEndOfLongConversations(t *testing.T) {
	long := strings.Repeat("é", MaxPromptBytes) + "the end" // 2-byte runes: the cut may fall inside one
	req := `{"messages":[{"role":"user","content":"` + long + `"}]}`
	c, err := FromStoreCall(store.Call{ID: "c1", Status: 200, Request: []byte(req)})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Prompt) > MaxPromptBytes || !strings.HasSuffix(c.Prompt, "the end") || !strings.HasPrefix(c.Prompt, "é") {
		t.Errorf("prompt of %d bytes, starts %q, ends %q", len(c.Prompt), c.Prompt[:4], c.Prompt[len(c.Prompt)-7:])
	}
}
