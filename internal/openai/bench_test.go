package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// tauBenchRequest builds a request shaped like one call of a tau-bench airline
// agent: a ~6 KB policy as the system prompt, 14 function tools with JSON-schema
// parameters, and 15 messages of conversation with tool calls and tool results.
func tauBenchRequest() []byte {
	policy := strings.Repeat("# Airline Agent Policy\n- Before taking consequential actions that update the booking database "+
		"(booking, modifying flights, editing baggage, upgrading cabin class, or updating passenger information), "+
		"you must list the action details and obtain explicit user confirmation (yes) to proceed.\n", 24)
	var tools []any
	for i := range 14 {
		tools = append(tools, map[string]any{"type": "function", "function": map[string]any{
			"name":        fmt.Sprintf("tool_%02d", i),
			"description": "Search direct flights between two cities on a specific date, or update the reservation.",
			"parameters": map[string]any{"type": "object", "required": []string{"origin", "destination", "date"},
				"properties": map[string]any{
					"origin":      map[string]any{"type": "string", "description": "The origin city airport in three letters, such as 'JFK'."},
					"destination": map[string]any{"type": "string", "description": "The destination city airport in three letters, such as 'LAX'."},
					"date":        map[string]any{"type": "string", "description": "The date of the flight in the format 'YYYY-MM-DD', such as '2024-01-01'."},
					"passengers": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
						"first_name": map[string]any{"type": "string"}, "last_name": map[string]any{"type": "string"}, "dob": map[string]any{"type": "string"}}}},
				}},
		}})
	}
	msgs := []any{map[string]any{"role": "system", "content": policy}}
	for i := range 7 {
		switch i % 2 {
		case 0:
			msgs = append(msgs, map[string]any{"role": "user", "content": "I'd like to change my flight for reservation ZFA04Y to a later one on the same day, please."})
			msgs = append(msgs, map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
				"id": fmt.Sprintf("call_%024d", i), "type": "function",
				"function": map[string]any{"name": "tool_03", "arguments": `{"reservation_id": "ZFA04Y"}`}}}})
		default:
			msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": fmt.Sprintf("call_%024d", i-1),
				"content": `{"reservation_id": "ZFA04Y", "user_id": "mia_li_3668", "origin": "JFK", "destination": "SEA", "flight_type": "one_way", "cabin": "economy", "flights": [{"origin": "JFK", "destination": "SEA", "flight_number": "HAT136", "date": "2024-05-20", "price": 51}], "passengers": [{"first_name": "Mia", "last_name": "Li", "dob": "1990-04-05"}], "payment_history": [{"payment_id": "credit_card_4421486", "amount": 51}], "created_at": "2024-05-10T07:30:00", "total_baggages": 1, "nonfree_baggages": 0, "insurance": "no"}`})
			msgs = append(msgs, map[string]any{"role": "assistant", "content": "I found your reservation. Here are the later flights on the same day; which one would you like?"})
		}
	}
	body, err := json.Marshal(map[string]any{"model": "gpt-4o", "temperature": 0, "messages": msgs, "tools": tools, "tool_choice": "auto"})
	if err != nil {
		panic(err)
	}
	return body
}

func TestTauBenchRequestIsRealisticAndDecodes(t *testing.T) {
	body := tauBenchRequest()
	req, err := DecodeChatRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Messages) != 15 || len(req.Tools) != 14 || len(body) < 15_000 {
		t.Fatalf("%d messages, %d tools, %d bytes", len(req.Messages), len(req.Tools), len(body))
	}
}

func BenchmarkDecodeChatRequest(b *testing.B) {
	body := tauBenchRequest()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeChatRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPatchRequest(b *testing.B) {
	body := tauBenchRequest()
	set := map[string]any{"model": "meta/llama-3.3-70b-instruct", "stream_options": IncludeUsage()}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PatchRequest(body, set); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAccumulator(b *testing.B) {
	body, err := os.ReadFile("testdata/stream/parallel_tool_calls_usage.sse")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		sr := NewSSEReader(bytes.NewReader(body))
		acc := NewAccumulator()
		for {
			ev, err := sr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if IsDone(ev) {
				continue
			}
			if _, err := acc.AddData(ev.Data); err != nil {
				b.Fatal(err)
			}
		}
		_ = acc.Completion()
	}
}
