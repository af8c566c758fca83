package tune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	goldenSystem   = "You are the billing agent. Look up <accounts> & refunds; never guess."
	goldenWorkload = "wl-billing"
)

var (
	goldenNow   = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	goldenTools = []any{
		toolDef("lookup_account", "Look up an account.", `{"type":"object","properties":{"account_id":{"type":"string"}},"required":["account_id"]}`),
		toolDef("refund", "Refund an amount to an account.", `{"type":"object","properties":{"account_id":{"type":"string"},"amount":{"type":"number"}},"required":["account_id","amount"]}`),
	}
)

func toolDef(name, desc, params string) map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{"name": name, "description": desc, "parameters": json.RawMessage(params)}}
}

func chatMsg(role, content string) map[string]any {
	return map[string]any{"role": role, "content": content}
}

func toolResult(id, content string) map[string]any {
	m := map[string]any{"role": "tool", "content": content}
	if id != "" {
		m["tool_call_id"] = id
	}
	return m
}

func callMsg(content any, cs ...[3]string) map[string]any {
	var tcs []any
	for _, c := range cs {
		tc := map[string]any{"type": "function", "function": map[string]any{"name": c[1], "arguments": c[2]}}
		if c[0] != "" {
			tc["id"] = c[0]
		}
		tcs = append(tcs, tc)
	}
	return map[string]any{"role": "assistant", "content": content, "tool_calls": tcs}
}

// goldenCall is one recorded call of the golden workload.
type goldenCall struct {
	id     string
	msgs   []any
	tools  bool
	extra  map[string]any // more request fields
	answer map[string]any
	finish string
	status int
	route  store.Route
	truth  bool
}

func (f goldenCall) call(t *testing.T) store.Call {
	t.Helper()
	req := map[string]any{"model": "gpt-4o", "messages": f.msgs}
	if f.tools {
		req["tools"] = goldenTools
	}
	for k, v := range f.extra {
		req[k] = v
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	c := store.Call{ID: f.id, StartedAt: goldenNow, FinishedAt: goldenNow.Add(time.Second), RequestedModel: "gpt-4o",
		ServedModel: "gpt-4o", Route: store.RouteReference, Status: 200, WorkloadID: goldenWorkload, Request: reqJSON}
	if f.route != "" {
		c.Route = f.route
	}
	if f.truth {
		c.GroundTruth, c.RequestedModel, c.ServedModel, c.Source = true, "ground-truth", "bfcl/simple", store.SourceBFCL
	}
	if f.status != 0 {
		c.Status = f.status
		c.Response = []byte(`{"error":{"message":"upstream failed","type":"server_error"}}`)
		return c
	}
	finish := f.finish
	if finish == "" {
		finish = "stop"
	}
	resp := map[string]any{"id": "chatcmpl-" + f.id, "object": "chat.completion", "created": 1, "model": c.ServedModel,
		"choices": []any{map[string]any{"index": 0, "message": f.answer, "finish_reason": finish}}}
	if c.Response, err = json.Marshal(resp); err != nil {
		t.Fatal(err)
	}
	return c
}

// goldenCalls is a small workload that meets every rule of the export once: each
// filter, the splits of a saved eval set, calls recorded after it, ground truth,
// developer messages, tool calls without ids, parallel calls and their results.
func goldenCalls() []goldenCall {
	long := strings.Repeat("account history line ", 400)
	return []goldenCall{
		// In the eval set.
		{id: "c01", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "What does plan Pro cost?")}, tools: true,
			answer: chatMsg("assistant", "Pro costs $20 a month.")},
		{id: "c02", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Refund my last charge on account A-1")}, tools: true,
			extra:  map[string]any{"parallel_tool_calls": false},
			answer: callMsg(nil, [3]string{"call_a", "lookup_account", `{"account_id":"A-1"}`})},
		{id: "c03", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Check account B-2")}, tools: true,
			answer: callMsg(nil, [3]string{"call_b", "lookup_account", `{"account_id": "B-2"}`})},
		{id: "c05", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Cancel account C-3")}, tools: true, route: store.RouteEscalated,
			answer: chatMsg("assistant", "Account C-3 is cancelled.")},
		{id: "c06", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Write a long poem about refunds")}, tools: true, finish: "length",
			answer: chatMsg("assistant", "Refunds, oh refunds, you")},
		{id: "c10", msgs: []any{chatMsg("system", goldenSystem), map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "What is on this receipt?"},
			map[string]any{"type": "image_url", "image_url": map[string]any{"url": "https://example.com/r.png"}}}}},
			tools: true, answer: chatMsg("assistant", "A charge of $20.")},
		{id: "c11", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Summarise: "+long)}, tools: true,
			answer: chatMsg("assistant", "A long history.")},
		// Recorded after the set was drawn, or never eligible for it.
		{id: "c04", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Hello?")}, tools: true, status: 502},
		{id: "c07", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "What does plan Pro cost?")}, tools: true,
			answer: chatMsg("assistant", "Pro costs $20 a month.")},
		{id: "c08", msgs: []any{chatMsg("user", "Refund 5 to D-4")}, tools: true, truth: true,
			answer: callMsg(nil, [3]string{"call_gt0", "refund", `{"account_id":"D-4","amount":5}`})},
		{id: "c09", msgs: []any{chatMsg("user", "Tell me a joke")}, tools: true, truth: true, answer: chatMsg("assistant", "")},
		{id: "c12", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Refund my last charge on account A-1"),
			callMsg(nil, [3]string{"call_a", "lookup_account", `{"account_id":"A-1"}`}),
			toolResult("call_a", `{"balance":0,"last_charge":20}`)}, tools: true,
			answer: callMsg(nil, [3]string{"call_c", "refund", `{"account_id":"A-1","amount":20}`})},
		{id: "c13", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Check account B-2"),
			callMsg(nil, [3]string{"call_b", "lookup_account", `{"account_id": "B-2"}`}),
			toolResult("call_b", `{"status":"active"}`)}, tools: true,
			answer: chatMsg("assistant", "Account B-2 is active.")},
		{id: "c14", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Check account B-2")}, tools: true,
			answer: callMsg(nil, [3]string{"call_x", "lookup_account", `{"account_id":"B-2"}`})},
		{id: "c15", msgs: []any{chatMsg("developer", "Be brief."), chatMsg("user", "Look up E-5 and F-6"),
			callMsg("", [3]string{"", "lookup_account", `{"account_id":"E-5"}`}, [3]string{"", "lookup_account", `{"account_id":"F-6"}`}),
			toolResult("", `{"status":"open"}`), toolResult("", `{"status":"closed"}`)}, tools: true,
			answer: callMsg("E-5 is open; refunding it.", [3]string{"", "refund", `{"account_id":"E-5","amount":3}`})},
		{id: "c16", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Hi"), chatMsg("assistant", "Hello, how can I help?"),
			chatMsg("user", "Look up G-7"), callMsg(nil, [3]string{"call_g", "lookup_account", `{"account_id":"G-7"}`}),
			toolResult("call_g", `{"status":"open"}`), chatMsg("user", "thanks, and H-8?")}, tools: true,
			answer: callMsg(nil, [3]string{"call_h", "lookup_account", `{"account_id":"H-8"}`})},
		{id: "c17", msgs: []any{chatMsg("system", goldenSystem), chatMsg("user", "Look up I-9")}, tools: true,
			answer: callMsg(nil, [3]string{"call_i", "lookup_account", `account I-9`})},
	}
}

// goldenSet is the eval set saved for the golden goldenWorkload, as if eval had drawn it.
var goldenSet = store.EvalSet{ID: "es_golden", WorkloadID: goldenWorkload, CreatedAt: goldenNow.Add(-time.Hour), Members: []store.EvalMember{
	{CallID: "c01", Split: store.SplitTrain, Stratum: "text"},
	{CallID: "c05", Split: store.SplitTrain, Stratum: "text"},
	{CallID: "c06", Split: store.SplitTrain, Stratum: "text"},
	{CallID: "c10", Split: store.SplitTrain, Stratum: "text"},
	{CallID: "c11", Split: store.SplitTrain, Stratum: "text"},
	{CallID: "c02", Split: store.SplitValidation, Stratum: "lookup_account"},
	{CallID: "c03", Split: store.SplitTest, Stratum: "lookup_account"},
}}

// newGoldenStore stores the golden workload's calls, sealed under kr when it is
// enabled, and its eval set when withSet.
func newGoldenStore(t *testing.T, kr *seal.Keyring, withSet bool) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tune.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var cs []store.Call
	for _, f := range goldenCalls() {
		c := f.call(t)
		if kr.Enabled() {
			if err := kr.SealCall(&c); err != nil {
				t.Fatal(err)
			}
		}
		cs = append(cs, c)
	}
	ctx := context.Background()
	if err := st.InsertCalls(ctx, cs); err != nil {
		t.Fatal(err)
	}
	assign := map[string]string{}
	for _, c := range cs {
		assign[c.ID] = goldenWorkload
	}
	if err := st.SaveWorkloads(ctx, store.WorkloadRun{ID: "run1", At: goldenNow}, []store.Workload{{ID: goldenWorkload, Label: "billing", Calls: len(cs)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.AssignWorkloads(ctx, assign); err != nil {
		t.Fatal(err)
	}
	if withSet {
		if err := st.SaveEvalSet(ctx, goldenSet); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func goldenOptions(st store.Store, f Format, dir string) Options {
	return Options{Store: st, WorkloadID: goldenWorkload, WorkloadLabel: "billing", Format: f, Dir: dir, MaxTokens: 1000,
		Now: goldenNow, ActorName: "tester"}
}

// TestExportMatchesGoldenFiles exports the golden workload in every format and
// compares the files and the manifest with testdata/golden/FORMAT (go test -update
// rewrites them).
func TestExportMatchesGoldenFiles(t *testing.T) {
	for _, f := range Formats() {
		t.Run(string(f), func(t *testing.T) {
			st := newGoldenStore(t, nil, true)
			dir := t.TempDir()
			m, err := Export(context.Background(), goldenOptions(st, f, dir))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", string(f))
			for _, name := range []string{FileTrain, FileValidation, FileEval, FileManifest} {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(golden, name)
				if *update {
					if err := os.MkdirAll(golden, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update to write the golden files)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
				}
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 4 {
				t.Errorf("%d entries in the directory, want the 4 files (temporary files left?)", len(entries))
			}
			if m.EvalSetID != goldenSet.ID || m.EvalSetDrawn {
				t.Errorf("eval set %q drawn %v, want the saved %s reused", m.EvalSetID, m.EvalSetDrawn, goldenSet.ID)
			}
		})
	}
}

// TestExportSplitsAndFilters checks where every golden call went, in each format:
// the set's splits, calls recorded later by their conversation, and each filter.
func TestExportSplitsAndFilters(t *testing.T) {
	wantFiles := map[string][]string{
		store.SplitTrain:      {"c01", "c08", "c15", "c16"},
		store.SplitValidation: {"c02", "c12"},
		store.SplitTest:       {"c03"},
	}
	wantFilters := map[string]int{FilterFailed: 1, FilterEscalated: 1, FilterNoAnswer: 1, FilterTruncated: 1,
		FilterDuplicate: 2, FilterTestThread: 1, FilterUnconverted: 2, FilterTokenBudget: 1}
	for _, f := range Formats() {
		t.Run(string(f), func(t *testing.T) {
			m, err := Export(context.Background(), goldenOptions(newGoldenStore(t, nil, true), f, t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			files, filters := cloneMap(wantFiles), cloneMap(wantFilters)
			if f == FormatShareGPT {
				// c16's tool result is followed by a user message: the turns cannot alternate.
				files[store.SplitTrain] = []string{"c01", "c08", "c15"}
				filters[FilterUnconverted] = 3
			}
			for split, ids := range files {
				if got := m.File(split).CallIDs; !slices.Equal(got, ids) {
					t.Errorf("%s: calls %v, want %v", split, got, ids)
				}
			}
			for _, fc := range m.Filters {
				if fc.Calls != filters[fc.Name] {
					t.Errorf("filter %s left out %d calls, want %d", fc.Name, fc.Calls, filters[fc.Name])
				}
			}
			if m.Calls != len(goldenCalls()) || m.LeftOut()+len(m.File(store.SplitTrain).CallIDs)+3 != m.Calls {
				t.Errorf("calls %d, left out %d: every call must be in one file or one filter", m.Calls, m.LeftOut())
			}
			if m.File(store.SplitTest).SetMembers != 1 || m.File(store.SplitTrain).SetMembers != 5 {
				t.Errorf("set members: %+v", m.Files)
			}
			if !slices.Equal(m.Tools, []string{"lookup_account", "refund"}) {
				t.Errorf("tools %v", m.Tools)
			}
		})
	}
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestExportKeepsTestCallsOutOfTraining checks, on the golden goldenWorkload, that no test
// call reaches train or validation: not itself, not as a copy under another id (c14),
// and not through a later turn of its conversation (c13).
func TestExportKeepsTestCallsOutOfTraining(t *testing.T) {
	st := newGoldenStore(t, nil, true)
	dir := t.TempDir()
	m, err := Export(context.Background(), goldenOptions(st, FormatOpenAI, dir))
	if err != nil {
		t.Fatal(err)
	}
	assertNoTestInTraining(t, st, m, dir)
}

// assertNoTestInTraining checks an export against its eval set: no test call, copy of
// one, or call of a test conversation in train or validation, by id and by content.
func assertNoTestInTraining(t *testing.T, st store.Store, m *Manifest, dir string) {
	t.Helper()
	ctx := context.Background()
	set, err := st.GetEvalSet(ctx, m.EvalSetID)
	if err != nil {
		t.Fatal(err)
	}
	test := map[string]bool{}
	keys, groups := map[string]bool{}, map[string]bool{}
	for _, mb := range set.Members {
		if mb.Split != store.SplitTest {
			continue
		}
		test[mb.CallID] = true
		ec := prepared(t, st, mb.CallID)
		keys[eval.DedupKey(ec)], groups[ec.Group] = true, true
	}
	if len(test) == 0 {
		t.Fatal("the eval set has no test calls")
	}
	for _, split := range []string{store.SplitTrain, store.SplitValidation} {
		f := m.File(split)
		for _, id := range f.CallIDs {
			ec := prepared(t, st, id)
			switch {
			case test[id]:
				t.Errorf("test call %s is in %s", id, f.Path)
			case keys[eval.DedupKey(ec)]:
				t.Errorf("call %s in %s is a copy of a test call", id, f.Path)
			case groups[ec.Group]:
				t.Errorf("call %s in %s is in a test call's conversation", id, f.Path)
			}
		}
		// The file itself holds no line of eval.jsonl.
		train, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		evalLines, err := os.ReadFile(filepath.Join(dir, FileEval))
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(string(train), "\n") {
			lines[l] = l != ""
		}
		for _, l := range strings.Split(string(evalLines), "\n") {
			if lines[l] {
				t.Errorf("%s holds a line of %s", f.Path, FileEval)
			}
		}
	}
	if got := m.File(store.SplitTest).CallIDs; len(got) == 0 {
		t.Error("eval.jsonl is empty")
	}
}

func prepared(t *testing.T, st store.Store, id string) *eval.Call {
	t.Helper()
	c, err := st.GetCall(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c.GroundTruth = false
	ec, err := eval.FromStoreCall(&c)
	if err != nil {
		t.Fatal(err)
	}
	return ec
}

// TestExportDrawsAndSavesAnEvalSet exports a workload with no eval set: Export draws
// one as eval would and saves it, and a second export reuses it and writes the same
// files.
func TestExportDrawsAndSavesAnEvalSet(t *testing.T) {
	st := newGoldenStore(t, nil, false)
	var logs []string
	o := goldenOptions(st, FormatOpenAI, t.TempDir())
	o.Logf = func(format string, args ...any) { logs = append(logs, format) }
	first, err := Export(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !first.EvalSetDrawn || first.EvalSetID == "" {
		t.Fatalf("eval set %q drawn %v: want one drawn", first.EvalSetID, first.EvalSetDrawn)
	}
	saved, err := st.LatestEvalSet(context.Background(), goldenWorkload)
	if err != nil || saved.ID != first.EvalSetID {
		t.Fatalf("latest eval set %q (%v), want %s saved", saved.ID, err, first.EvalSetID)
	}
	// eval's own draw on the same calls gives the same members: export drew as eval does.
	var evaluable []*eval.Call
	for _, f := range goldenCalls() {
		if f.status != 0 || f.truth {
			continue
		}
		evaluable = append(evaluable, prepared(t, st, f.id))
	}
	want, _, err := eval.DrawSet("x", goldenWorkload, evaluable, eval.SetOptions{}, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(saved.Members, want.Members) {
		t.Errorf("members %v, want eval's draw %v", saved.Members, want.Members)
	}
	assertNoTestInTraining(t, st, first, o.Dir)

	o2 := o
	o2.Dir = t.TempDir()
	second, err := Export(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	if second.EvalSetDrawn || second.EvalSetID != first.EvalSetID {
		t.Errorf("second export: set %q drawn %v, want %s reused", second.EvalSetID, second.EvalSetDrawn, first.EvalSetID)
	}
	for i := range first.Files {
		if first.Files[i].SHA256 != second.Files[i].SHA256 {
			t.Errorf("%s differs between two exports of the same store", first.Files[i].Path)
		}
	}
}

// TestExportWritesAnAuditEntry checks the trail: one export entry naming the
// goldenWorkload, format, counts and directory, and nothing of the payloads.
func TestExportWritesAnAuditEntry(t *testing.T) {
	st := newGoldenStore(t, nil, true)
	dir := t.TempDir()
	if _, err := Export(context.Background(), goldenOptions(st, FormatNeMo, dir)); err != nil {
		t.Fatal(err)
	}
	es, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditExport})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 {
		t.Fatalf("%d export entries, want 1", len(es))
	}
	e := es[0]
	if e.Actor != "cli" || e.ActorName != "tester" || e.Target != goldenWorkload {
		t.Errorf("entry %+v", e)
	}
	for _, want := range []string{"nemo", dir, "es_golden", "train.jsonl 4", "validation.jsonl 2", "eval.jsonl 1", "10 of 17 calls left out"} {
		if !strings.Contains(e.Detail, want) {
			t.Errorf("detail %q lacks %q", e.Detail, want)
		}
	}
	for _, secret := range []string{"A-1", "Pro costs", "billing agent"} {
		if strings.Contains(e.Detail, secret) {
			t.Errorf("detail %q holds payload text %q", e.Detail, secret)
		}
	}
}

// TestExportOpensSealedCalls exports a store sealed at rest: with the key, the files
// are the plaintext export's, byte for byte; without it, the export fails naming the
// key and writes nothing.
func TestExportOpensSealedCalls(t *testing.T) {
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.NewKeyring(config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", Env: "TUNE_TEST_KEY"}}},
		func(string) string { return key })
	if err != nil {
		t.Fatal(err)
	}
	st := newGoldenStore(t, kr, true)
	raw, err := st.GetCall(context.Background(), "c01")
	if err != nil {
		t.Fatal(err)
	}
	if raw.KeyID != "k1" || bytes.Contains(raw.Request, []byte("Pro")) {
		t.Fatal("the goldenCall is not sealed")
	}

	dir := t.TempDir()
	o := goldenOptions(st, FormatOpenAI, dir)
	o.Keyring = kr
	if _, err := Export(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{FileTrain, FileValidation, FileEval} {
		got, _ := os.ReadFile(filepath.Join(dir, name))
		want, _ := os.ReadFile(filepath.Join("testdata", "golden", string(FormatOpenAI), name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s of the sealed store differs from the plaintext golden file", name)
		}
	}

	empty := t.TempDir()
	o = goldenOptions(st, FormatOpenAI, empty)
	_, err = Export(context.Background(), o)
	if !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("export without the key: %v, want an error naming key k1", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("export without the key left %d files", len(entries))
	}
}

// TestExportLeavesNoFilesWhenTheAuditFails: an export the trail cannot record leaves
// nothing on disk.
func TestExportLeavesNoFilesWhenTheAuditFails(t *testing.T) {
	st := failingAudit{newGoldenStore(t, nil, true)}
	dir := t.TempDir()
	_, err := Export(context.Background(), goldenOptions(st, FormatOpenAI, dir))
	if err == nil || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("err %v, want the audit failure", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d files left after the audit failed", len(entries))
	}
}

type failingAudit struct{ store.Store }

func (failingAudit) AppendAudit(context.Context, store.AuditEntry) error {
	return errors.New("audit log unavailable")
}

func TestExportRefusesBadOptions(t *testing.T) {
	st := newGoldenStore(t, nil, true)
	cases := map[string]Options{
		"no store":       {WorkloadID: goldenWorkload, Dir: t.TempDir()},
		"no workload":    {Store: st, Dir: t.TempDir()},
		"no dir":         {Store: st, WorkloadID: goldenWorkload},
		"unknown format": {Store: st, WorkloadID: goldenWorkload, Dir: t.TempDir(), Format: "alpaca"},
		"empty workload": {Store: st, WorkloadID: "wl-none", Dir: t.TempDir()},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Export(context.Background(), o); err == nil {
				t.Error("no error")
			}
		})
	}
}
