package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// These tests shift workloads through a gateway on a real socket, with the reference
// and the candidate on real sockets of their own, policies in a real SQLite store read
// through policy.Refresher, and a real policy.Monitor taking automatic steps.

// shiftRig is a gateway with a reference ("big") and a candidate ("small") upstream.
type shiftRig struct {
	ref, cand *fakeUpstream
	st        *sqlite.DB
	policies  *policy.Refresher
	monitor   *policy.Monitor
	rec       *memRecorder
	srv       *httptest.Server
	gw        *Gateway
}

type rigOptions struct {
	secondConcurrency int
	secondTimeout     time.Duration
}

func newShiftRig(t *testing.T, o rigOptions) *shiftRig {
	t.Helper()
	r := &shiftRig{ref: newFakeUpstream(t), cand: newFakeUpstream(t), rec: &memRecorder{}}
	cfg := config.Config{
		Backends: []config.Backend{{Name: "up", URL: r.ref.URL + "/v1"}, {Name: "small-up", URL: r.cand.URL + "/v1"}},
		Models: []config.Model{
			{Name: "big", Backend: "up", UpstreamName: "big-upstream", Role: "reference",
				Price: config.Price{InputPerMTok: 2.5, OutputPerMTok: 10, CachedInputPerMTok: 1.25}},
			{Name: "small", Backend: "small-up", UpstreamName: "small-upstream", Role: "candidate",
				Price: config.Price{InputPerMTok: 0.1, OutputPerMTok: 0.4}},
		},
		Aliases: map[string]string{"gpt-4o": "big"},
	}
	cat, err := backend.NewCatalog(cfg, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "shift.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.policies = policy.NewRefresher(r.st, policy.RefresherOptions{})
	if err := r.policies.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	r.monitor, err = policy.NewMonitor(policy.MonitorOptions{Policies: r.policies, Step: policy.SaveStep(r.st, r.policies)})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.monitor.Run(mctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	r.gw, err = New(Options{Catalog: cat, Recorder: r.rec, Policies: r.policies, Observer: r.monitor,
		SecondConcurrency: o.secondConcurrency, SecondTimeout: o.secondTimeout})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(r.gw)
	t.Cleanup(r.srv.Close)
	return r
}

// setPolicy saves p as the workload's next version and loads it into the gateway.
func (r *shiftRig) setPolicy(t *testing.T, p store.Policy) store.Policy {
	t.Helper()
	p.Actor, p.ActorName, p.Reason, p.At = "cli", "test", "test", time.Now()
	saved, err := r.st.SavePolicy(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.policies.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return saved
}

// answer is what a client got.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// completion returns the answer as one chat.completion, reassembling a stream.
func (a answer) completion(t *testing.T) *openai.ChatCompletion {
	t.Helper()
	if !bytes.HasPrefix(a.body, []byte("data: ")) {
		var cc openai.ChatCompletion
		if err := json.Unmarshal(a.body, &cc); err != nil {
			t.Fatalf("answer is not a chat.completion: %v\n%s", err, a.body)
		}
		return &cc
	}
	sse := openai.NewSSEReader(bytes.NewReader(a.body))
	acc := openai.NewAccumulator()
	for {
		ev, err := sse.Next()
		if err != nil {
			t.Fatalf("stream without [DONE]: %v\n%s", err, a.body)
		}
		if openai.IsDone(ev) {
			return acc.Completion()
		}
		if _, err := acc.AddData(ev.Data); err != nil {
			t.Fatal(err)
		}
	}
}

// calls lists an answer's tool calls as name(arguments).
func (a answer) calls(t *testing.T) string {
	t.Helper()
	var out []string
	for _, ch := range a.completion(t).Choices {
		for _, tc := range ch.Message.ToolCalls {
			out = append(out, tc.Function.Name+tc.Function.Arguments)
		}
	}
	return strings.Join(out, " ")
}

// post sends a chat completion tagged with workload, as raw bytes, and reads the
// whole answer.
func (r *shiftRig) post(t *testing.T, workload, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.srv.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if workload != "" {
		req.Header.Set(HeaderWorkload, workload)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

const weatherTools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"}},"required":["city"]}}}]`

// requests are one request of each kind, streamed and not.
func shiftRequests() map[string]string {
	out := map[string]string{}
	for _, stream := range []bool{false, true} {
		s := fmt.Sprintf(`"stream":%t`, stream)
		suffix := map[bool]string{false: "", true: " stream"}[stream]
		out["tools"+suffix] = `{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Tokyo?"}],` + weatherTools + `,` + s + `}`
		out["json"+suffix] = `{"model":"gpt-4o","messages":[{"role":"user","content":"who, as json"}],"response_format":{"type":"json_object"},` + s + `}`
		out["text"+suffix] = `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}],` + s + `}`
	}
	return out
}

// otherAnswers is a candidate that answers every request differently from the
// reference, validly: another city, another name, other words.
func otherAnswers(req *openai.ChatRequest) (openai.Message, string) {
	msg, finish := scriptedAnswer(req)
	switch {
	case len(msg.ToolCalls) > 0:
		msg.ToolCalls = msg.ToolCalls[:1]
		msg.ToolCalls[0].Function.Arguments = `{"city":"Lyon"}`
	case strings.HasPrefix(msg.Content.String(), "{"):
		msg.Content = openai.TextContent(`{"name":"Grace","age":85}`)
	default:
		msg.Content = openai.TextContent("Greetings from the candidate model.")
	}
	return msg, finish
}

// byID returns the recorded calls by id, failing on a call recorded twice.
func byID(t *testing.T, calls []store.Call) map[string]store.Call {
	t.Helper()
	out := make(map[string]store.Call, len(calls))
	for _, c := range calls {
		if _, dup := out[c.ID]; dup {
			t.Fatalf("call %s recorded twice", c.ID)
		}
		out[c.ID] = c
	}
	return out
}

func TestShadowClientGetsTheReferenceAnswerByteForByte(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.cand.script = otherAnswers
	reqs := shiftRequests()

	// Observe first: what the reference's answers look like through the gateway.
	want := map[string]answer{}
	for name, body := range reqs {
		want[name] = r.post(t, "wx", body)
	}
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeShadow, Candidate: "small", ShadowShare: 1})
	for name, body := range reqs {
		got := r.post(t, "wx", body)
		if got.status != 200 || !bytes.Equal(got.body, want[name].body) {
			t.Errorf("%s: shadow answer differs from the reference's:\n got %d %s\nwant %d %s", name, got.status, got.body, want[name].status, want[name].body)
		}
		if got.header.Get(HeaderRoute) != "reference" || got.header.Get(HeaderModel) != "big" {
			t.Errorf("%s: route %q model %q", name, got.header.Get(HeaderRoute), got.header.Get(HeaderModel))
		}
		if bytes.Contains(got.body, []byte("candidate model")) || bytes.Contains(got.body, []byte("Lyon")) || bytes.Contains(got.body, []byte("Grace")) {
			t.Errorf("%s: the candidate's answer reached the client: %s", name, got.body)
		}
	}
	calls := byID(t, waitCalls(t, r.rec, 2*len(reqs)))
	shadowed := 0
	for _, c := range calls {
		if c.Mode == "" {
			if c.Second != nil {
				t.Errorf("observed call %s has a second answer", c.ID)
			}
			continue
		}
		shadowed++
		s := c.Second
		if c.Mode != store.ModeShadow || c.PolicyVersion != 1 || c.Candidate != "small" || c.Route != store.RouteReference {
			t.Errorf("shadowed call: mode %q version %d candidate %q route %q", c.Mode, c.PolicyVersion, c.Candidate, c.Route)
		}
		if s == nil || s.Kind != store.SecondShadow || s.Model != "small" || s.Status != 200 || !s.Compared {
			t.Fatalf("shadowed call %s: second answer %+v", c.ID, s)
		}
		if s.Pass || s.Agreement >= 1 {
			t.Errorf("shadowed call %s: a different answer scored agreement %.2f pass %v", c.ID, s.Agreement, s.Pass)
		}
		// 50 uncached at 0.1, 7 cached at 0.1 (no cached price), 13 at 0.4 ($/Mtok).
		if wantCost := (57*0.1 + 13*0.4) / 1e6; !near(s.CostUSD, wantCost) {
			t.Errorf("shadow cost %g, want %g", s.CostUSD, wantCost)
		}
		if c.ReferenceCostUSD != c.CostUSD || c.SavingsUSD() >= 0 {
			t.Errorf("shadowed call: reference cost %g, cost %g, savings %g: shadowing costs money", c.ReferenceCostUSD, c.CostUSD, c.SavingsUSD())
		}
	}
	if shadowed != len(reqs) {
		t.Errorf("%d calls shadowed, want %d", shadowed, len(reqs))
	}
	// The candidate was asked once per shadowed call, not streamed, under its own name.
	got := r.cand.received()
	if len(got) != len(reqs) {
		t.Fatalf("candidate received %d requests, want %d", len(got), len(reqs))
	}
	for _, b := range got {
		if !bytes.Contains(b, []byte(`"model":"small-upstream"`)) || bytes.Contains(b, []byte(`"stream"`)) {
			t.Errorf("shadow request: %s", b)
		}
	}
	st, ok := r.monitor.Status("wx")
	if !ok || st.AgreementResults != len(reqs) {
		t.Errorf("monitor status %+v (known %v), want %d agreement results", st, ok, len(reqs))
	}
}

func near(a, b float64) bool { d := a - b; return d < 1e-12 && d > -1e-12 }

// badToolCalls answers tool requests with a call to a tool the request does not offer,
// or with arguments that are not JSON, alternately; other requests as the reference.
func badToolCalls() func(req *openai.ChatRequest) (openai.Message, string) {
	var n atomic.Int64
	return func(req *openai.ChatRequest) (openai.Message, string) {
		msg, finish := scriptedAnswer(req)
		if len(msg.ToolCalls) > 0 {
			if n.Add(1)%2 == 1 {
				msg.ToolCalls[0].Function.Name = "drop_tables"
			} else {
				msg.ToolCalls[0].Function.Arguments = `{"city": "Par`
			}
		}
		return msg, finish
	}
}

func TestServeEscalatesMalformedToolCalls(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.cand.script = badToolCalls()
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1e-9})
	reqs := shiftRequests()
	n := 0
	for _, name := range []string{"tools", "tools stream", "tools", "tools stream"} {
		got := r.post(t, "wx", reqs[name])
		n++
		if got.status != 200 || got.header.Get(HeaderRoute) != "escalated" || got.header.Get(HeaderModel) != "big" {
			t.Fatalf("%s: status %d route %q model %q", name, got.status, got.header.Get(HeaderRoute), got.header.Get(HeaderModel))
		}
		if calls := got.calls(t); calls != `get_weather{"city":"Paris","unit":"celsius"} get_weather{"city":"Tokyo","unit":"celsius"}` {
			t.Errorf("%s: the client got %s, not the reference's calls", name, calls)
		}
	}
	calls := waitCalls(t, r.rec, n)
	for _, c := range calls {
		if c.Route != store.RouteEscalated || c.ServedModel != "big" || c.Status != 200 {
			t.Errorf("call %s: route %q served %q status %d", c.ID, c.Route, c.ServedModel, c.Status)
		}
		if c.Guard != "tool_known" && !strings.Contains(c.Guard, "json_valid") {
			t.Errorf("call %s: guard %q, want the failed check", c.ID, c.Guard)
		}
		s := c.Second
		if s == nil || s.Kind != store.SecondRejected || s.Model != "small" || s.Status != 200 || s.CostUSD <= 0 {
			t.Fatalf("call %s: rejected answer %+v", c.ID, s)
		}
		// The refused answer is kept, whole (a held stream reassembled), to show why.
		var refused openai.ChatCompletion
		if err := json.Unmarshal(s.Response, &refused); err != nil || len(refused.Choices) == 0 {
			t.Errorf("call %s: refused answer's body %q is not a chat.completion: %v", c.ID, s.Response, err)
		} else if tc := refused.Choices[0].Message.ToolCalls; len(tc) == 0 ||
			(tc[0].Function.Name != "drop_tables" && tc[0].Function.Arguments != `{"city": "Par`) {
			t.Errorf("call %s: refused answer's body %s is not the candidate's bad call", c.ID, s.Response)
		}
		checkUsageRecorded(t, withRoute(c, store.RouteReference)) // the reference's tokens and cost
		if c.ReferenceCostUSD != c.CostUSD || !near(c.SavingsUSD(), -s.CostUSD) {
			t.Errorf("call %s: savings %g, want minus the refused answer's cost %g", c.ID, c.SavingsUSD(), s.CostUSD)
		}
	}
	if st, _ := r.monitor.Status("wx"); st.GuardResults != n || st.GuardPass != 0 {
		t.Errorf("monitor guard window: %d results, pass rate %.2f; want %d, 0", st.GuardResults, st.GuardPass, n)
	}
}

func withRoute(c store.Call, r store.Route) store.Call { c.Route = r; return c }

func TestServeCandidateAnswersAndIsVerified(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1})
	reqs := shiftRequests()
	for name, body := range reqs {
		got := r.post(t, "wx", body)
		if got.status != 200 || got.header.Get(HeaderRoute) != "candidate" || got.header.Get(HeaderModel) != "small" {
			t.Fatalf("%s: status %d route %q model %q: %s", name, got.status, got.header.Get(HeaderRoute), got.header.Get(HeaderModel), got.body)
		}
		if strings.HasSuffix(name, "stream") && !bytes.HasSuffix(got.body, []byte("data: [DONE]\n\n")) {
			t.Errorf("%s: stream does not end with [DONE]: %s", name, got.body)
		}
		if strings.HasSuffix(name, "stream") && bytes.Contains(got.body, []byte(`"usage"`)) {
			t.Errorf("%s: the usage chunk the gateway asked for reached a client that did not: %s", name, got.body)
		}
	}
	calls := waitCalls(t, r.rec, len(reqs))
	// The reference's cost of the verification answer: 50 uncached at 2.5, 7 cached
	// at 1.25, 13 at 10 ($/Mtok).
	refCost := (50*2.5 + 7*1.25 + 13*10) / 1e6
	for _, c := range calls {
		if c.Route != store.RouteCandidate || c.ServedModel != "small" || c.Guard != store.GuardPass {
			t.Errorf("call %s: route %q served %q guard %q", c.ID, c.Route, c.ServedModel, c.Guard)
		}
		s := c.Second
		if s == nil || s.Kind != store.SecondVerify || s.Model != "big" || !s.Compared || s.Agreement != 1 || !s.Pass {
			t.Fatalf("call %s: verification %+v", c.ID, s)
		}
		if !near(c.ReferenceCostUSD, refCost) || c.ReferenceCostEstimated {
			t.Errorf("call %s: reference cost %g estimated %v, want the verification's %g", c.ID, c.ReferenceCostUSD, c.ReferenceCostEstimated, refCost)
		}
		if want := (57*0.1 + 13*0.4) / 1e6; !near(c.CostUSD, want) {
			t.Errorf("call %s: cost %g, want the candidate's %g", c.ID, c.CostUSD, want)
		}
	}
	st, _ := r.monitor.Status("wx")
	if st.GuardResults != len(reqs) || st.GuardPass != 1 || st.AgreementResults != len(reqs) || st.Agreement != 1 {
		t.Errorf("monitor status %+v", st)
	}
}

func TestServeWithoutVerificationEstimatesTheReferenceCost(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1e-9})
	r.post(t, "wx", shiftRequests()["text"])
	c := waitCalls(t, r.rec, 1)[0]
	// The reference's prices applied to the candidate's token counts.
	want := (50*2.5 + 7*1.25 + 13*10) / 1e6
	if c.Second != nil || !c.ReferenceCostEstimated || !near(c.ReferenceCostUSD, want) {
		t.Errorf("second %+v, reference cost %g estimated %v; want none, %g estimated", c.Second, c.ReferenceCostUSD, c.ReferenceCostEstimated, want)
	}
	if c.SavingsUSD() <= 0 {
		t.Errorf("savings %g", c.SavingsUSD())
	}
}

// refusals answers text requests with a refusal, others as the reference.
func refusals(req *openai.ChatRequest) (openai.Message, string) {
	msg, finish := scriptedAnswer(req)
	if len(msg.ToolCalls) == 0 && !strings.HasPrefix(msg.Content.String(), "{") {
		msg.Content = openai.TextContent("I can't help with that.")
	}
	return msg, finish
}

func TestFreeTextStreamIsPassedThroughAndJudgedAfter(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.cand.script = refusals
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1e-9})
	r.gw.shift.phrases = []string{"i can't help with that"}
	reqs := shiftRequests()

	// Not streamed: checked whole before the client sees it, so escalated.
	whole := r.post(t, "wx", reqs["text"])
	if whole.header.Get(HeaderRoute) != "escalated" || !bytes.Contains(whole.body, []byte("Hello there")) {
		t.Errorf("whole refusal: route %q body %s", whole.header.Get(HeaderRoute), whole.body)
	}
	// Streamed free text: passed through as it comes, judged once whole.
	stream := r.post(t, "wx", reqs["text stream"])
	if stream.header.Get(HeaderRoute) != "candidate" || stream.completion(t).Choices[0].Message.Content.String() != "I can't help with that." {
		t.Errorf("streamed refusal: route %q body %s", stream.header.Get(HeaderRoute), stream.body)
	}
	calls := waitCalls(t, r.rec, 2)
	guards := map[store.Route]string{}
	for _, c := range calls {
		guards[c.Route] = c.Guard
	}
	if guards[store.RouteEscalated] != "not_refusal" || guards[store.RouteCandidate] != "not_refusal" {
		t.Errorf("guard verdicts by route: %v", guards)
	}
}

func TestCandidateFailuresEscalateBeforeAnyByte(t *testing.T) {
	cases := map[string]func(w http.ResponseWriter, r *http.Request, body []byte) bool{
		"500": func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
			http.Error(w, `{"error":{"message":"boom","type":"server_error"}}`, 500)
			return true
		},
		"not a completion": func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"hello":`)
			return true
		},
		"error event first": func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, `data: {"error":{"message":"overloaded","type":"server_error"}}`+"\n\n")
			return true
		},
		"stream cut": func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}`+"\n\n")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		},
	}
	for name, handle := range cases {
		t.Run(name, func(t *testing.T) {
			r := newShiftRig(t, rigOptions{})
			r.cand.handle = handle
			r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1e-9})
			body, want := shiftRequests()["tools"], "Tokyo"
			switch name {
			case "stream cut":
				body = shiftRequests()["tools stream"]
			case "error event first": // free text, which is streamed through once it starts
				body, want = shiftRequests()["text stream"], "Hello there"
			}
			got := r.post(t, "wx", body)
			if got.status != 200 || got.header.Get(HeaderRoute) != "escalated" {
				t.Fatalf("status %d route %q body %s", got.status, got.header.Get(HeaderRoute), got.body)
			}
			if cc := got.completion(t); !strings.Contains(got.calls(t)+cc.Choices[0].Message.Content.String(), want) {
				t.Errorf("the client did not get the reference's answer: %s", got.body)
			}
			c := waitCalls(t, r.rec, 1)[0]
			if c.Guard != store.GuardUnanswered || c.Second == nil || c.Second.Kind != store.SecondRejected || c.Second.Error == "" {
				t.Errorf("guard %q second %+v", c.Guard, c.Second)
			}
			if strings.Contains(c.Second.Error, "boom") {
				t.Errorf("the upstream's error body reached the record: %q", c.Second.Error)
			}
			// What came instead of an answer is kept as the refused answer's body (a
			// payload: redacted and sealed like the others), for the operator to see.
			wantBody := map[string]string{"500": "", "not a completion": `{"hello":`,
				"error event first": `{"error":{"message":"overloaded","type":"server_error"}}`}
			if wb, ok := wantBody[name]; ok && string(c.Second.Response) != wb {
				t.Errorf("refused answer's body %q, want %q", c.Second.Response, wb)
			}
		})
	}
}

func TestDegradedCandidateRollsBackWithinTheWindow(t *testing.T) {
	const window = 20
	cases := []struct {
		name   string
		script func(req *openai.ChatRequest) (openai.Message, string)
		policy store.Policy
		reason string
	}{
		{"guards", badToolCalls(), store.Policy{MinGuardPass: 0.9, VerifyShare: 1e-9}, "guard pass rate"},
		{"agreement", otherAnswers, store.Policy{MinAgreement: 0.9, VerifyShare: 1}, "agreement"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newShiftRig(t, rigOptions{})
			r.cand.script = tc.script
			p := tc.policy
			p.Workload, p.Mode, p.Candidate, p.CanaryShare, p.Window = "wx", store.ModeServe, "small", 0.5, window
			r.setPolicy(t, p)
			body := shiftRequests()["tools"]
			for i := 0; i < window-1; i++ {
				r.post(t, "wx", body)
			}
			waitCalls(t, r.rec, window-1) // every result of the 19 calls is in
			if st, _ := r.monitor.Status("wx"); st.Stepping || st.Stepped {
				t.Fatalf("stepped after %d calls, before the window was full: %+v", window-1, st)
			}
			r.post(t, "wx", body)
			deadline := time.Now().Add(5 * time.Second)
			var h []store.Policy
			for time.Now().Before(deadline) {
				// Saved, and loaded by the gateway (SaveStep refreshes just after it saves).
				h, _ = r.st.PolicyHistory(context.Background(), "wx")
				if len(h) > 1 && r.policies.Snapshot().Decide("wx", 1).Version == 2 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if len(h) != 2 {
				t.Fatalf("no rollback after %d calls: %d versions", window, len(h))
			}
			back := h[0]
			if back.Mode != store.ModeCanary || !back.Automatic || back.Actor != policy.AutoActor || !strings.Contains(back.Reason, tc.reason) {
				t.Errorf("rollback: mode %q automatic %v actor %q reason %q", back.Mode, back.Automatic, back.Actor, back.Reason)
			}
			// The step took effect at once: calls are decided under canary now.
			if got := r.policies.Snapshot().Decide("wx", 1); got.Mode != store.ModeCanary || got.Version != 2 {
				t.Errorf("after the rollback the gateway decides %+v", got)
			}
			got := r.post(t, "wx", body)
			calls := waitCalls(t, r.rec, window+1)
			last := byID(t, calls)
			var after store.Call
			for _, c := range last {
				if c.ID > after.ID {
					after = c
				}
			}
			if after.PolicyVersion != 2 || after.Mode != store.ModeCanary {
				t.Errorf("the call after the rollback: version %d mode %q (route %s)", after.PolicyVersion, after.Mode, got.header.Get(HeaderRoute))
			}
		})
	}
}

func TestNoCallLostOrCountedTwice(t *testing.T) {
	r := newShiftRig(t, rigOptions{secondConcurrency: 256})
	var slow atomic.Bool
	slow.Store(true)
	r.cand.handle = func(_ http.ResponseWriter, _ *http.Request, _ []byte) bool {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond) // second answers outlive their client's request
		}
		return false
	}
	r.setPolicy(t, store.Policy{Workload: "shadowed", Mode: store.ModeShadow, Candidate: "small", ShadowShare: 1})
	r.setPolicy(t, store.Policy{Workload: "canaried", Mode: store.ModeCanary, Candidate: "small", CanaryShare: 0.5, VerifyShare: 1})
	r.setPolicy(t, store.Policy{Workload: "served", Mode: store.ModeServe, Candidate: "small", VerifyShare: 0.5})
	workloads := []string{"shadowed", "canaried", "served", "observed"}
	reqs := shiftRequests()
	var names []string
	for name := range reqs {
		names = append(names, name)
	}
	const total = 240
	var wg sync.WaitGroup
	var answered atomic.Int64
	jobs := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for i := range jobs {
				got := r.post(t, workloads[i%len(workloads)], reqs[names[i%len(names)]])
				if got.status == 200 {
					answered.Add(1)
				}
			}
		})
	}
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	// As a server shuts down: no new requests, then the second answers drain.
	r.srv.Close()
	if err := r.gw.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := r.rec.all()
	if int64(len(calls)) != answered.Load() || len(calls) != total {
		t.Fatalf("answered %d, recorded %d, sent %d", answered.Load(), len(calls), total)
	}
	seconds := 0
	canary := map[store.Route]int{}
	for _, c := range byID(t, calls) {
		if c.Workload == "canaried" {
			canary[c.Route]++
			if c.Route == store.RouteCandidate && (c.Second == nil || c.Second.Kind != store.SecondVerify) {
				t.Errorf("canary call answered by the candidate without its verification: %+v", c.Second)
			}
		}
		if c.Second != nil {
			seconds++
			if !c.Second.Compared {
				t.Errorf("call %s: second answer not compared: %+v", c.ID, c.Second)
			}
		}
	}
	// Half the canary's calls go to the candidate: 60 calls, so between 15 and 45 is
	// a binomial draw's 99.99% range.
	if n := canary[store.RouteCandidate]; n < 15 || n > 45 || canary[store.RouteReference] != total/4-n {
		t.Errorf("canary at 50%%: routes %v of %d calls", canary, total/4)
	}
	if seconds < total/4 {
		t.Errorf("only %d of %d calls have a second answer", seconds, total)
	}
}

func TestDrainCancelsSecondAnswersLeftAtTheDeadline(t *testing.T) {
	r := newShiftRig(t, rigOptions{secondTimeout: time.Minute})
	release := make(chan struct{})
	r.cand.handle = func(_ http.ResponseWriter, req *http.Request, _ []byte) bool {
		select {
		case <-release:
		case <-req.Context().Done():
		}
		return false
	}
	defer close(release)
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeShadow, Candidate: "small", ShadowShare: 1})
	for i := 0; i < 3; i++ {
		if got := r.post(t, "wx", shiftRequests()["text"]); got.status != 200 {
			t.Fatalf("status %d", got.status)
		}
	}
	// The client has its answer before its shadow starts: wait until all three hang.
	for deadline := time.Now().Add(5 * time.Second); len(r.cand.received()) < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("%d shadows started", len(r.cand.received()))
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.gw.Drain(ctx); err == nil {
		t.Fatal("Drain returned nil with second answers still hanging")
	}
	calls := r.rec.all()
	if len(calls) != 3 {
		t.Fatalf("recorded %d calls after Drain, want 3", len(calls))
	}
	for _, c := range calls {
		if c.Second == nil || c.Second.Compared || c.Second.Error != "canceled" {
			t.Errorf("call %s: second %+v, want canceled", c.ID, c.Second)
		}
	}
	// After Drain no second answer is asked for, and the call is still recorded.
	r2 := r.post(t, "wx", shiftRequests()["text"])
	if r2.status != 200 {
		t.Fatalf("status %d", r2.status)
	}
	c := waitCalls(t, r.rec, 4)
	if !strings.HasPrefix(latest(c).Second.Error, "skipped") {
		t.Errorf("second answer after Drain: %+v", latest(c).Second)
	}
}

func latest(calls []store.Call) store.Call {
	var out store.Call
	for _, c := range calls {
		if c.ID > out.ID {
			out = c
		}
	}
	return out
}

func TestSecondAnswersOverTheBoundAreSkipped(t *testing.T) {
	r := newShiftRig(t, rigOptions{secondConcurrency: 1})
	release := make(chan struct{})
	r.cand.handle = func(_ http.ResponseWriter, _ *http.Request, _ []byte) bool {
		<-release
		return false
	}
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeShadow, Candidate: "small", ShadowShare: 1})
	r.post(t, "wx", shiftRequests()["text"]) // takes the one slot, and holds it
	for deadline := time.Now().Add(5 * time.Second); len(r.cand.received()) < 1; {
		if time.Now().After(deadline) {
			t.Fatal("the first shadow never started")
		}
		time.Sleep(time.Millisecond)
	}
	r.post(t, "wx", shiftRequests()["text"])
	skipped := waitCalls(t, r.rec, 1)[0] // the second call, recorded at once
	if skipped.Second == nil || !strings.Contains(skipped.Second.Error, "too many") {
		t.Errorf("second answer over the bound: %+v", skipped.Second)
	}
	close(release)
	if err := r.gw.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := r.rec.all(); len(c) != 2 {
		t.Fatalf("recorded %d calls, want 2", len(c))
	}
}

func TestObserveAndUntouchedWorkloadsTakeThePathOfOld(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.setPolicy(t, store.Policy{Workload: "other", Mode: store.ModeServe, Candidate: "small"})
	r.setPolicy(t, store.Policy{Workload: "watched", Mode: store.ModeObserve, Candidate: "small"})
	for _, w := range []string{"", "watched", "untagged-but-named"} {
		got := r.post(t, w, shiftRequests()["tools"])
		if got.header.Get(HeaderRoute) != "reference" {
			t.Errorf("workload %q: route %q", w, got.header.Get(HeaderRoute))
		}
	}
	if n := len(r.cand.received()); n != 0 {
		t.Errorf("the candidate got %d requests", n)
	}
	calls := waitCalls(t, r.rec, 3)
	for _, c := range calls {
		if c.Second != nil || c.Guard != "" || c.ReferenceCostUSD != c.CostUSD {
			t.Errorf("call %q: %+v", c.Workload, c)
		}
		if c.Workload == "watched" && (c.Mode != store.ModeObserve || c.PolicyVersion != 1) {
			t.Errorf("observed call: mode %q version %d", c.Mode, c.PolicyVersion)
		}
	}
}

func TestVerificationWithoutUsageKeepsTheEstimate(t *testing.T) {
	r := newShiftRig(t, rigOptions{})
	r.ref.handle = func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"x","object":"chat.completion","created":1,"model":"big-upstream","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}]}`)
		return true
	}
	r.setPolicy(t, store.Policy{Workload: "wx", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1})
	r.post(t, "wx", shiftRequests()["text"])
	c := waitCalls(t, r.rec, 1)[0]
	want := (50*2.5 + 7*1.25 + 13*10) / 1e6 // the reference's prices on the candidate's tokens
	if c.Second == nil || !c.Second.Compared || c.Second.CostUSD != 0 {
		t.Fatalf("verification %+v", c.Second)
	}
	if !c.ReferenceCostEstimated || !near(c.ReferenceCostUSD, want) {
		t.Errorf("reference cost %g estimated %v, want the estimate %g", c.ReferenceCostUSD, c.ReferenceCostEstimated, want)
	}
}

// writeBody answers every request with body, as a whole chat.completion.
func writeBody(body string) func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
		return true
	}
}

func TestSecondAnswerBodyIsRecordedAsReceived(t *testing.T) {
	// Spacing and key order no encoder would produce, so that a body re-encoded from
	// the decoded answer would not match.
	const candBody = "{ \"id\":\"chatcmpl-cand\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"small-upstream\",\n" +
		"  \"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"message\":{\"content\":\"Greetings from the candidate, in its own words.\",\"role\":\"assistant\"}}],\n" +
		"  \"usage\":{\"prompt_tokens\":57,\"completion_tokens\":13,\"total_tokens\":70} }\n"
	const refBody = "{\"id\":\"chatcmpl-ref\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"big-upstream\"," +
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"The reference, verifying.\"},\"finish_reason\":\"stop\"}]," +
		"\"usage\":{\"prompt_tokens\":57,\"completion_tokens\":13,\"total_tokens\":70}}"
	cases := []struct {
		name      string
		policy    store.Policy
		cand, ref func(w http.ResponseWriter, r *http.Request, body []byte) bool
		request   string
		kind      string
		want      string // the second answer's body; "" for none
	}{
		{name: "shadow", policy: store.Policy{Mode: store.ModeShadow, ShadowShare: 1},
			cand: writeBody(candBody), request: "text", kind: store.SecondShadow, want: candBody},
		{name: "shadow of a stream", policy: store.Policy{Mode: store.ModeShadow, ShadowShare: 1},
			cand: writeBody(candBody), request: "tools stream", kind: store.SecondShadow, want: candBody},
		{name: "verification", policy: store.Policy{Mode: store.ModeServe, VerifyShare: 1},
			ref: writeBody(refBody), request: "text", kind: store.SecondVerify, want: refBody},
		{name: "shadow failed", policy: store.Policy{Mode: store.ModeShadow, ShadowShare: 1},
			cand: func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
				http.Error(w, `{"error":{"message":"boom","type":"server_error"}}`, 500)
				return true
			}, request: "text", kind: store.SecondShadow},
		{name: "shadow not a completion", policy: store.Policy{Mode: store.ModeShadow, ShadowShare: 1},
			cand: writeBody(`{"id":"x","choices":[`), request: "text", kind: store.SecondShadow},
		{name: "verification failed", policy: store.Policy{Mode: store.ModeServe, VerifyShare: 1},
			ref: func(w http.ResponseWriter, _ *http.Request, _ []byte) bool {
				http.Error(w, `{"error":{"message":"boom","type":"server_error"}}`, 503)
				return true
			}, request: "text", kind: store.SecondVerify},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newShiftRig(t, rigOptions{})
			r.cand.handle, r.ref.handle = tc.cand, tc.ref
			p := tc.policy
			p.Workload, p.Candidate = "wx", "small"
			r.setPolicy(t, p)
			got := r.post(t, "wx", shiftRequests()[tc.request])
			if got.status != 200 {
				t.Fatalf("status %d: %s", got.status, got.body)
			}
			c := waitCalls(t, r.rec, 1)[0]
			s := c.Second
			if s == nil || s.Kind != tc.kind {
				t.Fatalf("second answer %+v, want kind %s", s, tc.kind)
			}
			if string(s.Response) != tc.want {
				t.Errorf("second answer's body:\n got %q\nwant %q", s.Response, tc.want)
			}
			if tc.want == "" {
				if s.Response != nil || s.Error == "" {
					t.Errorf("no answer came, yet body %q, error %q", s.Response, s.Error)
				}
				return
			}
			if !s.Compared || s.Status != 200 {
				t.Errorf("second answer not compared: %+v", s)
			}
			if bytes.Equal(c.Response, s.Response) || bytes.Contains(c.Response, []byte(tc.want)) {
				t.Errorf("the call's own response is the second answer's: %s", c.Response)
			}
		})
	}
}
