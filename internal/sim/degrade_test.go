package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// candidateOutcome is one candidate answer to one recorded conversation.
type candidateOutcome struct {
	degraded string // the X-Downshift-Degraded header
	failed   bool   // compare scores it below the reference
	msg      openai.Message
}

// fails reports whether compare takes cand for a different answer than ref.
func fails(ref, cand *openai.Message, tools []openai.Tool) bool {
	s := compare.Answer(ref, cand, compare.Request{Tools: tools})
	if s.Tools != nil {
		return !s.Tools.Pass
	}
	return s.Agreement < 1
}

// askCandidates sends every distinct tau-bench conversation (every nth, for n > 1)
// to each candidate and scores the answers against the recorded reference answer.
func askCandidates(t *testing.T, opts Options, models []string, every int) map[string][]candidateOutcome {
	t.Helper()
	opts.Calls = bundledCalls(t)
	opts.Sleep = noSleep
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[key]bool{}
	out := map[string][]candidateOutcome{}
	for i := range opts.Calls {
		c := opts.Calls[i] // a copy: its model is replaced below
		k := conversationKey(c.Request.Messages)
		if c.Dataset != "taubench-airline" || seen[k] {
			continue
		}
		seen[k] = true
		if every > 1 && len(seen)%every != 0 {
			continue
		}
		ref := c.Answers[0].Message
		if fails(&ref, &ref, c.Request.Tools) {
			t.Fatalf("call %s: the reference fails against itself", c.ID)
		}
		for _, m := range models {
			c.Request.Model = m
			body, err := c.RequestJSON()
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body)))
			if rec.Code != http.StatusOK {
				t.Fatalf("call %s, model %s: %d %s", c.ID, m, rec.Code, rec.Body)
			}
			var cc openai.ChatCompletion
			if err := json.Unmarshal(rec.Body.Bytes(), &cc); err != nil {
				t.Fatal(err)
			}
			h := rec.Header()
			o := candidateOutcome{degraded: h.Get(HeaderDegraded), msg: cc.Choices[0].Message}
			o.failed = fails(&ref, &o.msg, c.Request.Tools)
			checkCandidateMarked(t, h, cc.Simulated, c.Answers[0].Model, MatchExact)
			out[m] = append(out[m], o)
		}
	}
	return out
}

// checkCandidateMarked fails unless a candidate's reply, degraded or not, is marked
// simulated in its headers and body (simulated) and names the recorded answer it was
// made from and how it was found, without claiming to be a replay.
func checkCandidateMarked(t testing.TB, h http.Header, simulated bool, replayedModel, match string) {
	t.Helper()
	if h.Get(HeaderSimulated) != "true" || !simulated || h.Get(HeaderReplayed) != "" ||
		h.Get(HeaderReplayedModel) != replayedModel || h.Get(HeaderReplayedMatch) != match {
		t.Fatalf("candidate reply (body simulated %v) not marked simulated from %s's answer, matched %s: %v",
			simulated, replayedModel, match, h)
	}
}

func TestCandidatesFailAtTheirRate(t *testing.T) {
	rates := map[string]float64{"candidate-20": 0.2, "candidate-05": 0.05}
	opts := Options{Seed: 7, Candidates: map[string]Degrade{}}
	var models []string
	for m, r := range rates {
		opts.Candidates[m] = Degrade{Rate: r}
		models = append(models, m)
	}
	got := askCandidates(t, opts, models, 1)
	again := askCandidates(t, opts, models, 1)
	for _, m := range models {
		outs := got[m]
		failed, kinds := 0, map[string]int{}
		for i, o := range outs {
			if o.failed != (o.degraded != "") {
				t.Fatalf("%s answer %d: degraded %q but failed %v: %+v", m, i, o.degraded, o.failed, o.msg)
			}
			if o.failed {
				failed++
				kinds[o.degraded]++
			}
			if !reflect.DeepEqual(o, again[m][i]) {
				t.Fatalf("%s answer %d differs between runs", m, i)
			}
		}
		share := float64(failed) / float64(len(outs))
		t.Logf("%s: rate %.2f, %d of %d answers fail (%.4f); kinds %v", m, rates[m], failed, len(outs), share, kinds)
		if math.Abs(share-rates[m]) > 0.03 {
			t.Errorf("%s: measured failure share %.4f, want %.2f ± 0.03", m, share, rates[m])
		}
	}
	// Different candidates degrade different calls.
	both := 0
	for i := range got["candidate-20"] {
		if got["candidate-20"][i].failed && got["candidate-05"][i].failed {
			both++
		}
	}
	if n := len(got["candidate-20"]); float64(both)/float64(n) > 0.05*0.2+0.01 {
		t.Errorf("%d of %d calls degraded by both candidates: draws are not independent", both, n)
	}
}

func TestCandidateKindsAreFailures(t *testing.T) {
	for _, kind := range degradeKinds {
		t.Run(kind, func(t *testing.T) {
			opts := Options{Candidates: map[string]Degrade{"c": {Rate: 1, Kinds: []string{kind}}}}
			outs := askCandidates(t, opts, []string{"c"}, 5)["c"]
			used := 0
			for i, o := range outs {
				if !o.failed {
					t.Fatalf("answer %d degraded %q does not fail: %+v", i, o.degraded, o.msg)
				}
				if o.degraded == kind {
					used++
				}
				for _, tc := range o.msg.ToolCalls {
					if !json.Valid([]byte(tc.Function.Arguments)) {
						t.Fatalf("answer %d: arguments %q are not JSON", i, tc.Function.Arguments)
					}
				}
			}
			if used == 0 {
				t.Errorf("no answer was degraded by %s", kind)
			}
		})
	}
}

func TestDegradeKinds(t *testing.T) {
	tools := []openai.Tool{{Type: "function", Function: openai.FunctionDecl{Name: "weather"}},
		{Type: "function", Function: openai.FunctionDecl{Name: "book"}}}
	call := parallelCall().Answers[0].Message
	text := openai.Message{Role: "assistant", Content: openai.TextContent("one two three four five six")}
	for _, tc := range []struct {
		kind   string
		msg    openai.Message
		check  func(openai.Message) bool
		finish string
	}{
		{DegradeWrongTool, call, func(m openai.Message) bool {
			return len(m.ToolCalls) == 2 && (m.ToolCalls[0].Function.Name == "book") != (m.ToolCalls[1].Function.Name == "book")
		}, "tool_calls"},
		{DegradeWrongArgument, call, func(m openai.Message) bool {
			return len(m.ToolCalls) == 2 && (m.ToolCalls[0].Function.Arguments != call.ToolCalls[0].Function.Arguments) !=
				(m.ToolCalls[1].Function.Arguments != call.ToolCalls[1].Function.Arguments)
		}, "tool_calls"},
		{DegradeDropCall, call, func(m openai.Message) bool {
			return len(m.ToolCalls) == 1 && m.ToolCalls[0].ID == "call_P"
		}, "tool_calls"},
		{DegradeTextForTool, call, func(m openai.Message) bool {
			return len(m.ToolCalls) == 0 && strings.Contains(m.Content.String(), "weather")
		}, "stop"},
		{DegradeToolForText, text, func(m openai.Message) bool { return len(m.ToolCalls) == 1 }, "tool_calls"},
		{DegradeTruncateText, text, func(m openai.Message) bool { return m.Content.String() == "one two three" }, "stop"},
		{DegradeTruncateText, call, func(m openai.Message) bool { return len(m.ToolCalls) == 0 }, "stop"}, // falls back to text_for_tool
		{DegradeBrokenArguments, call, func(m openai.Message) bool {
			return len(m.ToolCalls) == 2 && json.Valid([]byte(m.ToolCalls[0].Function.Arguments)) != json.Valid([]byte(m.ToolCalls[1].Function.Arguments))
		}, "tool_calls"},
		{DegradeUnknownTool, call, func(m openai.Message) bool {
			return len(m.ToolCalls) == 2 && strings.HasSuffix(m.ToolCalls[0].Function.Name, "_v2") != strings.HasSuffix(m.ToolCalls[1].Function.Name, "_v2")
		}, "tool_calls"},
		{DegradeUnknownTool, text, func(m openai.Message) bool { return m.Content.String() == "one two three" }, "stop"}, // falls back to truncate_text
	} {
		t.Run(tc.kind, func(t *testing.T) {
			before := parallelCall().Answers[0].Message
			got, finish, _ := degrade(tc.msg, tools, []string{tc.kind}, 12345)
			if !tc.check(got) || finish != tc.finish {
				t.Errorf("degraded %+v finish %s", got, finish)
			}
			if !reflect.DeepEqual(call, before) {
				t.Errorf("the recorded answer was changed: %+v", call)
			}
		})
	}
}

func TestCandidateStreams(t *testing.T) {
	calls := []dataset.Call{parallelCall()}
	for _, rate := range []float64{0, 1} {
		_, ts := start(t, Options{Calls: calls, Candidates: map[string]Degrade{"small": {Rate: rate, Kinds: []string{DegradeDropCall}}}})
		resp := post(t, ts, "/v1/chat/completions", []byte(strings.Replace(strings.Replace(parallelRequest, "%s", "", 1), `"gpt-4o"`, `"small"`, 1)))
		res := readStream(t, resp)
		if !res.done {
			t.Fatalf("rate %v: no [DONE]: %v", rate, res.err)
		}
		msg := res.acc.Completion().Choices[0].Message
		for _, c := range res.chunks {
			if !c.Simulated || c.Model != "small" {
				t.Fatalf("rate %v: chunk %+v", rate, c)
			}
		}
		checkCandidateMarked(t, resp.Header, res.acc.Completion().Simulated, "gpt-4o", MatchExact)
		want, degraded := 2, ""
		if rate == 1 {
			want, degraded = 1, DegradeDropCall
		}
		if got := resp.Header.Get(HeaderDegraded); got != degraded {
			t.Errorf("rate %v: degraded %q, want %q", rate, got, degraded)
		}
		if len(msg.ToolCalls) != want {
			t.Errorf("rate %v: %d tool calls, want %d", rate, len(msg.ToolCalls), want)
		}
	}
}

func TestCandidateOptionsAreChecked(t *testing.T) {
	for name, d := range map[string]Degrade{
		"rate above one": {Rate: 1.5},
		"negative rate":  {Rate: -0.1},
		"NaN rate":       {Rate: math.NaN()},
		"unknown kind":   {Rate: 0.1, Kinds: []string{"hallucinate"}},
	} {
		if _, err := New(Options{Candidates: map[string]Degrade{"c": d}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Options{Candidates: map[string]Degrade{" ": {}}}); err == nil {
		t.Error("empty name: accepted")
	}
}
