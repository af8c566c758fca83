package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// upstream is a scripted OpenAI-compatible server: the user text of the last message
// says what to do ("fail429 2" fails twice with 429 first, "bad" answers 400, "cut"
// cuts the stream once), otherwise it streams the tool call get_user {"q": text}.
type upstream struct {
	mu    sync.Mutex
	tries map[string]int
	hits  atomic.Int64
	// block, when set, holds each request until it is closed.
	block chan struct{}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	req, err := openai.DecodeChatRequest(body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if u.block != nil {
		select {
		case <-u.block:
		case <-r.Context().Done():
			return
		}
	}
	text := req.Messages[len(req.Messages)-1].Content.String()
	u.mu.Lock()
	u.tries[text]++
	try := u.tries[text]
	u.mu.Unlock()
	var n int
	switch {
	case strings.HasPrefix(text, "fail429") && func() bool { fmt.Sscanf(text, "fail429 %d", &n); return try <= n }():
		w.Header().Set("Retry-After", "0")
		http.Error(w, `{"error":{"message":"slow down","type":"rate_limit"}}`, 429)
		return
	case strings.HasPrefix(text, "fail500") && try == 1:
		http.Error(w, `{"error":{"message":"boom","type":"server_error"}}`, 500)
		return
	case text == "bad":
		http.Error(w, `{"error":{"message":"no","type":"invalid_request_error"}}`, 400)
		return
	}
	if !req.Stream || req.StreamOptions == nil || !req.StreamOptions.IncludeUsage {
		http.Error(w, `{"error":{"message":"want a stream with usage"}}`, 400)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	args, _ := json.Marshal(map[string]string{"q": text})
	chunk := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
	}
	chunk(map[string]any{"id": "x", "object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0,
		"delta": map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"index": 0, "id": "call_1", "type": "function",
			"function": map[string]any{"name": "get_user", "arguments": string(args)}}}}}}})
	if text == "cut" && try == 1 {
		panic(http.ErrAbortHandler) // the connection breaks mid-stream
	}
	chunk(map[string]any{"id": "x", "object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0,
		"delta": map[string]any{}, "finish_reason": "tool_calls"}}})
	chunk(map[string]any{"id": "x", "object": "chat.completion.chunk", "choices": []any{},
		"usage": map[string]any{"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func testModel(t *testing.T, url string) *backend.Model {
	t.Helper()
	b, err := backend.New(config.Backend{Name: "up", URL: url + "/v1", ConnectTimeout: time.Second, ResponseTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &backend.Model{Name: "small", UpstreamName: "small-upstream", Backend: b,
		Price: config.Price{InputPerMTok: 1, OutputPerMTok: 2}}
}

// toolCall is a call whose reference called get_user with {"q": text}.
func toolCall(id, text string) *Call {
	req := &openai.ChatRequest{Model: "gpt-4o", Messages: []openai.Message{{Role: "user", Content: openai.TextContent(text)}}}
	body, _ := json.Marshal(req)
	args, _ := json.Marshal(map[string]string{"q": text})
	c := &Call{ID: id, Req: req, Request: body, Answer: openai.Message{Role: "assistant", ToolCalls: []openai.ToolCall{
		{ID: "r", Type: "function", Function: openai.FunctionCall{Name: "get_user", Arguments: string(args)}}}}}
	c.Stratum = Stratum(&c.Answer)
	return c
}

func collect(rs *[]store.EvalResult, mu *sync.Mutex) func(context.Context, []store.EvalResult) error {
	return func(_ context.Context, batch []store.EvalResult) error {
		mu.Lock()
		defer mu.Unlock()
		*rs = append(*rs, batch...)
		return nil
	}
}

func TestRunnerRetriesWhatIsWorthRetrying(t *testing.T) {
	up := &upstream{tries: map[string]int{}}
	srv := httptest.NewServer(up)
	defer srv.Close()
	m := testModel(t, srv.URL)
	calls := map[string]*Call{
		"ok": toolCall("ok", "plain"), "r429": toolCall("r429", "fail429 2"), "r500": toolCall("r500", "fail500"),
		"bad": toolCall("bad", "bad"), "cut": toolCall("cut", "cut"), "never": toolCall("never", "fail429 99"),
	}
	var jobs []Job
	for _, c := range calls {
		jobs = append(jobs, Job{Candidate: m, Variant: VariantZeroShot, Call: c})
	}
	var got []store.EvalResult
	var mu sync.Mutex
	r := &Runner{RunID: "run", Concurrency: 3, MaxAttempts: 4, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Save: collect(&got, &mu), BatchSize: 2}
	st, err := r.Run(context.Background(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done != len(calls) || len(got) != len(calls) {
		t.Fatalf("done %d, saved %d, want %d", st.Done, len(got), len(calls))
	}
	by := map[string]store.EvalResult{}
	for _, r := range got {
		by[r.CallID] = r
	}
	want := map[string]struct {
		status, attempts int
		pass             bool
	}{
		"ok": {200, 1, true}, "r429": {200, 3, true}, "r500": {200, 2, true}, "cut": {200, 2, true},
		"bad": {400, 1, false}, "never": {429, 4, false},
	}
	for id, w := range want {
		r := by[id]
		if r.Status != w.status || r.Attempts != w.attempts || r.Pass != w.pass {
			t.Errorf("%s: status %d attempts %d pass %v (error %q), want %d %d %v", id, r.Status, r.Attempts, r.Pass, r.Error, w.status, w.attempts, w.pass)
		}
		if (r.Error == "") != w.pass {
			t.Errorf("%s: error %q", id, r.Error)
		}
	}
	ok := by["ok"]
	if ok.PromptTokens != 100 || ok.CompletionTokens != 10 || ok.Agreement != 1 {
		t.Errorf("ok: tokens %d/%d agreement %v", ok.PromptTokens, ok.CompletionTokens, ok.Agreement)
	}
	if want := (100*1.0 + 10*2.0) / 1e6; ok.CostUSD != want {
		t.Errorf("ok: cost %v, want %v", ok.CostUSD, want)
	}
	if ok.TTFT <= 0 || ok.Latency < ok.TTFT {
		t.Errorf("ok: ttft %v latency %v", ok.TTFT, ok.Latency)
	}
	var v Verdict
	if err := json.Unmarshal(ok.Score, &v); err != nil || v.Compare.Tools == nil || !v.Compare.Tools.Pass {
		t.Errorf("ok: score %s (%v)", ok.Score, err)
	}
	if st.Failed != 2 {
		t.Errorf("failed = %d, want 2", st.Failed)
	}
	if strings.Contains(by["bad"].Error, "Bearer") {
		t.Error("an error message holds a credential")
	}
}

func TestRunnerInterruptedSavesWhatWasAnswered(t *testing.T) {
	up := &upstream{tries: map[string]int{}, block: make(chan struct{})}
	srv := httptest.NewServer(up)
	defer srv.Close()
	m := testModel(t, srv.URL)
	var jobs []Job
	for i := range 20 {
		jobs = append(jobs, Job{Candidate: m, Variant: VariantZeroShot, Call: toolCall(fmt.Sprint(i), fmt.Sprint("q", i))})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []store.EvalResult
	var mu sync.Mutex
	done := 0
	r := &Runner{RunID: "run", Concurrency: 4, Save: collect(&got, &mu), BatchSize: 100,
		Progress: func(d int) {
			done = d
			if d == 5 {
				cancel()
			}
		}}
	// Let exactly five requests through, then hold the rest.
	go func() {
		for range 5 {
			up.block <- struct{}{}
		}
	}()
	_, err := r.Run(ctx, jobs)
	if err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(got) != 5 || done != 5 {
		t.Fatalf("saved %d results (progress %d), want the 5 answered before the interruption", len(got), done)
	}
}

func TestBuildRequestAddsExamplesAndStreams(t *testing.T) {
	c := toolCall("a", "hello")
	c.Request = []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hello"}],"temperature":0.2,"n":2,"custom":{"x":1}}`)
	body, err := BuildRequest(c, "llama", "EXAMPLES")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got["model"] != "llama" || got["stream"] != true || got["temperature"] != 0.2 || got["custom"] == nil || got["n"] != nil {
		t.Errorf("body = %s", body)
	}
	if so, _ := got["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options = %v", got["stream_options"])
	}
	msgs := got["messages"].([]any)
	if sys := msgs[0].(map[string]any)["content"]; sys != "Be brief.\n\nEXAMPLES" {
		t.Errorf("system = %q", sys)
	}
	// Parts content gets one more part; no system message gets one.
	c.Request = []byte(`{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"A"}]},{"role":"user","content":"q"}]}`)
	body, _ = BuildRequest(c, "llama", "EX")
	if !strings.Contains(string(body), `[{"type":"text","text":"A"},{"text":"EX","type":"text"}]`) {
		t.Errorf("parts: %s", body)
	}
	c.Request = []byte(`{"model":"m","messages":[{"role":"user","content":"q"}]}`)
	body, _ = BuildRequest(c, "llama", "EX")
	if !strings.Contains(string(body), `"messages":[{"content":"EX","role":"system"},{"role":"user","content":"q"}]`) {
		t.Errorf("no system: %s", body)
	}
	body, _ = BuildRequest(c, "llama", "")
	if strings.Contains(string(body), "EX") {
		t.Errorf("zero-shot carries examples: %s", body)
	}
}

func TestParseVerdict(t *testing.T) {
	cases := []struct {
		text      string
		score     int
		pass, err bool
	}{
		{`{"score": 8, "pass": true, "reasoning": "same"}`, 8, true, false},
		{"```json\n{\"score\": 3}\n```", 3, false, false},
		{`{"score": 7}`, 7, true, false},
		{`{"score": 14, "pass": false}`, 10, false, false},
		{`{"pass": true}`, 0, true, false},
		{`I think it is fine`, 0, false, true},
		{`{"reasoning": "x"}`, 0, false, true},
	}
	for _, c := range cases {
		var v JudgeVerdict
		err := parseVerdict(c.text, 7, &v)
		if (err != nil) != c.err || v.Score != c.score || v.Pass != c.pass {
			t.Errorf("%q: %+v, %v", c.text, v, err)
		}
	}
}

// TestJudgeDecidesTextVerdicts: where the reference answered text, the judge's verdict
// replaces ROUGE-L's, and its grade and reasoning are kept; a failing judge leaves
// compare's verdict and says why.
func TestJudgeDecidesTextVerdicts(t *testing.T) {
	// The candidate answers every call with the same short text.
	cand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Your flight is booked."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}`)
	}))
	defer cand.Close()
	var judged atomic.Int64
	judge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		judged.Add(1)
		body, _ := io.ReadAll(r.Body)
		req, err := openai.DecodeChatRequest(body)
		if err != nil || len(req.Messages) != 2 || !strings.Contains(req.Messages[1].Content.String(), "Your flight is booked.") {
			http.Error(w, "bad judge request", 400)
			return
		}
		verdict := `{\"score\": 9, \"pass\": true, \"reasoning\": \"Same booking confirmed.\"}`
		if strings.Contains(req.Messages[1].Content.String(), "cancelled") {
			verdict = `{\"score\": 2, \"pass\": false, \"reasoning\": \"It says booked; the reference says cancelled.\"}`
		}
		if strings.Contains(req.Messages[1].Content.String(), "broken") {
			http.Error(w, `{"error":{"message":"judge down"}}`, 503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"j","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}]}`, verdict)
	}))
	defer judge.Close()

	text := func(id, ref string) *Call {
		req := &openai.ChatRequest{Model: "gpt-4o", Messages: []openai.Message{{Role: "user", Content: openai.TextContent("Book it")}}}
		body, _ := json.Marshal(req)
		c := &Call{ID: id, Req: req, Request: body, Answer: openai.Message{Role: "assistant", Content: openai.TextContent(ref)}}
		c.Stratum = Stratum(&c.Answer)
		return c
	}
	m := testModel(t, cand.URL)
	jm := testModel(t, judge.URL)
	jm.Name = "gpt-4o"
	jobs := []Job{
		{Candidate: m, Variant: VariantZeroShot, Call: text("same", "I have booked your flight for you, all done.")},
		{Candidate: m, Variant: VariantZeroShot, Call: text("wrong", "Your flight is cancelled.")},
		{Candidate: m, Variant: VariantZeroShot, Call: text("broken", "Your flight is booked. (broken)")},
	}
	var got []store.EvalResult
	var mu sync.Mutex
	r := &Runner{RunID: "run", Judge: &Judge{Model: jm}, Save: collect(&got, &mu)}
	if _, err := r.Run(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
	by := map[string]Verdict{}
	pass := map[string]bool{}
	for _, res := range got {
		var v Verdict
		if err := json.Unmarshal(res.Score, &v); err != nil {
			t.Fatal(err)
		}
		by[res.CallID], pass[res.CallID] = v, res.Pass
	}
	// ROUGE-L alone fails "same" (few words in common) and passes "wrong".
	if by["same"].Compare.Pass || !by["wrong"].Compare.Pass {
		t.Fatalf("compare's verdicts: same %v, wrong %v; the test needs false, true", by["same"].Compare.Pass, by["wrong"].Compare.Pass)
	}
	if !pass["same"] || by["same"].Judge == nil || by["same"].Judge.Score != 9 || by["same"].Judge.Reasoning == "" {
		t.Errorf("same: pass %v judge %+v", pass["same"], by["same"].Judge)
	}
	if pass["wrong"] || by["wrong"].Judge.Score != 2 {
		t.Errorf("wrong: pass %v judge %+v", pass["wrong"], by["wrong"].Judge)
	}
	if by["broken"].Judge == nil || by["broken"].Judge.Error == "" || pass["broken"] != by["broken"].Compare.Pass {
		t.Errorf("broken: pass %v judge %+v compare pass %v", pass["broken"], by["broken"].Judge, by["broken"].Compare.Pass)
	}
	if judged.Load() != 3 {
		t.Errorf("judge asked %d times, want 3", judged.Load())
	}
}
