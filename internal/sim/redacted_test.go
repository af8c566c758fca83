package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/redact"
)

func newRedactor(t testing.TB) *redact.Redactor {
	t.Helper()
	r, err := redact.New(redact.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// storedCall is a call as a gateway with redaction on stores it.
type storedCall struct {
	request []byte
	answer  openai.Choice
}

// recordRedacted sends body to the simulator as a client of the gateway would, and
// redacts the request with the answer as the gateway's recorder does: the request as
// sent, the response as the chat.completion the gateway stores (the upstream's bytes;
// for a stream, the reassembled completion). It reports false when redaction left the
// request as it was.
func recordRedacted(t testing.TB, ts *httptest.Server, r *redact.Redactor, body []byte, stream bool) (storedCall, bool) {
	t.Helper()
	if stream {
		body = append(slices.Clip(bytes.TrimSuffix(body, []byte("}"))), `,"stream":true}`...)
	}
	resp := post(t, ts, "/v1/chat/completions", body)
	var raw []byte
	if stream {
		res := readStream(t, resp)
		if !res.done {
			t.Fatalf("stream ended with %v", res.err)
		}
		raw = mustJSON(t, res.acc.Completion())
	} else {
		_, raw = decodeCompletion(t, resp)
	}
	req2, resp2, _, err := r.RedactCall(body, raw)
	if err != nil {
		t.Fatal(err)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(resp2, &cc); err != nil {
		t.Fatal(err)
	}
	return storedCall{request: req2, answer: cc.Choices[0]}, !bytes.Equal(req2, body)
}

func TestRedactedConversationGetsTheStoredAnswer(t *testing.T) {
	calls := bundledCalls(t)
	_, ts := start(t, Options{Calls: calls, Redactor: newRedactor(t), Seed: 3,
		Candidates: map[string]Degrade{"cand-0": {Rate: 0}, "cand-half": {Rate: 0.5}}})
	gateway := newRedactor(t) // the recorder's own, as in another process
	checked, degraded := 0, 0
	for i := range calls {
		c := &calls[i]
		if c.Dataset != "taubench-airline" || i%4 != 0 {
			continue
		}
		body, err := c.RequestJSON()
		if err != nil {
			t.Fatal(err)
		}
		stream := i%40 == 0
		stored, changed := recordRedacted(t, ts, gateway, body, stream)
		if !changed {
			continue
		}
		checked++
		want := stored.answer
		withModel := func(b []byte, model string) []byte {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["model"] = model
			delete(m, "stream")
			return mustJSON(t, m)
		}

		// The reference model, asked the stored conversation: the stored answer,
		// which it gave to another conversation (the one before redaction).
		resp := post(t, ts, "/v1/chat/completions", withModel(stored.request, "gpt-4o"))
		cc, _ := decodeCompletion(t, resp)
		if got := cc.Choices[0]; !reflect.DeepEqual(got.Message, want.Message) || got.FinishReason != want.FinishReason {
			t.Fatalf("%s: got %+v, want the stored %+v", c.ID, got.Message, want.Message)
		}
		if h := resp.Header; h.Get(HeaderSimulated) != "true" || !cc.Simulated || h.Get(HeaderReplayed) != "" ||
			h.Get(HeaderReplayedModel) != dataset.ModelGPT4o || h.Get(HeaderReplayedMatch) != MatchRedacted {
			t.Fatalf("%s: headers %v, body simulated %v", c.ID, h, cc.Simulated)
		}

		// A candidate that never degrades: the stored answer, zero-shot and in context.
		for _, v := range []struct {
			body  []byte
			match string
		}{
			{withModel(stored.request, "cand-0"), MatchRedacted},
			{inContextBody(t, withModel(stored.request, "cand-0"), "cand-0", false), MatchRedactedWithoutSystem},
		} {
			resp := post(t, ts, "/v1/chat/completions", v.body)
			cc, _ := decodeCompletion(t, resp)
			checkCandidateMarked(t, resp.Header, cc.Simulated, dataset.ModelGPT4o, v.match)
			if got := cc.Choices[0]; !reflect.DeepEqual(got.Message, want.Message) || got.FinishReason != want.FinishReason {
				t.Fatalf("%s (%s): got %+v, want the stored %+v", c.ID, v.match, got.Message, want.Message)
			}
		}

		// A candidate that degrades: the same calls, the same way, as recorded or redacted.
		plain := post(t, ts, "/v1/chat/completions", withModel(body, "cand-half"))
		red := post(t, ts, "/v1/chat/completions", withModel(stored.request, "cand-half"))
		pc, _ := decodeCompletion(t, plain)
		rc, _ := decodeCompletion(t, red)
		if pd, rd := plain.Header.Get(HeaderDegraded), red.Header.Get(HeaderDegraded); pd != rd {
			t.Fatalf("%s: degraded %q as recorded, %q redacted", c.ID, pd, rd)
		} else if pd != "" {
			degraded++
		} else if !reflect.DeepEqual(rc.Choices[0].Message, want.Message) || !reflect.DeepEqual(pc.Choices[0].Message, c.Answers[0].Message) {
			t.Fatalf("%s: undegraded answers differ from the recorded and stored ones", c.ID)
		}
	}
	// 1295 of the 2454 tau-bench calls have a customer's e-mail address in their
	// conversation (and none in GPT-4o's answer: TestRedactedMatches checks redacted
	// answers).
	if checked < 250 || degraded == 0 || degraded == checked {
		t.Errorf("checked %d redacted conversations, %d degraded: the test checks too little", checked, degraded)
	}
}

func TestRedactedMatches(t *testing.T) {
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
		call("one", "policy", "write to ann@example.com", "Sent to ann@example.com."),
		// Two conversations that redact alike, with answers that redact alike: one.
		call("alike-1", "policy", "my number is 415-555-0100", "Noted: 415-555-0100."),
		call("alike-2", "policy", "my number is 212-555-0199", "Noted: 212-555-0199."),
		// Two conversations that redact alike, with different answers: ambiguous.
		call("differ-1", "policy", "cancel for bob@example.com", "Cancelled."),
		call("differ-2", "policy", "cancel for cat@example.com", "There is no booking."),
		// Nothing to redact: found by the plain keys only.
		call("plain", "policy", "hello", "Hi."),
	}
	for _, tc := range []struct {
		name, system, user string
		answer, match      string // answer "" means a replay miss
		off                bool   // no Redactor
	}{
		{"as recorded", "policy", "write to ann@example.com", "Sent to ann@example.com.", MatchExact, false},
		{"redacted", "policy", "write to <EMAIL_1>", "Sent to <EMAIL_1>.", MatchRedacted, false},
		{"redacted, other system prompt", "policy\n\nExamples: ...", "write to <EMAIL_1>", "Sent to <EMAIL_1>.", MatchRedactedWithoutSystem, false},
		{"redacted, no system prompt", "", "write to <EMAIL_1>", "Sent to <EMAIL_1>.", MatchRedactedWithoutSystem, false},
		{"redacted, other number", "policy", "write to <EMAIL_2>", "", "", false},
		{"redactor off", "policy", "write to <EMAIL_1>", "", "", true},
		{"alike", "policy", "my number is <PHONE_1>", "Noted: <PHONE_1>.", MatchRedacted, false},
		{"alike in context", "policy!", "my number is <PHONE_1>", "Noted: <PHONE_1>.", MatchRedactedWithoutSystem, false},
		{"ambiguous", "policy", "cancel for <EMAIL_1>", "", "", false},
		{"ambiguous in context", "policy!", "cancel for <EMAIL_1>", "", "", false},
		{"plain in context", "policy!", "hello", "Hi.", MatchWithoutSystem, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Calls: calls, Redactor: newRedactor(t)}
			if tc.off {
				opts.Redactor = nil
			}
			_, ts := start(t, opts)
			var msgs []map[string]string
			if tc.system != "" {
				msgs = append(msgs, map[string]string{"role": "system", "content": tc.system})
			}
			msgs = append(msgs, map[string]string{"role": "user", "content": tc.user})
			resp := post(t, ts, "/v1/chat/completions", mustJSON(t, map[string]any{"model": "gpt-4o", "messages": msgs}))
			if tc.answer == "" {
				raw, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(raw), CodeNoRecordedAnswer) {
					t.Fatalf("status %d %s, want a replay miss", resp.StatusCode, raw)
				}
				return
			}
			cc, _ := decodeCompletion(t, resp)
			h := resp.Header
			if got := cc.Choices[0].Message.Content.String(); got != tc.answer || h.Get(HeaderReplayedMatch) != tc.match ||
				cc.Simulated != (tc.match != MatchExact) || (h.Get(HeaderReplayed) == "true") != (tc.match == MatchExact) {
				t.Fatalf("answer %q matched %q (simulated %v, headers %v), want %q matched %q",
					got, h.Get(HeaderReplayedMatch), cc.Simulated, h, tc.answer, tc.match)
			}
		})
	}
}

// BenchmarkNewRedactedIndex measures redacting and indexing the bundled recordings,
// which a server with a Redactor does on its first replay miss. Each round has a new
// redactor, whose cache of scanned texts starts empty, as a new server's does.
func BenchmarkNewRedactedIndex(b *testing.B) {
	ix := newIndex(bundledCalls(b))
	b.ReportAllocs()
	for b.Loop() {
		newRedactedIndex(newRedactor(b), ix.recs)
	}
	b.ReportMetric(float64(len(ix.recs)), "recordings")
}
