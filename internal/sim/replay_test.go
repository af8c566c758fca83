package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// inContext returns the request c with k worked examples appended to its first
// system message, as an evaluation's in-context variant sends it, or with a system
// message of examples put first when it has none.
func inContext(t testing.TB, c *dataset.Call, model string, stream bool) []byte {
	t.Helper()
	body, err := c.RequestJSON()
	if err != nil {
		t.Fatal(err)
	}
	return inContextBody(t, body, model, stream)
}

// inContextBody is inContext for a request body.
func inContextBody(t testing.TB, body []byte, model string, stream bool) []byte {
	t.Helper()
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	const examples = "\n\nExamples:\nUser: change my flight to tomorrow\nAssistant: Which reservation?"
	msgs := req["messages"].([]any)
	extended := false
	for _, m := range msgs {
		m := m.(map[string]any)
		if m["role"] == "system" {
			text, ok := m["content"].(string)
			if !ok {
				t.Fatalf("system content %v is not a string", m["content"])
			}
			m["content"] = text + examples
			extended = true
			break
		}
	}
	if !extended {
		req["messages"] = append([]any{map[string]any{"role": "system", "content": strings.TrimSpace(examples)}}, msgs...)
	}
	req["model"] = model
	if stream {
		req["stream"] = true
	}
	return mustJSON(t, req)
}

// zeroShot returns the request c as recorded, for model.
func zeroShot(t testing.TB, c *dataset.Call, model string) []byte {
	t.Helper()
	cc := *c
	cc.Request.Model = model
	body, err := cc.RequestJSON()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestInContextVariantGetsTheRecordedAnswer(t *testing.T) {
	calls := bundledCalls(t)
	_, ts := start(t, Options{Calls: calls})
	sample := sampleTau(calls)[:40]
	rows, _ := dataset.BundledGSM8K()
	for i := range calls { // a GSM8K call, recorded with no system message
		if calls[i].Dataset != "taubench-airline" && calls[i].Request.Messages[0].Content.String() == rows[3].Prompt {
			sample = append(sample, &calls[i])
			break
		}
	}
	for _, c := range sample {
		want := c.Answers[0]
		orig, _ := decodeCompletion(t, post(t, ts, "/v1/chat/completions", zeroShot(t, c, want.Model)))
		resp := post(t, ts, "/v1/chat/completions", inContext(t, c, want.Model, false))
		cc, _ := decodeCompletion(t, resp)
		if got := cc.Choices[0]; !reflect.DeepEqual(got.Message, want.Message) || got.FinishReason != want.FinishReason {
			t.Fatalf("%s: got %+v, want the recorded %+v", c.ID, got.Message, want.Message)
		}
		h := resp.Header
		// The answer was recorded for another prompt: not the model's own to this one.
		if h.Get(HeaderSimulated) != "true" || !cc.Simulated || h.Get(HeaderReplayed) != "" ||
			h.Get(HeaderReplayedModel) != want.Model || h.Get(HeaderReplayedMatch) != MatchWithoutSystem {
			t.Fatalf("%s: headers %v, body simulated %v", c.ID, h, cc.Simulated)
		}
		if cc.Usage.PromptTokens <= orig.Usage.PromptTokens || cc.Usage.CompletionTokens != orig.Usage.CompletionTokens {
			t.Errorf("%s: usage %+v, want more prompt tokens than the recorded prompt's %+v", c.ID, *cc.Usage, *orig.Usage)
		}
	}
	if len(sample) != 41 {
		t.Fatalf("sample has %d calls; the GSM8K call is missing", len(sample))
	}
}

func TestInContextVariantDegradesLikeZeroShot(t *testing.T) {
	calls := bundledCalls(t)
	_, ts := start(t, Options{Calls: calls, Seed: 3, Candidates: map[string]Degrade{"cand": {Rate: 0.5}}})
	degraded := 0
	sample := sampleTau(calls)
	for i, c := range sample {
		zr := post(t, ts, "/v1/chat/completions", zeroShot(t, c, "cand"))
		zero, _ := decodeCompletion(t, zr)
		ir := post(t, ts, "/v1/chat/completions", inContext(t, c, "cand", false))
		in, _ := decodeCompletion(t, ir)
		checkCandidateMarked(t, zr.Header, zero.Simulated, c.Answers[0].Model, MatchExact)
		checkCandidateMarked(t, ir.Header, in.Simulated, c.Answers[0].Model, MatchWithoutSystem)
		if !reflect.DeepEqual(in.Choices, zero.Choices) || ir.Header.Get(HeaderDegraded) != zr.Header.Get(HeaderDegraded) {
			t.Fatalf("%s: in-context %q %+v, zero-shot %q %+v", c.ID, ir.Header.Get(HeaderDegraded), in.Choices,
				zr.Header.Get(HeaderDegraded), zero.Choices)
		}
		if zr.Header.Get(HeaderDegraded) != "" {
			degraded++
		}
		if i%10 == 0 { // streamed too
			sr := post(t, ts, "/v1/chat/completions", inContext(t, c, "cand", true))
			res := readStream(t, sr)
			got := res.acc.Completion()
			if !res.done || !reflect.DeepEqual(got.Choices[0].Message, zero.Choices[0].Message) {
				t.Fatalf("%s: stream %+v (done %v), want %+v", c.ID, got.Choices, res.done, zero.Choices[0].Message)
			}
			for _, ch := range res.chunks {
				if !ch.Simulated {
					t.Fatalf("%s: chunk not marked simulated: %+v", c.ID, ch)
				}
			}
			checkCandidateMarked(t, sr.Header, got.Simulated, c.Answers[0].Model, MatchWithoutSystem)
		}
	}
	if degraded == 0 || degraded == len(sample) {
		t.Errorf("%d of %d degraded at rate 0.5: the test checks one case only", degraded, len(sample))
	}
}

func TestReplayMatchWithoutSystem(t *testing.T) {
	call := func(id, system, user, answer string) dataset.Call {
		c := dataset.Call{ID: id, Request: openai.ChatRequest{Model: "gpt-4o"},
			Answers: []dataset.Answer{{Model: "gpt-4o", FinishReason: "stop",
				Message: openai.Message{Role: "assistant", Content: openai.TextContent(answer)}}}}
		if system != "" {
			c.Request.Messages = append(c.Request.Messages, openai.Message{Role: "system", Content: openai.TextContent(system)})
		}
		c.Request.Messages = append(c.Request.Messages, openai.Message{Role: "user", Content: openai.TextContent(user)})
		return c
	}
	calls := []dataset.Call{
		call("one", "policy one", "only recorded once", "A"),
		// Two recordings with the same user message and different system prompts.
		call("two-a", "policy A", "recorded twice", "B1"),
		call("two-b", "policy B", "recorded twice", "B2"),
		// The same conversation recorded twice is one recording, not an ambiguity.
		call("dup-1", "policy", "recorded again", "C"),
		call("dup-2", "policy", "recorded again", "C (second recording)"),
	}
	for _, tc := range []struct {
		name, system, user string
		answer, match      string // answer "" means no recorded answer (404)
	}{
		{"exact", "policy one", "only recorded once", "A", MatchExact},
		{"system prompt extended", "policy one\n\nExamples: ...", "only recorded once", "A", MatchWithoutSystem},
		{"system prompt removed", "", "only recorded once", "A", MatchWithoutSystem},
		{"other user message", "policy one", "only recorded once!", "", ""},
		{"exact match among ambiguous", "policy B", "recorded twice", "B2", MatchExact},
		{"ambiguous", "policy A\n\nExamples: ...", "recorded twice", "", ""},
		{"ambiguous without system", "", "recorded twice", "", ""},
		{"duplicate recording", "policy\n\nExamples: ...", "recorded again", "C", MatchWithoutSystem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, unknown := range []Unknown{UnknownError, UnknownSynthetic} {
				_, ts := start(t, Options{Calls: calls, Unknown: unknown})
				var msgs []map[string]string
				if tc.system != "" {
					msgs = append(msgs, map[string]string{"role": "system", "content": tc.system})
				}
				msgs = append(msgs, map[string]string{"role": "user", "content": tc.user})
				resp := post(t, ts, "/v1/chat/completions", mustJSON(t, map[string]any{"model": "gpt-4o", "messages": msgs}))
				h := resp.Header
				if tc.answer == "" && unknown == UnknownError {
					raw, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(raw), CodeNoRecordedAnswer) {
						t.Fatalf("status %d %s, want a replay miss", resp.StatusCode, raw)
					}
					continue
				}
				cc, _ := decodeCompletion(t, resp)
				if tc.answer == "" { // invented
					if !cc.Simulated || h.Get(HeaderReplayedModel) != "" || h.Get(HeaderReplayedMatch) != "" {
						t.Fatalf("unknown=%s: headers %v, answer %+v", unknown, h, cc.Choices[0].Message)
					}
					continue
				}
				if got := cc.Choices[0].Message.Content.String(); got != tc.answer || h.Get(HeaderReplayedMatch) != tc.match ||
					cc.Simulated != (tc.match != MatchExact) {
					t.Fatalf("answer %q matched %q (simulated %v), want %q matched %q",
						got, h.Get(HeaderReplayedMatch), cc.Simulated, tc.answer, tc.match)
				}
			}
		})
	}
}

func TestWithoutSystemKey(t *testing.T) {
	msg := func(role, text string) openai.Message {
		return openai.Message{Role: role, Content: openai.TextContent(text)}
	}
	base := []openai.Message{msg("system", "policy"), msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye")}
	for _, tc := range []struct {
		name string
		msgs []openai.Message
		same bool
	}{
		{"system prompt extended", []openai.Message{msg("system", "policy\n\nExamples: x"), msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye")}, true},
		{"no system prompt", base[1:], true},
		{"a second system message", append([]openai.Message{msg("system", "more")}, base...), true},
		{"other user text", []openai.Message{msg("system", "policy"), msg("user", "hi!"), msg("assistant", "hello"), msg("user", "bye")}, false},
		{"system turned developer", []openai.Message{msg("developer", "policy"), msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye")}, true},
		{"user turned developer", []openai.Message{msg("system", "policy"), msg("developer", "hi"), msg("assistant", "hello"), msg("user", "bye")}, false},
		{"one message fewer", base[:3], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := withoutSystemKey(tc.msgs) == withoutSystemKey(base); got != tc.same {
				t.Errorf("same key = %v, want %v", got, tc.same)
			}
			if !tc.same && conversationKey(tc.msgs) == conversationKey(base) {
				t.Error("exact keys equal")
			}
		})
	}
	if conversationKey(base) == conversationKey(base[1:]) {
		t.Error("the exact key leaves out the system prompt")
	}
}

func BenchmarkNewIndex(b *testing.B) {
	calls := bundledCalls(b)
	b.ReportAllocs()
	for b.Loop() {
		newIndex(calls)
	}
	b.ReportMetric(float64(len(calls)), "calls")
}
