package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// addStreamSeeds adds every golden SSE stream as a seed.
func addStreamSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecodeChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}}]}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"metadata":{"workload":"w"}}`))
	f.Add([]byte(`{"model":"","messages":[]}`))
	f.Add([]byte(`{"mod\u0065l":"m","messages":[{"role":"bot"}]}`))
	// A whole tau-bench-sized request is left out: at 20 KB it makes every
	// minimization take minutes, and the benchmark test already decodes it.
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeChatRequest(body)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || re.Message == "" {
				t.Fatalf("error %T %v is not a *RequestError with a message", err, err)
			}
			return
		}
		if req.Model == "" || len(req.Messages) == 0 {
			t.Fatalf("accepted a request with model %q and %d messages", req.Model, len(req.Messages))
		}
		for i, m := range req.Messages {
			if !validRoles[m.Role] {
				t.Fatalf("message %d has role %q", i, m.Role)
			}
		}
		// What the gateway does next: rewrite the model and ask for usage.
		patched, err := PatchRequest(body, map[string]any{"model": "upstream", "stream_options": IncludeUsage()})
		if err != nil {
			t.Fatalf("PatchRequest of an accepted body: %v", err)
		}
		again, err := DecodeChatRequest(patched)
		if err != nil {
			t.Fatalf("patched body %s rejected: %v", patched, err)
		}
		if again.Model != "upstream" || len(again.Messages) != len(req.Messages) ||
			again.StreamOptions == nil || !again.StreamOptions.IncludeUsage {
			t.Fatalf("patched body decodes as %+v", again)
		}
	})
}

func FuzzSSEReader(f *testing.F) {
	addStreamSeeds(f)
	f.Add([]byte("data: a\r\ndata: b\rdata:c\n\n: comment\nevent: e\nid: 1\ndata\n\n"))
	f.Add([]byte("\xEF\xBB\xBFdata: x\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		sr := NewSSEReader(bytes.NewReader(in))
		for n := 0; ; n++ {
			// Every event needs at least one line end of its own, so a reader
			// that returns more events than there are bytes does not terminate.
			if n > len(in) {
				t.Fatalf("more than %d events from %d bytes", n, len(in))
			}
			ev, err := sr.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if bytes.ContainsAny(ev.Data, "\r\n") {
				if err := WriteEvent(io.Discard, ev.Data); !errors.Is(err, ErrNewlineInData) {
					t.Fatalf("WriteEvent accepted data with a line end: %v", err)
				}
				continue
			}
			var b bytes.Buffer
			if err := WriteEvent(&b, ev.Data); err != nil {
				t.Fatal(err)
			}
			back, err := NewSSEReader(&b).Next()
			if err != nil || !bytes.Equal(back.Data, ev.Data) {
				t.Fatalf("data %q came back as %q (%v)", ev.Data, back.Data, err)
			}
		}
	})
}

func FuzzAccumulator(f *testing.F) {
	addStreamSeeds(f)
	f.Add([]byte("data: {\"choices\":[{\"index\":3,\"delta\":{\"tool_calls\":[{\"index\":-1,\"function\":{\"arguments\":\"\\u0000\"}}]}}]}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		sr := NewSSEReader(bytes.NewReader(in))
		acc := NewAccumulator()
		for {
			ev, err := sr.Next()
			if err != nil {
				break
			}
			if IsDone(ev) {
				continue
			}
			c, err := acc.AddData(ev.Data)
			if err == nil && c == nil {
				t.Fatal("AddData returned neither a chunk nor an error")
			}
		}
		out, err := json.Marshal(acc.Completion())
		if err != nil || !json.Valid(out) {
			t.Fatalf("completion does not encode: %v %s", err, out)
		}
		var back ChatCompletion
		if err := json.Unmarshal(out, &back); err != nil || back.Object != "chat.completion" {
			t.Fatalf("completion does not decode back: %v", err)
		}
	})
}
