package dataset

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
	"github.com/downshift-dev/downshift/internal/workload"
)

// collect runs an import and returns the calls and the bad records it reported.
func collect(t *testing.T, run func(im *Importer) error) ([]store.Call, []BadRecord) {
	t.Helper()
	var calls []store.Call
	var bad []BadRecord
	im := &Importer{
		Tokens: testCounter(t),
		Call:   func(c store.Call) error { calls = append(calls, c); return nil },
		Bad:    func(b BadRecord) error { bad = append(bad, b); return nil },
	}
	if err := run(im); err != nil {
		t.Fatalf("import: %v", err)
	}
	return calls, bad
}

var sharedCounter *tokens.Counter

func testCounter(t *testing.T) *tokens.Counter {
	t.Helper()
	if sharedCounter == nil {
		c, err := tokens.New()
		if err != nil {
			t.Fatal(err)
		}
		sharedCounter = c
	}
	return sharedCounter
}

func TestImportIDIsDeterministicAndSortsByTime(t *testing.T) {
	at := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	id := func(source string, at time.Time, key string) string {
		t.Helper()
		s, err := ImportID(source, at, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := id(store.SourceBFCL, at, "simple_python_0")
	if again := id(store.SourceBFCL, at, "simple_python_0"); again != a {
		t.Errorf("same record: %s then %s", a, again)
	}
	if id(store.SourceBFCL, at, "simple_python_1") == a {
		t.Error("different keys gave the same id")
	}
	if id(store.SourceOpenAI, at, "simple_python_0") == a {
		t.Error("different sources gave the same id")
	}
	u, err := ulid.ParseStrict(a)
	if err != nil {
		t.Fatalf("not a ULID: %v", err)
	}
	if got := ulid.Time(u.Time()); !got.Equal(at) {
		t.Errorf("time part %v, want %v", got, at)
	}
	// Later records sort later, whatever their keys.
	var ids []string
	for i := range 50 {
		ids = append(ids, id(store.SourceTauBench, ImportTime(store.SourceTauBench, i), strings.Repeat("z", 50-i)))
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids of records in time order are not sorted: %v", ids)
	}
	for _, bad := range []time.Time{time.Unix(-1, 0), time.Date(10900, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := ImportID(store.SourceOpenAI, bad, nil); err == nil {
			t.Errorf("ImportID(%v) accepted a time a ULID cannot hold", bad)
		}
	}
}

const pairReq = `{"model":"gpt-4o","messages":[{"role":"system","content":"You route tickets."},{"role":"user","content":"my card was charged twice"}],"metadata":{"workload":"route-ticket"}}`
const pairResp = `{"id":"chatcmpl-1","object":"chat.completion","created":1717000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"billing"},"finish_reason":"stop"}],"usage":{"prompt_tokens":21,"completion_tokens":1,"total_tokens":22,"prompt_tokens_details":{"cached_tokens":8}}}`

func TestOpenAIImportsPairsAndFineTuningLines(t *testing.T) {
	ft := `{"messages":[{"role":"system","content":"Extract the order id."},{"role":"user","content":"order 42 is late"},{"role":"assistant","content":"42","weight":1}]}`
	ftTools := `{"messages":[{"role":"user","content":"weather in Paris?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
	noCreated := `{"request":` + pairReq + `,"response":{"model":"gpt-4o","choices":[{"message":{"role":"assistant","content":"shipping"},"finish_reason":"stop"}]}}`
	lines := []string{
		`{"request": ` + pairReq + `, "response": ` + pairResp + `}`, // 1
		``,         // 2: blank, skipped
		`not json`, // 3
		`{"request": {"model": "gpt-4o"}, "response": ` + pairResp + `}`,                 // 4: no messages
		`{"request": ` + pairReq + `}`,                                                   // 5: no response
		`{"request": ` + pairReq + `, "response": {"error": {"message": "rate limit"}}}`, // 6
		ft,      // 7
		ftTools, // 8
		`{"messages": [{"role": "user", "content": "hi"}]}`, // 9: no answer
		`{"other": 1}`, // 10
		noCreated,      // 11
	}
	calls, bad := collect(t, func(im *Importer) error {
		im.Model = "gpt-4o-mini"
		return im.OpenAI(strings.NewReader(strings.Join(lines, "\n")))
	})
	var badLines []int
	for _, b := range bad {
		badLines = append(badLines, b.Line)
		if !strings.HasPrefix(b.Error(), "line ") {
			t.Errorf("bad record error %q does not start with its line", b.Error())
		}
	}
	if want := []int{3, 4, 5, 6, 9, 10}; !slices.Equal(badLines, want) {
		t.Errorf("bad lines = %v, want %v (%v)", badLines, want, bad)
	}
	if len(calls) != 4 {
		t.Fatalf("got %d calls, want 4", len(calls))
	}

	pair := calls[0]
	if pair.Source != store.SourceOpenAI || pair.Status != 200 || pair.GroundTruth || pair.Route != store.RouteReference {
		t.Errorf("pair: source %q status %d ground truth %t route %q", pair.Source, pair.Status, pair.GroundTruth, pair.Route)
	}
	if !pair.StartedAt.Equal(time.Unix(1717000000, 0)) {
		t.Errorf("pair StartedAt = %v, want the response's created", pair.StartedAt)
	}
	if pair.RequestedModel != "gpt-4o" || pair.ServedModel != "gpt-4o-2024-08-06" || pair.Workload != "route-ticket" {
		t.Errorf("pair models %q→%q workload %q", pair.RequestedModel, pair.ServedModel, pair.Workload)
	}
	if pair.PromptTokens != 21 || pair.CompletionTokens != 1 || pair.CachedTokens != 8 || pair.TokensEstimated {
		t.Errorf("pair tokens %d/%d cached %d estimated %t, want the usage 21/1/8", pair.PromptTokens, pair.CompletionTokens, pair.CachedTokens, pair.TokensEstimated)
	}
	req, err := openai.DecodeChatRequest(pair.Request)
	if err != nil {
		t.Fatalf("stored request: %v", err)
	}
	if pair.Fingerprint == "" || pair.Fingerprint != workload.Fingerprint(req) {
		t.Errorf("fingerprint %q, want that of the request", pair.Fingerprint)
	}
	if string(pair.Response) != pairResp {
		t.Errorf("response bytes changed:\n%s\nwant\n%s", pair.Response, pairResp)
	}

	plain := calls[1]
	if plain.RequestedModel != "gpt-4o-mini" || !plain.TokensEstimated || plain.PromptTokens == 0 || plain.CompletionTokens == 0 {
		t.Errorf("fine-tuning line: model %q estimated %t tokens %d/%d", plain.RequestedModel, plain.TokensEstimated, plain.PromptTokens, plain.CompletionTokens)
	}
	if !plain.StartedAt.Equal(ImportTime(store.SourceOpenAI, 6)) {
		t.Errorf("fine-tuning line at %v, want the epoch plus its index", plain.StartedAt)
	}
	preq, err := openai.DecodeChatRequest(plain.Request)
	if err != nil || len(preq.Messages) != 2 {
		t.Fatalf("fine-tuning request: %v, %d messages; want 2", err, len(preq.Messages))
	}
	cc, err := decodeCompletion(plain.Response)
	if err != nil || cc.Choices[0].Message.Content.String() != "42" || cc.Choices[0].FinishReason != "stop" {
		t.Errorf("fine-tuning response %s (%v)", plain.Response, err)
	}
	tools := calls[2]
	treq, _ := openai.DecodeChatRequest(tools.Request)
	tcc, _ := decodeCompletion(tools.Response)
	if len(treq.Tools) != 1 || len(tcc.Choices[0].Message.ToolCalls) != 1 || tcc.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("fine-tuning line with tools: request %s response %s", tools.Request, tools.Response)
	}
	if calls[3].StartedAt.Equal(pair.StartedAt) || calls[3].ID == pair.ID {
		t.Error("a pair without created took the time or id of another")
	}

	// The same file again gives the same ids, and naming another model does not
	// change them.
	again, _ := collect(t, func(im *Importer) error {
		return im.OpenAI(strings.NewReader(strings.Join(lines, "\n")))
	})
	if !slices.Equal(callIDs(again), callIDs(calls)) {
		t.Errorf("ids differ between imports: %v, %v", callIDs(again), callIDs(calls))
	}
}

func callIDs(calls []store.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.ID
	}
	return out
}

func TestImportWithoutBadStopsAtTheFirstBadRecord(t *testing.T) {
	var n int
	im := &Importer{Tokens: testCounter(t), Call: func(store.Call) error { n++; return nil }}
	in := `{"request": ` + pairReq + `, "response": ` + pairResp + "}\n{\"request\": 1}\n" + `{"request": ` + pairReq + `, "response": ` + pairResp + "}\n"
	err := im.OpenAI(strings.NewReader(in))
	var b BadRecord
	if !errors.As(err, &b) || b.Line != 2 {
		t.Fatalf("error = %v, want the BadRecord of line 2", err)
	}
	if n != 1 {
		t.Errorf("%d calls before stopping, want 1", n)
	}
	// A Bad callback that returns an error stops the import too (strict mode).
	stop := errors.New("strict")
	im.Bad = func(BadRecord) error { return stop }
	if err := im.OpenAI(strings.NewReader(in)); !errors.Is(err, stop) {
		t.Errorf("error = %v, want the callback's", err)
	}
}

func TestFlywheelTimestampsTagsAndClients(t *testing.T) {
	rec := func(ts, wl, client string) string {
		return `{"timestamp": ` + ts + `, "workload_id": "` + wl + `", "client_id": "` + client + `", "request": ` + pairReq + `, "response": ` + pairResp + `}`
	}
	lines := []string{
		rec(`1715854074`, "orders", "agent-1"),                                           // 1
		rec(`"2025-01-02T03:04:05.5Z"`, "orders", "agent-2"),                             // 2
		rec(`1715854074.25`, "", "agent-1"),                                              // 3: tag from metadata
		rec(`"yesterday"`, "x", "y"),                                                     // 4
		`{"workload_id": "x", "request": ` + pairReq + `, "response": ` + pairResp + `}`, // 5: no timestamp
		rec(`-5`, "x", "y"),                                                              // 6
		rec(`1715854074`, "bad\ttag", "y"),                                               // 7
		rec(`1715854074`, "orders", "agent-1"),                                           // 8: the same as line 1
	}
	calls, bad := collect(t, func(im *Importer) error {
		return im.Flywheel(strings.NewReader(strings.Join(lines, "\n")))
	})
	var badLines []int
	for _, b := range bad {
		badLines = append(badLines, b.Line)
	}
	if want := []int{4, 5, 6, 7}; !slices.Equal(badLines, want) {
		t.Errorf("bad lines = %v, want %v (%v)", badLines, want, bad)
	}
	if len(calls) != 4 {
		t.Fatalf("got %d calls, want 4", len(calls))
	}
	want := []struct {
		at               time.Time
		workload, client string
	}{
		{time.Unix(1715854074, 0), "orders", "agent-1"},
		{time.Date(2025, 1, 2, 3, 4, 5, 5e8, time.UTC), "orders", "agent-2"},
		{time.Unix(1715854074, 25e7), "route-ticket", "agent-1"},
		{time.Unix(1715854074, 0), "orders", "agent-1"},
	}
	for i, w := range want {
		c := calls[i]
		if !c.StartedAt.Equal(w.at) || c.Workload != w.workload || c.ClientID != w.client || c.Source != store.SourceFlywheel {
			t.Errorf("call %d: at %v workload %q client %q source %q; want %v %q %q", i, c.StartedAt, c.Workload, c.ClientID, c.Source, w.at, w.workload, w.client)
		}
	}
	if calls[0].ID != calls[3].ID {
		t.Error("two identical records got different ids")
	}
	if calls[0].ID == calls[2].ID {
		t.Error("records of different clients and times got the same id")
	}
}

func TestTauBenchImportOneCallPerTurn(t *testing.T) {
	tau, err := ReadTau("airline", strings.NewReader(tinyTraj), strings.NewReader(tinyTools))
	if err != nil {
		t.Fatal(err)
	}
	dcalls, err := TauCalls(tau)
	if err != nil {
		t.Fatal(err)
	}
	calls, bad := collect(t, func(im *Importer) error { return im.TauBench(dcalls) })
	if len(bad) != 0 || len(calls) != 2 {
		t.Fatalf("%d calls, bad %v; want 2 calls", len(calls), bad)
	}
	for i, c := range calls {
		if c.Source != store.SourceTauBench || c.RequestedModel != ModelGPT4o || c.ServedModel != ModelGPT4o || !c.TokensEstimated || c.GroundTruth {
			t.Errorf("call %d: %+v", i, c)
		}
		req, err := openai.DecodeChatRequest(c.Request)
		if err != nil {
			t.Fatalf("call %d request: %v", i, err)
		}
		if len(req.Tools) != 2 || req.Messages[len(req.Messages)-1].Role == "assistant" {
			t.Errorf("call %d request: %d tools, last role %s", i, len(req.Tools), req.Messages[len(req.Messages)-1].Role)
		}
		cc, err := decodeCompletion(c.Response)
		if err != nil {
			t.Fatalf("call %d response: %v", i, err)
		}
		if cc.Model != ModelGPT4o || cc.Created != c.StartedAt.Unix() {
			t.Errorf("call %d response model %q created %d", i, cc.Model, cc.Created)
		}
	}
	cc0, _ := decodeCompletion(calls[0].Response)
	if got := cc0.Choices[0].Message.ToolCalls; len(got) != 2 || got[0].ID != "call_A" || cc0.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("first turn's answer: %s", calls[0].Response)
	}
	if !strings.Contains(string(calls[1].Response), `"Hello U <b>&</b>"`) {
		t.Errorf("second turn's answer not kept verbatim: %s", calls[1].Response)
	}
	if calls[0].Fingerprint != calls[1].Fingerprint {
		t.Error("turns of one conversation have different fingerprints")
	}
}

const bfclQuestions = `{"id": "simple_0", "question": [[{"role": "user", "content": "Area of a triangle, base 10, height 5."}]], "function": [{"name": "geo.triangle_area", "description": "Area.", "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "float"}, "unit": {"type": "string"}, "opts": {"type": "dict", "properties": {"round": {"type": "boolean"}}}, "pts": {"type": "array", "items": {"type": "tuple"}}, "x": {"type": "any"}}, "required": ["base", "height", "label"]}}]}
{"id": "parallel_1", "question": [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris and Rome?"}]], "function": [{"name": "get_weather", "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}
{"id": "multi_2", "question": [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], "function": [{"name": "f", "parameters": {"type": "dict", "properties": {}}}]}
{"id": "orphan_3", "question": [[{"role": "user", "content": "no answer for me"}]], "function": [{"name": "f", "parameters": {"type": "dict", "properties": {}}}]}
`

const bfclAnswers = `{"id": "simple_0", "ground_truth": [{"geo.triangle_area": {"height": [5.0], "base": [10], "unit": ["", "units"], "label": ["", "tri"], "opts": [{"round": [true], "digits": [""]}], "pts": [[[1, 2], [3, 4]]], "x": [null]}}]}
{"id": "parallel_1", "ground_truth": [{"get_weather": {"city": ["Paris", "paris"]}}, {"get_weather": {"city": ["Rome"]}}]}
{"id": "multi_2", "ground_truth": [{"f": {}}]}
`

func TestBFCLGroundTruthBecomesToolCalls(t *testing.T) {
	calls, bad := collect(t, func(im *Importer) error {
		return im.BFCL("simple_python", strings.NewReader(bfclQuestions), strings.NewReader(bfclAnswers))
	})
	var badKeys []string
	for _, b := range bad {
		badKeys = append(badKeys, b.Error())
	}
	if len(bad) != 2 || !strings.Contains(badKeys[0], "multi_2") || !strings.Contains(badKeys[1], "orphan_3") {
		t.Errorf("bad = %q, want multi_2 (two turns) and orphan_3 (no answer)", badKeys)
	}
	if len(calls) != 2 {
		t.Fatalf("got %d calls, want 2", len(calls))
	}
	simple := calls[0]
	if !simple.GroundTruth || simple.Source != store.SourceBFCL || simple.RequestedModel != ModelGroundTruth ||
		simple.ServedModel != "bfcl/simple_python" || simple.Route != "" || !simple.TokensEstimated {
		t.Errorf("simple: %+v", simple)
	}
	wantTools := `"tools":[{"type":"function","function":{"name":"geo_triangle_area","description":"Area.","parameters":{"type":"object","properties":{"base":{"type":"integer"},"height":{"type":"number"},"unit":{"type":"string"},"opts":{"type":"object","properties":{"round":{"type":"boolean"}}},"pts":{"type":"array","items":{"type":"array"}},"x":{}},"required":["base","height","label"]}}}]`
	if !strings.Contains(string(simple.Request), wantTools) {
		t.Errorf("request %s\nwant tools %s", simple.Request, wantTools)
	}
	cc, err := decodeCompletion(simple.Response)
	if err != nil {
		t.Fatal(err)
	}
	tc := cc.Choices[0].Message.ToolCalls
	// unit is left out ("" first, not required); label is required, so its real value
	// is taken; nested objects resolve their own allowed values.
	wantArgs := `{"height":5.0,"base":10,"label":"tri","opts":{"round":true},"pts":[[1,2],[3,4]],"x":null}`
	if len(tc) != 1 || tc[0].Function.Name != "geo_triangle_area" || tc[0].Function.Arguments != wantArgs {
		t.Errorf("tool calls %+v\nwant geo_triangle_area(%s)", tc, wantArgs)
	}
	if cc.Choices[0].FinishReason != "tool_calls" || !cc.Choices[0].Message.Content.IsNull {
		t.Errorf("response %s", simple.Response)
	}

	par, _ := decodeCompletion(calls[1].Response)
	ptc := par.Choices[0].Message.ToolCalls
	if len(ptc) != 2 || ptc[0].Function.Arguments != `{"city":"Paris"}` || ptc[1].Function.Arguments != `{"city":"Rome"}` || ptc[0].ID == ptc[1].ID {
		t.Errorf("parallel calls %+v", ptc)
	}
	if req, _ := openai.DecodeChatRequest(calls[1].Request); len(req.Messages) != 2 || req.Messages[0].Role != "system" {
		t.Errorf("parallel request %s", calls[1].Request)
	}
}

func TestBFCLIrrelevanceIsAnAnswerWithoutCalls(t *testing.T) {
	calls, bad := collect(t, func(im *Importer) error {
		return im.BFCL("irrelevance", strings.NewReader(bfclQuestions), nil)
	})
	if len(calls) != 3 || len(bad) != 1 { // multi_2 still has two turns
		t.Fatalf("%d calls, bad %v; want 3 calls and 1 bad", len(calls), bad)
	}
	cc, err := decodeCompletion(calls[0].Response)
	if err != nil {
		t.Fatal(err)
	}
	m := cc.Choices[0].Message
	if len(m.ToolCalls) != 0 || m.Content.IsNull || m.Content.String() != "" || cc.Choices[0].FinishReason != "stop" || !calls[0].GroundTruth {
		t.Errorf("irrelevance response %s", calls[0].Response)
	}
}

func TestBFCLRefusesCategoriesWithoutSingleAnswers(t *testing.T) {
	for _, c := range []string{"multi_turn_base", "memory", "web_search", "live_relevance", "format_sensitivity", ""} {
		im := &Importer{Call: func(store.Call) error { return nil }}
		if err := im.BFCL(c, strings.NewReader(bfclQuestions), strings.NewReader(bfclAnswers)); !errors.Is(err, ErrBFCLCategory) {
			t.Errorf("category %q: error %v, want ErrBFCLCategory", c, err)
		}
	}
	if got := BFCLCategory("/x/BFCL_v4_live_simple.json"); got != "live_simple" {
		t.Errorf("BFCLCategory = %q", got)
	}
	if got := BFCLAnswersPath("/x/BFCL_v4_live_simple.json"); got != filepath.FromSlash("/x/possible_answer/BFCL_v4_live_simple.json") {
		t.Errorf("BFCLAnswersPath = %q", got)
	}
}

// dataDir returns $DOWNSHIFT_DATA (default ../shared/data), or skips.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DOWNSHIFT_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("full datasets not found at %s (set DOWNSHIFT_DATA): %v", dir, err)
	}
	return dir
}

func TestImportRealTauBenchAndBFCL(t *testing.T) {
	dir := dataDir(t)
	tau, err := LoadTau(filepath.Join(dir, "tau-bench"), "airline")
	if err != nil {
		t.Fatal(err)
	}
	dcalls, err := TauCalls(tau)
	if err != nil {
		t.Fatal(err)
	}
	calls, bad := collect(t, func(im *Importer) error { return im.TauBench(dcalls) })
	if len(calls) != 2454 || len(bad) != 0 {
		t.Errorf("tau-bench airline: %d calls, %d bad; want 2454 and 0", len(calls), len(bad))
	}
	assertUniqueIDs(t, calls)

	bfcl := filepath.Join(dir, "bfcl")
	files, err := filepath.Glob(filepath.Join(bfcl, "BFCL_v4_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"simple_python": 400, "irrelevance": 240, "live_multiple": 1053, "parallel_multiple": 200}
	total := 0
	for _, f := range files {
		cat := BFCLCategory(f)
		if CheckBFCLCategory(cat) != nil {
			continue
		}
		t.Run(cat, func(t *testing.T) {
			q, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var a *os.File
			if BFCLNeedsAnswers(cat) {
				if a, err = os.Open(BFCLAnswersPath(f)); err != nil {
					t.Fatal(err)
				}
				defer a.Close()
			}
			calls, bad := collect(t, func(im *Importer) error { return im.BFCL(cat, q, a) })
			if len(bad) != 0 {
				t.Errorf("%d bad records, first %v", len(bad), bad[0])
			}
			if n, ok := want[cat]; ok && len(calls) != n {
				t.Errorf("%d calls, want %d", len(calls), n)
			}
			for _, c := range calls {
				var cc openai.ChatCompletion
				if err := json.Unmarshal(c.Response, &cc); err != nil {
					t.Fatalf("%s: response: %v", c.ID, err)
				}
				for _, tc := range cc.Choices[0].Message.ToolCalls {
					if !json.Valid([]byte(tc.Function.Arguments)) {
						t.Errorf("%s: arguments %q are not JSON", c.ID, tc.Function.Arguments)
					}
				}
			}
			assertUniqueIDs(t, calls)
			total += len(calls)
		})
	}
	t.Logf("tau-bench airline: %d calls; BFCL single-turn categories: %d calls", len(calls), total)
}

func assertUniqueIDs(t *testing.T, calls []store.Call) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range calls {
		if seen[c.ID] {
			t.Errorf("id %s twice", c.ID)
		}
		seen[c.ID] = true
	}
}
