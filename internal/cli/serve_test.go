package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	oa "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

// startSim serves the simulator on a real socket.
func startSim(t *testing.T, o sim.Options) string {
	t.Helper()
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String() + "/v1"
}

// startTestServer runs the whole server (gateway, recorder, keys, SQLite store) against
// upstream, as serve does, with one gateway key for client "test-agent", whose secret
// it returns.
func startTestServer(t *testing.T, upstream string) (srv *server, db, key string) {
	t.Helper()
	cfg := config.Default()
	cfg.Store.DSN = filepath.Join(t.TempDir(), "downshift.db")
	cfg.Backends = []config.Backend{{Name: "sim", URL: upstream}}
	cfg.Models = []config.Model{{Name: "gpt-4o", Backend: "sim", Role: "reference", Price: gpt4oPrice}}
	key = createKey(t, cfg.Store.DSN, store.Key{Kind: store.KeyGateway, Name: "test-agent"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err = startServer(context.Background(), cfg, ln, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return srv, cfg.Store.DSN, key
}

// createKey makes a key in the store at db, as `downshift keys create` does.
func createKey(t *testing.T, db string, k store.Key) string {
	t.Helper()
	st, err := openStore(context.Background(), "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k, secret, err := auth.NewKey(k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return secret
}

// storedCalls shuts srv down (flushing the recorder) and reads back every call.
func storedCalls(t *testing.T, srv *server, db string) []store.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	calls, err := st.ListCalls(ctx, store.Filter{Limit: 1 << 20, Ascending: true, WithPayloads: true})
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// TestServeRecordsOpenAIClientCalls drives the served gateway with the official Go
// client (plain, streaming, parallel tool calls, json_schema) and checks that each call
// is in the SQLite store with the tokens the client was told and the answer it got.
func TestServeRecordsOpenAIClientCalls(t *testing.T) {
	upstream := startSim(t, sim.Options{Mode: sim.ModeSynthetic, ToolCallShare: 1, Seed: 7})
	srv, db, key := startTestServer(t, upstream)
	client := oa.NewClient(option.WithBaseURL("http://"+srv.addr+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	ctx := context.Background()

	type seen struct {
		content   string
		toolCalls []openai.ToolCall
		prompt    int64
		compl     int64
		stream    bool
	}
	var want []seen
	tool := oa.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "lookup_order",
		Parameters: shared.FunctionParameters{"type": "object",
			"properties": map[string]any{"order_id": map[string]string{"type": "string"}}, "required": []string{"order_id"}}})
	schema := map[string]any{"type": "object", "properties": map[string]any{"label": map[string]string{"type": "string"}},
		"required": []string{"label"}, "additionalProperties": false}
	params := []oa.ChatCompletionNewParams{
		{Model: "gpt-4o", Messages: []oa.ChatCompletionMessageParamUnion{oa.UserMessage("Say hello.")}},
		{Model: "gpt-4o", Messages: []oa.ChatCompletionMessageParamUnion{oa.UserMessage("Where is order #W123?")},
			Tools: []oa.ChatCompletionToolUnionParam{tool}, ParallelToolCalls: oa.Bool(true)},
		{Model: "gpt-4o", Messages: []oa.ChatCompletionMessageParamUnion{oa.UserMessage("Label this ticket.")},
			ResponseFormat: oa.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "label", Schema: schema}}}},
	}
	toolCalls := func(tcs []oa.ChatCompletionMessageToolCallUnion) []openai.ToolCall {
		var out []openai.ToolCall
		for _, tc := range tcs {
			out = append(out, openai.ToolCall{ID: tc.ID, Type: "function", Function: openai.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
		}
		return out
	}
	for _, p := range params {
		resp, err := client.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		m := resp.Choices[0].Message
		want = append(want, seen{content: m.Content, toolCalls: toolCalls(m.ToolCalls), prompt: resp.Usage.PromptTokens, compl: resp.Usage.CompletionTokens})

		p.StreamOptions = oa.ChatCompletionStreamOptionsParam{IncludeUsage: oa.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		acc := oa.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		sm := acc.Choices[0].Message
		want = append(want, seen{content: sm.Content, toolCalls: toolCalls(sm.ToolCalls), prompt: acc.Usage.PromptTokens, compl: acc.Usage.CompletionTokens, stream: true})
	}
	if len(want[2].toolCalls) == 0 || len(want[3].toolCalls) == 0 {
		t.Fatalf("the tool request got no tool call: %+v", want[2:4])
	}

	checkOperations(t, "http://"+srv.addr)
	calls := storedCalls(t, srv, db)
	if len(calls) != len(want) {
		t.Fatalf("stored %d calls, want %d", len(calls), len(want))
	}
	for i, c := range calls {
		w := want[i]
		if c.Stream != w.stream || c.Status != 200 || c.ServedModel != "gpt-4o" || c.ClientID != "test-agent" {
			t.Errorf("call %d: stream=%v status=%d served=%q client=%q", i, c.Stream, c.Status, c.ServedModel, c.ClientID)
		}
		if int64(c.PromptTokens) != w.prompt || int64(c.CompletionTokens) != w.compl || c.TokensEstimated || w.prompt == 0 {
			t.Errorf("call %d: stored tokens %d/%d (estimated %v), client saw %d/%d", i, c.PromptTokens, c.CompletionTokens, c.TokensEstimated, w.prompt, w.compl)
		}
		var cc openai.ChatCompletion
		if err := json.Unmarshal(c.Response, &cc); err != nil {
			t.Fatalf("call %d: stored response: %v", i, err)
		}
		got := cc.Choices[0].Message
		if got.Content.String() != w.content {
			t.Errorf("call %d: stored content %q, client got %q", i, got.Content.String(), w.content)
		}
		if fmt.Sprint(got.ToolCalls) != fmt.Sprint(w.toolCalls) {
			t.Errorf("call %d: stored tool calls %v, client got %v", i, got.ToolCalls, w.toolCalls)
		}
		if !c.Simulated {
			t.Errorf("call %d: the simulator's invented answer is not marked simulated", i)
		}
	}
}

// checkOperations checks the health, readiness and metrics endpoints of a server that
// has answered calls.
func checkOperations(t *testing.T, base string) {
	t.Helper()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
	code, metrics := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, name := range []string{
		`downshift_requests_total{code="200",model="gpt-4o",route="reference",stream="true"}`,
		"downshift_request_duration_seconds_bucket", "downshift_time_to_first_token_seconds_bucket",
		`downshift_tokens_total{kind="prompt",model="gpt-4o"}`, `downshift_cost_usd_total{model="gpt-4o"}`,
		"downshift_record_queue_depth", "downshift_records_written_total", "downshift_records_dropped_total",
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// TestGracefulShutdownLosesNoRecords shuts the server down while 32 clients keep
// sending (half of them streaming) and checks that every call a client got a complete
// answer to is in the store, and nothing else is.
func TestGracefulShutdownLosesNoRecords(t *testing.T) {
	upstream := startSim(t, sim.Options{Mode: sim.ModeSynthetic, Seed: 3,
		Latency: sim.Latency{TTFT: 5 * time.Millisecond, TokensPerSecond: 2000}})
	srv, db, key := startTestServer(t, upstream)
	base := "http://" + srv.addr + "/v1/chat/completions"

	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				stream := w%2 == 0
				body := fmt.Sprintf(`{"model":"gpt-4o","stream":%v,"messages":[{"role":"user","content":"request %d from client %d"}]}`, stream, i, w)
				req, _ := http.NewRequest(http.MethodPost, base, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := client.Do(req)
				if err != nil {
					continue // refused: the server is shutting down
				}
				if complete(resp, stream) {
					answered.Add(1)
				}
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	st, err := openStore(ctx, "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored, err := st.CountCalls(ctx, store.Filter{Status: 200})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := st.CountCalls(ctx, store.Filter{})
	if answered.Load() < 50 {
		t.Fatalf("only %d calls answered before shutdown; the test did not load the server", answered.Load())
	}
	if int64(stored) != answered.Load() || all != stored {
		t.Fatalf("answered %d calls, stored %d with status 200 (%d in all)", answered.Load(), stored, all)
	}
	t.Logf("answered and stored: %d", stored)
}

// complete reads a response to its end and reports whether it was a whole answer.
func complete(resp *http.Response, stream bool) bool {
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return false
	}
	if !stream {
		var cc openai.ChatCompletion
		b, err := io.ReadAll(resp.Body)
		return err == nil && json.Unmarshal(b, &cc) == nil && len(cc.Choices) > 0
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if bytes.Equal(sc.Bytes(), []byte("data: [DONE]")) {
			io.Copy(io.Discard, resp.Body)
			return true
		}
	}
	return false
}
