package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// parallelCall is a recorded call whose answer makes two tool calls at once.
func parallelCall() dataset.Call {
	return dataset.Call{
		ID: "hand/1",
		Request: openai.ChatRequest{Model: "gpt-4o", Messages: []openai.Message{
			{Role: "user", Content: openai.TextContent("weather in Paris and Oslo?")}}},
		Answers: []dataset.Answer{{
			Model: "gpt-4o",
			Message: openai.Message{Role: "assistant", Content: openai.TextContent("Checking both."), ToolCalls: []openai.ToolCall{
				{ID: "call_P", Type: "function", Function: openai.FunctionCall{Name: "weather", Arguments: `{"city":"Paris","unit":"celsius"}`}},
				{ID: "call_O", Type: "function", Function: openai.FunctionCall{Name: "weather", Arguments: `{"city":"Oslo","unit":"celsius"}`}},
			}},
			FinishReason: "tool_calls",
		}},
	}
}

const parallelRequest = `{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Oslo?"}],"stream":true%s}`

func TestStreamChunkShape(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		name := "without usage"
		extra := ""
		if includeUsage {
			name, extra = "with usage", `,"stream_options":{"include_usage":true}`
		}
		t.Run(name, func(t *testing.T) {
			_, ts := start(t, Options{Calls: []dataset.Call{parallelCall()}})
			res := readStream(t, post(t, ts, "/v1/chat/completions", []byte(strings.Replace(parallelRequest, "%s", extra, 1))))
			if !res.done {
				t.Fatalf("no [DONE]: %v", res.err)
			}
			chunks := res.chunks
			first := chunks[0].Choices[0].Delta
			if first.Role != "assistant" || first.Content == nil || *first.Content != "" {
				t.Errorf("first delta %+v, want the role and empty content", first)
			}
			for _, c := range chunks {
				if c.Object != "chat.completion.chunk" || c.ID != chunks[0].ID || c.Model != "gpt-4o" || c.Simulated {
					t.Fatalf("chunk header %+v", c)
				}
			}
			last := chunks[len(chunks)-1]
			finish := last
			if includeUsage {
				if !openai.IsUsageOnly(last) || len(last.Choices) != 0 || last.Usage.CompletionTokens == 0 ||
					last.Usage.TotalTokens != last.Usage.PromptTokens+last.Usage.CompletionTokens {
					t.Fatalf("last chunk is not the usage chunk: %+v", last)
				}
				finish = chunks[len(chunks)-2]
			}
			for _, c := range chunks {
				if c.Usage != nil && c != last {
					t.Errorf("usage on a chunk before the last: %+v", c)
				}
				if !includeUsage && c.Usage != nil {
					t.Errorf("usage without include_usage")
				}
			}
			if f := finish.Choices[0].FinishReason; f == nil || *f != "tool_calls" {
				t.Errorf("finish chunk %+v", finish.Choices[0])
			}

			// Tool calls: id and name come first, then argument pieces, interleaved.
			var order []int
			seenHead := map[int]bool{}
			for _, c := range chunks {
				if len(c.Choices) == 0 {
					continue
				}
				for _, td := range c.Choices[0].Delta.ToolCalls {
					if !seenHead[td.Index] {
						if td.ID == "" || td.Function.Name != "weather" || td.Function.Arguments != "" {
							t.Fatalf("first delta of call %d: %+v", td.Index, td)
						}
						seenHead[td.Index] = true
						continue
					}
					if td.ID != "" || td.Function.Name != "" {
						t.Errorf("later delta repeats id or name: %+v", td)
					}
					order = append(order, td.Index)
				}
			}
			if len(order) < 4 || order[0] != 0 || order[1] != 1 || order[2] != 0 {
				t.Errorf("argument pieces by call %v, want them interleaved", order)
			}
			got := res.acc.Completion().Choices[0].Message
			want := parallelCall().Answers[0].Message
			if got.Content.String() != want.Content.String() || len(got.ToolCalls) != 2 ||
				got.ToolCalls[0] != want.ToolCalls[0] || got.ToolCalls[1] != want.ToolCalls[1] {
				t.Errorf("reassembled %+v, want %+v", got, want)
			}
		})
	}
}

func TestStreamUsageMatchesNonStreamed(t *testing.T) {
	_, ts := start(t, Options{Calls: []dataset.Call{parallelCall()}})
	res := readStream(t, post(t, ts, "/v1/chat/completions",
		[]byte(strings.Replace(parallelRequest, "%s", `,"stream_options":{"include_usage":true}`, 1))))
	plain := strings.Replace(strings.Replace(parallelRequest, `,"stream":true`, "", 1), "%s", "", 1)
	cc, _ := decodeCompletion(t, post(t, ts, "/v1/chat/completions", []byte(plain)))
	if got := res.chunks[len(res.chunks)-1].Usage; !reflect.DeepEqual(got, cc.Usage) {
		t.Errorf("stream usage %+v, non-streamed %+v", got, cc.Usage)
	}
}

func TestTextPiecesConcatenateBack(t *testing.T) {
	for _, s := range []string{"", "Hello, world!", "  leading and trailing  ", "supercalifragilistic", "naïve café — ünïcödé 東京タワー", "a\n\nb\tc", `{"a":[1,2]}`} {
		pieces := textPieces(s)
		if strings.Join(pieces, "") != s {
			t.Errorf("%q splits into %q", s, pieces)
		}
		for _, p := range pieces {
			if p == "" || len([]rune(strings.TrimSpace(p))) > wordPiece {
				t.Errorf("%q: piece %q", s, p)
			}
		}
		if strings.Join(runePieces(s, 3), "") != s {
			t.Errorf("runePieces(%q) loses text", s)
		}
	}
	if n := len(textPieces("one two three")); n != 3 {
		t.Errorf("three words in %d pieces", n)
	}
}

func FuzzTextPieces(f *testing.F) {
	f.Add("Hello, world! 東京")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Join(textPieces(s), "") != s || strings.Join(runePieces(s, argumentPiece), "") != s {
			t.Fatalf("pieces of %q do not concatenate back", s)
		}
	})
}

// sleeps records the latency the server asks for.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) total() time.Duration {
	var sum time.Duration
	for _, d := range s.d {
		sum += d
	}
	return sum
}

func TestLatencyModel(t *testing.T) {
	const ttft, tps = 200 * time.Millisecond, 50.0
	body := strings.Replace(strings.Replace(parallelRequest, `,"stream":true`, "", 1), "%s", "", 1)
	t.Run("non-streamed", func(t *testing.T) {
		var rec sleeps
		_, ts := start(t, Options{Calls: []dataset.Call{parallelCall()}, Sleep: rec.sleep, Latency: Latency{TTFT: ttft, TokensPerSecond: tps}})
		cc, _ := decodeCompletion(t, post(t, ts, "/v1/chat/completions", []byte(body)))
		want := ttft + time.Duration(float64(cc.Usage.CompletionTokens)/tps*float64(time.Second))
		if got := rec.total(); got != want {
			t.Errorf("slept %v, want %v", got, want)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		var rec sleeps
		_, ts := start(t, Options{Calls: []dataset.Call{parallelCall()}, Sleep: rec.sleep, Latency: Latency{TTFT: ttft, TokensPerSecond: tps}})
		res := readStream(t, post(t, ts, "/v1/chat/completions", []byte(strings.Replace(parallelRequest, "%s", `,"stream_options":{"include_usage":true}`, 1))))
		completion := res.chunks[len(res.chunks)-1].Usage.CompletionTokens
		if rec.d[0] != ttft {
			t.Errorf("first wait %v, want the TTFT %v", rec.d[0], ttft)
		}
		want := ttft + time.Duration(float64(completion)/tps*float64(time.Second))
		if got := rec.total(); got < want-time.Millisecond || got > want+time.Millisecond {
			t.Errorf("stream slept %v in all, want about %v", got, want)
		}
	})
	t.Run("jitter", func(t *testing.T) {
		var rec sleeps
		_, ts := start(t, Options{Calls: []dataset.Call{parallelCall()}, Sleep: rec.sleep, Seed: 3,
			Latency: Latency{TTFT: ttft, Jitter: 0.5}})
		for range 20 {
			decodeCompletion(t, post(t, ts, "/v1/chat/completions", []byte(body)))
		}
		distinct := map[time.Duration]bool{}
		for _, d := range rec.d {
			if d < ttft/2 || d > ttft*3/2 {
				t.Errorf("jittered wait %v outside ±50%% of %v", d, ttft)
			}
			distinct[d] = true
		}
		if len(distinct) < 10 {
			t.Errorf("only %d distinct waits in 20", len(distinct))
		}
	})
}

func TestRealSleepHonoursClientCancel(t *testing.T) {
	s, err := New(Options{Calls: []dataset.Call{parallelCall()}, Latency: Latency{TTFT: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	ts := newServer(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	body := strings.Replace(strings.Replace(parallelRequest, `,"stream":true`, "", 1), "%s", "", 1)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
	start := time.Now()
	if _, err := ts.Client().Do(req); err == nil {
		t.Fatal("an hour-long TTFT answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("client waited %v", d)
	}
}

func decodeJSON(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
}

// TestFixedLatency checks the setting that makes every answer take the same time
// (for throughput benchmarks): TTFT alone, or with a speed so high that decoding
// adds nothing measurable.
func TestFixedLatency(t *testing.T) {
	const ttft = 20 * time.Millisecond
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Oslo?"}]%s}`
	for _, tc := range []struct {
		name   string
		tps    float64
		stream bool
		slack  time.Duration // what decoding may add at tps
	}{
		{"no decoding time", 0, false, 0},
		{"no decoding time, streamed", 0, true, 0},
		{"very fast decoding", 1e9, false, time.Microsecond},
		{"very fast decoding, streamed", 1e9, true, time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sl sleeps
			_, ts := start(t, Options{Calls: []dataset.Call{parallelCall()},
				Latency: Latency{TTFT: ttft, TokensPerSecond: tc.tps}, Sleep: sl.sleep})
			extra := ""
			if tc.stream {
				extra = `,"stream":true`
			}
			resp := post(t, ts, "/v1/chat/completions", []byte(strings.Replace(body, "%s", extra, 1)))
			if tc.stream {
				if res := readStream(t, resp); !res.done {
					t.Fatalf("no [DONE]: %v", res.err)
				}
			} else {
				decodeCompletion(t, resp)
			}
			if got := sl.total(); got < ttft || got > ttft+tc.slack {
				t.Errorf("the reply waited %v in all (%v), want %v", got, sl.d, ttft)
			}
		})
	}
	t.Run("real timer waits at least TTFT", func(t *testing.T) {
		s, err := New(Options{Calls: []dataset.Call{parallelCall()}, Latency: Latency{TTFT: ttft}})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		began := time.Now()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(strings.Replace(body, "%s", "", 1))))
		if took := time.Since(began); rec.Code != http.StatusOK || took < ttft {
			t.Errorf("status %d after %v, want 200 after at least %v", rec.Code, took, ttft)
		}
	})
}
