package tune

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// tauStore imports the bundled tau-bench calls into a new SQLite store and makes one
// workload per reference action (the tool called, or text), as the eval tests do, so
// that every imported call is in a workload. It returns the workload ids.
func tauStore(t *testing.T) (store.Store, []string) {
	t.Helper()
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	if raceEnabled {
		calls = calls[:600] // whole conversations but the last; see raceEnabled
	}
	var imported []store.Call
	im := dataset.Importer{Call: func(c store.Call) error { imported = append(imported, c); return nil }}
	if err := im.TauBench(calls); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tau.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.ImportCalls(ctx, imported); err != nil {
		t.Fatal(err)
	}
	assign := map[string]string{}
	sizes := map[string]int{}
	for _, c := range imported {
		var resp openai.ChatCompletion
		if err := json.Unmarshal(c.Response, &resp); err != nil || len(resp.Choices) == 0 {
			t.Fatalf("call %s: %v", c.ID, err)
		}
		id := "wl-" + eval.Stratum(&resp.Choices[0].Message)
		assign[c.ID] = id
		sizes[id]++
	}
	var ws []store.Workload
	for id, n := range sizes {
		ws = append(ws, store.Workload{ID: id, Label: strings.TrimPrefix(id, "wl-"), Calls: n})
	}
	slices.SortFunc(ws, func(a, b store.Workload) int { return strings.Compare(a.ID, b.ID) })
	if err := st.SaveWorkloads(ctx, store.WorkloadRun{ID: "run1", At: time.Now()}, ws); err != nil {
		t.Fatal(err)
	}
	if err := st.AssignWorkloads(ctx, assign); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	return st, ids
}

// TestExportTauBench exports every tau-bench workload in the OpenAI format and checks
// every line of every file against the fine-tuning format's rules, that no test call
// reached train or validation, and that every call is accounted for; then it exports
// the largest workloads as ShareGPT and NeMo and checks each line's structure.
func TestExportTauBench(t *testing.T) {
	if testing.Short() {
		t.Skip("exports the whole tau-bench bundle")
	}
	st, workloads := tauStore(t)
	t.Run("openai", func(t *testing.T) {
		total, lines := 0, 0
		for _, w := range workloads {
			dir := t.TempDir()
			m, err := Export(context.Background(), Options{Store: st, WorkloadID: w, Format: FormatOpenAI, Dir: dir})
			if err != nil {
				t.Fatalf("%s: %v", w, err)
			}
			n := m.LeftOut()
			for _, f := range m.Files {
				n += f.Lines
				lines += f.Lines
				checkOpenAIFile(t, filepath.Join(dir, f.Path), f.Lines)
			}
			if n != m.Calls {
				t.Errorf("%s: %d calls read, %d in files or filters", w, m.Calls, n)
			}
			if m.EvalSetID != "" {
				assertNoTestInTraining(t, st, m, dir)
			}
			total += m.Calls
			t.Logf("%s: %d calls: train %d, validation %d, eval %d; left out %s", w, m.Calls,
				m.File(store.SplitTrain).Lines, m.File(store.SplitValidation).Lines, m.File(store.SplitTest).Lines, leftOut(m))
		}
		minCalls := 2000
		if raceEnabled {
			minCalls = 500
		}
		if total < minCalls || lines < total*3/4 {
			t.Errorf("%d calls exported as %d lines: the bundle has about 2,450 calls, most of them under the budget", total, lines)
		}
	})
	for _, f := range []Format{FormatShareGPT, FormatNeMo} {
		check := checkShareGPTLine
		if f == FormatNeMo {
			check = checkNeMoLine
		}
		t.Run(string(f), func(t *testing.T) {
			for _, w := range []string{"wl-text", "wl-get_reservation_details"} {
				dir := t.TempDir()
				m, err := Export(context.Background(), Options{Store: st, WorkloadID: w, Format: f, Dir: dir})
				if err != nil {
					t.Fatal(err)
				}
				for _, file := range m.Files {
					if n := eachLine(t, filepath.Join(dir, file.Path), func(where string, line []byte) {
						if err := check(line); err != nil {
							t.Errorf("%s: %v", where, err)
						}
					}); n != file.Lines || n == 0 {
						t.Errorf("%s: %d lines, manifest says %d", file.Path, n, file.Lines)
					}
				}
				t.Logf("%s: train %d, validation %d, eval %d; left out %s", w,
					m.File(store.SplitTrain).Lines, m.File(store.SplitValidation).Lines, m.File(store.SplitTest).Lines, leftOut(m))
			}
		})
	}
}

func leftOut(m *Manifest) string {
	var parts []string
	for _, f := range m.Filters {
		if f.Calls > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f.Name, f.Calls))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func eachLine(t *testing.T, path string, check func(where string, line []byte)) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	n := 0
	for sc.Scan() {
		n++
		check(fmt.Sprintf("%s:%d", filepath.Base(path), n), sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func checkOpenAIFile(t *testing.T, path string, want int) {
	t.Helper()
	n := eachLine(t, path, func(where string, line []byte) {
		if err := checkOpenAILine(line); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	})
	if n != want {
		t.Errorf("%s: %d lines, manifest says %d", path, n, want)
	}
}

var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// checkOpenAILine checks one line against the rules of OpenAI's chat fine-tuning
// format (supervised method): a JSON object with messages, tools and
// parallel_tool_calls only; roles system, user, assistant and tool with their own
// fields; content strings (null only beside an assistant's tool calls); tool calls
// with an id, type "function", a valid function name and arguments that are a string
// holding a JSON object; tool messages answering an earlier call of the line; tools
// declared, as functions, whenever a call is made, each call naming one; the target,
// last, an assistant message that is trained on.
func checkOpenAILine(line []byte) error {
	var ex map[string]json.RawMessage
	if err := strictDecode(line, &ex); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	for k := range ex {
		if k != "messages" && k != "tools" && k != "parallel_tool_calls" {
			return fmt.Errorf("unknown key %q", k)
		}
	}
	if p, ok := ex["parallel_tool_calls"]; ok && string(p) != "true" && string(p) != "false" {
		return fmt.Errorf("parallel_tool_calls %s is not a boolean", p)
	}
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(ex["messages"], &msgs); err != nil || len(msgs) < 2 {
		return fmt.Errorf("messages: want an array of at least two messages (%v)", err)
	}
	allowed := map[string][]string{
		"system":    {"role", "content", "name"},
		"user":      {"role", "content", "name"},
		"assistant": {"role", "content", "name", "tool_calls", "weight"},
		"tool":      {"role", "content", "tool_call_id"},
	}
	callIDs := map[string]bool{}
	var called []string
	for i, m := range msgs {
		var role string
		if err := json.Unmarshal(m["role"], &role); err != nil || allowed[role] == nil {
			return fmt.Errorf("message %d: role %s", i, m["role"])
		}
		for k := range m {
			if !slices.Contains(allowed[role], k) {
				return fmt.Errorf("message %d (%s): key %q is not allowed", i, role, k)
			}
		}
		raw, ok := m["content"]
		var content *string
		if !ok || json.Unmarshal(raw, &content) != nil {
			return fmt.Errorf("message %d (%s): content %s is neither a string nor null", i, role, raw)
		}
		if w, ok := m["weight"]; ok && string(w) != "0" && string(w) != "1" {
			return fmt.Errorf("message %d: weight %s, want 0 or 1", i, w)
		}
		switch role {
		case "assistant":
			var tcs []struct {
				ID       *string `json:"id"`
				Type     *string `json:"type"`
				Function *struct {
					Name      *string `json:"name"`
					Arguments *string `json:"arguments"`
				} `json:"function"`
			}
			if raw, ok := m["tool_calls"]; ok {
				if err := json.Unmarshal(raw, &tcs); err != nil || len(tcs) == 0 {
					return fmt.Errorf("message %d: tool_calls must be a non-empty array (%v)", i, err)
				}
			}
			if len(tcs) == 0 && (content == nil || strings.TrimSpace(*content) == "") {
				return fmt.Errorf("message %d: an assistant message needs content or tool calls", i)
			}
			for j, tc := range tcs {
				switch {
				case tc.ID == nil || *tc.ID == "":
					return fmt.Errorf("message %d call %d: no id", i, j)
				case callIDs[*tc.ID]:
					return fmt.Errorf("message %d call %d: id %s used twice", i, j, *tc.ID)
				case tc.Type == nil || *tc.Type != "function":
					return fmt.Errorf("message %d call %d: type must be \"function\"", i, j)
				case tc.Function == nil || tc.Function.Name == nil || !functionName.MatchString(*tc.Function.Name):
					return fmt.Errorf("message %d call %d: function name", i, j)
				case tc.Function.Arguments == nil:
					return fmt.Errorf("message %d call %d: arguments must be a string", i, j)
				}
				var args map[string]any
				if err := json.Unmarshal([]byte(*tc.Function.Arguments), &args); err != nil || args == nil {
					return fmt.Errorf("message %d call %d: arguments %q are not a JSON object", i, j, *tc.Function.Arguments)
				}
				callIDs[*tc.ID] = true
				called = append(called, *tc.Function.Name)
			}
		case "tool":
			var id string
			if err := json.Unmarshal(m["tool_call_id"], &id); err != nil || !callIDs[id] {
				return fmt.Errorf("message %d: tool_call_id %s answers no earlier tool call", i, m["tool_call_id"])
			}
			if content == nil {
				return fmt.Errorf("message %d: a tool message needs string content", i)
			}
		default:
			if content == nil {
				return fmt.Errorf("message %d: a %s message needs string content", i, role)
			}
		}
	}
	last := msgs[len(msgs)-1]
	if string(last["role"]) != `"assistant"` {
		return fmt.Errorf("the last message is %s, not the assistant's target", last["role"])
	}
	if w, ok := last["weight"]; ok && string(w) != "1" {
		return errors.New("the target has weight 0: nothing would be trained")
	}
	var tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if raw, ok := ex["tools"]; ok {
		if err := json.Unmarshal(raw, &tools); err != nil || len(tools) == 0 {
			return fmt.Errorf("tools must be a non-empty array (%v)", err)
		}
	}
	declared := map[string]bool{}
	for i, tl := range tools {
		if tl.Type != "function" || !functionName.MatchString(tl.Function.Name) {
			return fmt.Errorf("tool %d: want type function and a valid name", i)
		}
		if len(tl.Function.Parameters) > 0 && !bytes.HasPrefix(bytes.TrimSpace(tl.Function.Parameters), []byte("{")) {
			return fmt.Errorf("tool %d: parameters are not a JSON Schema object", i)
		}
		declared[tl.Function.Name] = true
	}
	if len(called) > 0 && len(tools) == 0 {
		return errors.New("tool calls without tools on the line")
	}
	for _, name := range called {
		if !declared[name] {
			return fmt.Errorf("a call of %s, which the line's tools do not declare", name)
		}
	}
	return nil
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

// checkShareGPTLine checks LLaMA-Factory's rules for ShareGPT lines: an optional
// system turn first, then human or observation turns at odd positions and gpt or
// function_call turns at even ones, an even number of them; function_call values the
// JSON of calls with object arguments; tools a JSON string of functions.
func checkShareGPTLine(line []byte) error {
	var ex struct {
		Conversations []struct {
			From  *string `json:"from"`
			Value *string `json:"value"`
		} `json:"conversations"`
		Tools *string `json:"tools"`
	}
	if err := strictDecode(line, &ex); err != nil {
		return err
	}
	turns := ex.Conversations
	if len(turns) > 0 && turns[0].From != nil && *turns[0].From == "system" {
		turns = turns[1:]
	}
	if len(turns) == 0 || len(turns)%2 != 0 {
		return fmt.Errorf("%d turns after the system prompt, want an even number", len(turns))
	}
	for i, tn := range turns {
		if tn.From == nil || tn.Value == nil {
			return fmt.Errorf("turn %d: from and value must be strings", i)
		}
		odd := *tn.From == "human" || *tn.From == "observation"
		even := *tn.From == "gpt" || *tn.From == "function_call"
		if (i%2 == 0 && !odd) || (i%2 == 1 && !even) {
			return fmt.Errorf("turn %d: %s out of order", i, *tn.From)
		}
		if *tn.From == "function_call" {
			v := strings.TrimSpace(*tn.Value)
			if !strings.HasPrefix(v, "[") {
				v = "[" + v + "]"
			}
			var calls []struct {
				Name      string         `json:"name"`
				Arguments map[string]any `json:"arguments"`
			}
			if err := json.Unmarshal([]byte(v), &calls); err != nil || len(calls) == 0 || calls[0].Name == "" || calls[0].Arguments == nil {
				return fmt.Errorf("turn %d: function_call value %q: %v", i, *tn.Value, err)
			}
			if ex.Tools == nil {
				return fmt.Errorf("turn %d: a function call without tools", i)
			}
		}
	}
	if ex.Tools != nil {
		var fns []struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(*ex.Tools), &fns); err != nil || len(fns) == 0 || fns[0].Name == "" {
			return fmt.Errorf("tools is not a JSON string of functions: %v", err)
		}
	}
	return nil
}

// checkNeMoLine checks a NeMo Customizer line: messages with string content, the
// assistant's last, tool calls with object arguments, tools whenever calls are made.
func checkNeMoLine(line []byte) error {
	var ex struct {
		Messages []struct {
			Role      string  `json:"role"`
			Content   *string `json:"content"`
			ToolCalls []struct {
				Type     string `json:"type"`
				Function struct {
					Name      string         `json:"name"`
					Arguments map[string]any `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools []json.RawMessage `json:"tools"`
	}
	if err := strictDecode(line, &ex); err != nil {
		return err
	}
	if len(ex.Messages) < 2 || ex.Messages[len(ex.Messages)-1].Role != "assistant" {
		return errors.New("want messages ending with the assistant's")
	}
	for i, m := range ex.Messages {
		if m.Content == nil {
			return fmt.Errorf("message %d: content must be a string", i)
		}
		for j, tc := range m.ToolCalls {
			if tc.Type != "function" || tc.Function.Name == "" || tc.Function.Arguments == nil {
				return fmt.Errorf("message %d call %d: want a function with object arguments", i, j)
			}
			if len(ex.Tools) == 0 {
				return fmt.Errorf("message %d: a tool call without tools", i)
			}
		}
	}
	return nil
}
