package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/examples"
	"github.com/downshift-dev/downshift/internal/openai"
)

const tinyTraj = `[{"task_id": 7, "trial": 2, "reward": 1.0,
 "info": {"task": {"user_id": "u1", "instruction": "fly", "actions": [{"name": "get_user_details", "kwargs": {"user_id": "u1"}}], "outputs": []}, "extra": 1},
 "traj": [
  {"role": "system", "content": "policy"},
  {"role": "user", "content": "hi, I am u1"},
  {"content": null, "role": "assistant", "tool_calls": [
     {"function": {"arguments": "{\"user_id\":\"u1\"}", "name": "get_user_details"}, "id": "call_A", "type": "function"},
     {"function": {"arguments": "{}", "name": "list_all_airports"}, "id": "call_B", "type": "function"}]},
  {"role": "tool", "tool_call_id": "call_A", "name": "get_user_details", "content": "{\"name\": \"U\"}"},
  {"role": "tool", "tool_call_id": "call_B", "name": "list_all_airports", "content": "[]"},
  {"content": "Hello U <b>&</b>", "role": "assistant"},
  {"role": "user", "content": "bye"}
 ]}]`

const tinyTools = `[{"type": "function", "function": {"name": "get_user_details", "description": "d",
  "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}, "required": ["user_id"]}}},
 {"type": "function", "function": {"name": "list_all_airports", "parameters": {"type": "object", "properties": {}}}}]`

func TestTauCallsOnePerAssistantTurn(t *testing.T) {
	tau, err := ReadTau("airline", strings.NewReader(tinyTraj), strings.NewReader(tinyTools))
	if err != nil {
		t.Fatal(err)
	}
	if got := tau.Trajectories[0].Info.Task.Actions[0].Name; got != "get_user_details" {
		t.Errorf("task action = %q", got)
	}
	calls, err := TauCalls(tau)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 {
		t.Fatalf("got %d calls, want 2", len(calls))
	}
	tests := []struct {
		id          string
		nMessages   int
		finish      string
		content     string
		contentNull bool
		toolCallIDs []string
		lastReqRole string
		lastReqText string
	}{
		{"taubench-airline/7/2/2", 2, "tool_calls", "", true, []string{"call_A", "call_B"}, "user", "hi, I am u1"},
		{"taubench-airline/7/2/5", 5, "stop", "Hello U <b>&</b>", false, nil, "tool", "[]"},
	}
	for i, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			c := calls[i]
			if c.ID != tc.id || c.Dataset != "taubench-airline" || c.Request.Model != ModelGPT4o {
				t.Errorf("call = %s %s %s", c.ID, c.Dataset, c.Request.Model)
			}
			if len(c.Request.Messages) != tc.nMessages {
				t.Fatalf("request has %d messages, want %d", len(c.Request.Messages), tc.nMessages)
			}
			last := c.Request.Messages[tc.nMessages-1]
			if last.Role != tc.lastReqRole || last.Content.String() != tc.lastReqText {
				t.Errorf("last request message = %s %q", last.Role, last.Content.String())
			}
			if len(c.Request.Tools) != 2 || c.Request.Tools[0].Function.Name != "get_user_details" {
				t.Errorf("tools = %+v", c.Request.Tools)
			}
			if len(c.Answers) != 1 {
				t.Fatalf("answers = %d", len(c.Answers))
			}
			a := c.Answers[0]
			if a.Model != ModelGPT4o || a.FinishReason != tc.finish || a.Correct != nil {
				t.Errorf("answer = %s %s %v", a.Model, a.FinishReason, a.Correct)
			}
			if a.Message.Content.IsNull != tc.contentNull || a.Message.Content.String() != tc.content {
				t.Errorf("answer content = %+v", a.Message.Content)
			}
			var ids []string
			for _, tc := range a.Message.ToolCalls {
				ids = append(ids, tc.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.toolCallIDs, ",") {
				t.Errorf("tool call ids = %v, want %v", ids, tc.toolCallIDs)
			}
			body, err := c.RequestJSON()
			if err != nil {
				t.Fatal(err)
			}
			var req struct {
				Model    string            `json:"model"`
				Messages []json.RawMessage `json:"messages"`
				Tools    []openai.Tool     `json:"tools"`
			}
			if err := json.Unmarshal(body, &req); err != nil {
				t.Fatalf("request body is not JSON: %v\n%s", err, body)
			}
			if req.Model != ModelGPT4o || len(req.Messages) != tc.nMessages || len(req.Tools) != 2 {
				t.Errorf("request body = model %q, %d messages, %d tools", req.Model, len(req.Messages), len(req.Tools))
			}
		})
	}
	if got := calls[0].Answers[0].Message.ToolCalls[0].Function.Arguments; got != `{"user_id":"u1"}` {
		t.Errorf("arguments = %s", got)
	}
}

func TestTauCallsRejectLeadingAssistant(t *testing.T) {
	tau, err := ReadTau("airline", strings.NewReader(`[{"traj":[{"role":"assistant","content":"x"}]}]`), strings.NewReader(tinyTools))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TauCalls(tau); !errors.Is(err, errLeadingAssistant) {
		t.Fatalf("err = %v, want errLeadingAssistant", err)
	}
}

func TestReadTauRejectsBadInput(t *testing.T) {
	for name, in := range map[string][2]string{
		"trajectories not an array": {`{"traj": []}`, tinyTools},
		"tools not a list":          {tinyTraj, `{"type": "function"}`},
		"truncated gzip":            {string(gzipBytes(t, tinyTraj)[:20]), tinyTools},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadTau("airline", strings.NewReader(in[0]), strings.NewReader(in[1])); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestReadTauAcceptsGzip(t *testing.T) {
	tau, err := ReadTau("airline", bytes.NewReader(gzipBytes(t, tinyTraj)), strings.NewReader(tinyTools))
	if err != nil {
		t.Fatal(err)
	}
	if len(tau.Trajectories) != 1 || len(tau.Trajectories[0].Traj) != 7 {
		t.Fatalf("trajectories = %+v", tau.Trajectories)
	}
}

func TestBundledTauHasAllRecordedTurns(t *testing.T) {
	tau, err := BundledTau()
	if err != nil {
		t.Fatal(err)
	}
	if len(tau.Trajectories) != 200 {
		t.Errorf("trajectories = %d, want 200", len(tau.Trajectories))
	}
	calls, err := TauCalls(tau)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2454 {
		t.Errorf("calls = %d, want 2454", len(calls))
	}
	withTools := 0
	for _, c := range calls {
		if c.Request.Messages[0].Role != "system" || !strings.HasPrefix(c.Request.Messages[0].Content.String(), "# Airline Agent Policy") {
			t.Fatalf("%s: first message is not the airline policy", c.ID)
		}
		if len(c.Request.Tools) != 14 {
			t.Fatalf("%s: %d tools, want 14", c.ID, len(c.Request.Tools))
		}
		if len(c.Answers[0].Message.ToolCalls) > 0 {
			withTools++
		}
	}
	if withTools != 1164 {
		t.Errorf("answers with tool calls = %d, want 1164", withTools)
	}
}

func TestGSM8KCallsCarryBothModels(t *testing.T) {
	calls, err := GSM8KCalls([]GSM8KRow{{Prompt: "2+2?", GPT4Answer: "4", GPT4Correct: true, MixtralAnswer: " 5", MixtralCorrect: false}})
	if err != nil {
		t.Fatal(err)
	}
	c := calls[0]
	if c.ID != "gsm8k/0" || len(c.Request.Messages) != 1 || c.Request.Messages[0].Content.String() != "2+2?" {
		t.Fatalf("call = %+v", c)
	}
	for _, tc := range []struct {
		model, text string
		correct     bool
	}{{ModelGPT4, "4", true}, {ModelMixtral, " 5", false}} {
		a, ok := c.Answer(tc.model)
		if !ok || a.Message.Content.String() != tc.text || a.Correct == nil || *a.Correct != tc.correct || a.Message.Role != "assistant" {
			t.Errorf("%s: answer = %+v, ok %v", tc.model, a, ok)
		}
	}
	if _, ok := c.Answer("gpt-4o"); ok {
		t.Error("answer for a model that never answered")
	}
	body, err := c.RequestJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model":"gpt-4-1106-preview","messages":[{"role":"user","content":"2+2?"}]}`; string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
}

func TestReadGSM8KCSV(t *testing.T) {
	in := "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1_response,gpt-4-1106-preview_response\n" +
		"\"Q, one\",False,True,\"m\nline two\",g\n"
	rows, err := ReadGSM8KCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := GSM8KRow{Prompt: "Q, one", GPT4Answer: "g", GPT4Correct: true, MixtralAnswer: "m\nline two", MixtralCorrect: false}
	if len(rows) != 1 || rows[0] != want {
		t.Fatalf("rows = %+v, want %+v", rows, want)
	}
	bad := strings.Replace(in, "False", "maybe", 1)
	if _, err := ReadGSM8KCSV(strings.NewReader(bad)); err == nil {
		t.Error("bad boolean accepted")
	}
	if _, err := ReadGSM8KCSV(strings.NewReader("prompt,x\n")); err == nil {
		t.Error("missing columns accepted")
	}
}

func TestBundledGSM8K(t *testing.T) {
	rows, err := BundledGSM8K()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != BundleGSM8KRows {
		t.Fatalf("rows = %d, want %d", len(rows), BundleGSM8KRows)
	}
	if !strings.HasPrefix(rows[0].Prompt, "Janet’s ducks lay 16 eggs") || !strings.Contains(rows[0].GPT4Answer, "$18") {
		t.Errorf("first row = %+v", rows[0])
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Prompt == "" || r.GPT4Answer == "" || r.MixtralAnswer == "" {
			t.Fatalf("empty field in %+v", r)
		}
		if seen[r.Prompt] {
			t.Fatalf("duplicate prompt %q", r.Prompt)
		}
		seen[r.Prompt] = true
	}
}

func TestBundledCalls(t *testing.T) {
	calls, err := BundledCalls(NameGSM8K, NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != BundleGSM8KRows+2454 || calls[0].Dataset != "gsm8k" || calls[len(calls)-1].Dataset != "taubench-airline" {
		t.Fatalf("got %d calls", len(calls))
	}
	if _, err := BundledCalls("bfcl"); err == nil {
		t.Error("unknown dataset accepted")
	}
}

// TestBundleMatchesUpstream regenerates the bundle from $DOWNSHIFT_DATA and checks it
// holds the same data as the files committed in examples/.
func TestBundleMatchesUpstream(t *testing.T) {
	dir := os.Getenv("DOWNSHIFT_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("full datasets not found at %s (set DOWNSHIFT_DATA): %v", dir, err)
	}
	bundles, err := MakeBundles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundles) != 5 {
		t.Errorf("bundles = %d, want 5", len(bundles))
	}
	for _, b := range bundles {
		t.Run(b.Path, func(t *testing.T) {
			committed, err := os.ReadFile(filepath.Join("..", "..", "examples", filepath.FromSlash(b.Path)))
			if err != nil {
				t.Fatal(err)
			}
			got, want := gunzipIfGz(t, b.Path, b.Data), gunzipIfGz(t, b.Path, committed)
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from a regenerated bundle; run go run ./internal/dataset/cmd/bundle", b.Path)
			}
		})
	}
	if _, err := fs.Stat(examples.FS(), BundledTauTools); err != nil {
		t.Error(err)
	}
}

func gzipBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gunzipIfGz(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	if !strings.HasSuffix(name, ".gz") {
		return b
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
