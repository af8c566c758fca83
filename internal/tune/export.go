package tune

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
)

// Files Export writes into its directory.
const (
	FileTrain      = "train.jsonl"      // the eval set's train split
	FileValidation = "validation.jsonl" // its validation split
	FileEval       = "eval.jsonl"       // its test split, for evaluation elsewhere
	FileManifest   = "manifest.json"
)

// DefaultMaxTokens is the token budget of one example when Options.MaxTokens is 0.
const DefaultMaxTokens = 8192

// Filters: why a workload's call is not in any file. Every call is counted under the
// first that applies, in this order.
const (
	FilterFailed      = "failed"            // the call failed (status >= 400, or no response)
	FilterEscalated   = "escalated"         // a candidate's answer was escalated to the reference
	FilterNoAnswer    = "no_chat_answer"    // no chat answer to train on (see Options)
	FilterTruncated   = "truncated"         // the answer was cut at the token limit (finish_reason "length")
	FilterDuplicate   = "duplicate"         // a copy of an earlier call, or of a call of the eval set
	FilterTestThread  = "test_conversation" // recorded after the set was drawn, in a conversation held out for test
	FilterUnconverted = "unconvertible"     // the format cannot carry it (images, other roles, malformed tool calls)
	FilterTokenBudget = "over_token_budget" // prompt and answer together exceed MaxTokens
)

var filterRules = []FilterCount{
	{Name: FilterFailed, Rule: "status >= 400 or no response"},
	{Name: FilterEscalated, Rule: "route escalated"},
	{Name: FilterNoAnswer, Rule: "no chat answer: the response has no choice, or one with neither text nor tool calls (as ground truth meaning 'call nothing' has)"},
	{Name: FilterTruncated, Rule: `finish_reason "length"`},
	{Name: FilterDuplicate, Rule: "same messages, tools and answer as an eval-set call or an earlier call (eval.DedupKey)"},
	{Name: FilterTestThread, Rule: "not in the eval set, and in a conversation whose calls are held out for test"},
	{Name: FilterUnconverted, Rule: "the format cannot carry it: non-text content, other roles, tool-call arguments that are not a JSON object, tool results answering no call, turns the format cannot order"},
	{Name: FilterTokenBudget, Rule: "prompt and answer over max_tokens (o200k_base)"},
}

// Options configure Export.
type Options struct {
	Store store.Store
	// Keyring opens calls sealed at rest; nil opens none, and a sealed call fails the
	// export with an error wrapping seal.ErrUnknownKey.
	Keyring *seal.Keyring
	// WorkloadID is the workload exported (store.Call.WorkloadID); required.
	WorkloadID string
	// WorkloadLabel names the workload in the manifest; optional.
	WorkloadLabel string
	// Format of the files. Default FormatOpenAI.
	Format Format
	// Dir is the directory the files are written to, created if need be; required.
	// Files of the same names are replaced.
	Dir string
	// MaxTokens is the budget of one example, prompt and answer together, counted
	// with the o200k_base tokenizer. 0 means DefaultMaxTokens; negative, no budget.
	MaxTokens int
	// Set says how the workload's eval set is drawn when it has none: Export draws
	// and saves one exactly as `downshift eval` would (eval.DrawSet), so evaluation
	// later replays the test split that export left out. The zero value is eval's
	// defaults.
	Set eval.SetOptions
	// Actor, ActorName and Remote say who exports, for the audit trail (store.AuditEntry).
	// Actor defaults to "cli".
	Actor, ActorName, Remote string
	// Now stamps the manifest and a newly drawn set. Default time.Now().
	Now time.Time
	// Progress, when set, is told how many of the workload's calls are done, of total.
	Progress func(done, total int)
	// Logf, when set, is told what Export decides (set drawn or reused).
	Logf func(format string, args ...any)
}

// Manifest describes an export: where each file's lines came from and what was left
// out. It is written as manifest.json next to the files.
type Manifest struct {
	Workload      string `json:"workload"`
	WorkloadLabel string `json:"workload_label,omitempty"`
	Format        Format `json:"format"`
	// EvalSetID is the eval set whose splits the files follow; empty when the
	// workload has under two calls a set can be drawn from (then every call is train).
	EvalSetID    string    `json:"eval_set_id"`
	EvalSetDrawn bool      `json:"eval_set_drawn"` // drawn by this export (else reused)
	CreatedAt    time.Time `json:"created_at"`
	MaxTokens    int       `json:"max_tokens"` // 0: no budget
	Tokenizer    string    `json:"tokenizer"`
	Calls        int       `json:"calls"` // the workload's calls read
	Files        []File    `json:"files"`
	// Filters are the filters applied, each with the calls it left out.
	Filters []FilterCount `json:"filters"`
	// Tools are the names of the tools offered in the files' examples, sorted;
	// ToolsCalled counts the targets' calls by tool.
	Tools       []string       `json:"tools"`
	ToolsCalled map[string]int `json:"tools_called"`
}

// File is one written file.
type File struct {
	Split string `json:"split"` // store.SplitTrain, SplitValidation or SplitTest
	Path  string `json:"path"`  // relative to the manifest's directory
	Lines int    `json:"lines"`
	// SetMembers is how many calls of the eval set's split are in the workload now;
	// lines fall short of it by the set's calls that the filters left out (train and
	// validation also take calls recorded after the set was drawn).
	SetMembers       int      `json:"set_members"`
	SHA256           string   `json:"sha256"`
	PromptTokens     int      `json:"prompt_tokens"`
	CompletionTokens int      `json:"completion_tokens"`
	CallIDs          []string `json:"call_ids"` // one per line, in order
}

// FilterCount is a filter and the calls it left out.
type FilterCount struct {
	Name  string `json:"name"`
	Rule  string `json:"rule"`
	Calls int    `json:"calls"`
}

// File returns the manifest's entry for split, or nil.
func (m *Manifest) File(split string) *File {
	for i := range m.Files {
		if m.Files[i].Split == split {
			return &m.Files[i]
		}
	}
	return nil
}

// LeftOut is how many calls the filters left out.
func (m *Manifest) LeftOut() int {
	n := 0
	for _, f := range m.Filters {
		n += f.Calls
	}
	return n
}

// Export writes a workload's calls as fine-tuning files in o.Dir: train.jsonl and
// validation.jsonl from its eval set's train and validation splits, eval.jsonl from
// the test split, and manifest.json. The targets are the reference's recorded answers
// (distillation), tools included; payloads are written as stored, that is redacted,
// after opening them with o.Keyring.
//
// The split is the workload's latest eval set, the one `downshift eval` replays; when
// the workload has none, Export draws and saves one as eval would. Calls not in the
// set, recorded after it was drawn, were never test calls: they go to train, or to
// validation when their conversation is in validation, and are left out when their
// conversation is held out for test (its later turns repeat the test calls' answers).
// Copies of the set's calls are left out, so a test call never reaches train or
// validation under another id. Ground-truth records (BFCL) are examples like the
// others when their answer is a chat answer; they are never in an eval set, so they
// go to train. The filters (see the Filter constants) apply to every file, eval.jsonl
// included: it holds the test calls that make valid examples, listed in the manifest.
//
// Every file is sorted by call id, so the same store gives the same files. The export
// is written to the audit trail (store.AuditExport) before the files are put in
// place; when that fails, no file is left behind.
func Export(ctx context.Context, o Options) (*Manifest, error) {
	if o.Store == nil || o.WorkloadID == "" || o.Dir == "" {
		return nil, errors.New("tune: export needs a store, a workload and a directory")
	}
	if o.Format == "" {
		o.Format = FormatOpenAI
	}
	if _, err := ParseFormat(string(o.Format)); err != nil {
		return nil, fmt.Errorf("tune: %w", err)
	}
	switch {
	case o.MaxTokens == 0:
		o.MaxTokens = DefaultMaxTokens
	case o.MaxTokens < 0:
		o.MaxTokens = 0
	}
	if o.Actor == "" {
		o.Actor = "cli"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	counter, err := tokens.New()
	if err != nil {
		return nil, err
	}

	calls, err := loadCalls(ctx, o.Store, o.Keyring, o.WorkloadID)
	if err != nil {
		return nil, err
	}
	var evaluable []*eval.Call
	for _, c := range calls {
		if c.call != nil && !c.stored.GroundTruth {
			evaluable = append(evaluable, c.call)
		}
	}
	set, drawn, err := evalSet(ctx, o, evaluable, logf)
	if err != nil {
		return nil, err
	}

	m := &Manifest{Workload: o.WorkloadID, WorkloadLabel: o.WorkloadLabel, Format: o.Format, EvalSetID: set.ID,
		EvalSetDrawn: drawn, CreatedAt: o.Now.UTC(), MaxTokens: o.MaxTokens, Tokenizer: "o200k_base",
		Calls: len(calls), Filters: slices.Clone(filterRules), ToolsCalled: map[string]int{}}
	out, err := newOutputs(o.Dir)
	if err != nil {
		return nil, err
	}
	defer out.discard()

	s := newSplitter(set, calls)
	for _, sp := range []string{store.SplitTrain, store.SplitValidation, store.SplitTest} {
		out.files[sp].SetMembers = s.members[sp]
	}
	offered := map[string]bool{}
	// Calls are converted and counted in parallel, a batch at a time, and written in
	// id order; which filter a call meets first depends on the calls before it
	// (duplicates), so that is decided in order too.
	batch := make([]job, 0, batchSize)
	flush := func(done int) error {
		convertAll(batch, o.Format, counter, o.MaxTokens)
		for i := range batch {
			j := &batch[i]
			if j.err != nil {
				return j.err
			}
			if o.Progress != nil {
				o.Progress(done-len(batch)+i+1, len(calls))
			}
			if j.filter != "" {
				m.count(j.filter)
				continue
			}
			if err := out.write(j.split, j.c.stored.ID, j.line, j.prompt, j.completion); err != nil {
				return err
			}
			for _, t := range j.c.call.Req.Tools {
				offered[t.Function.Name] = true
			}
			for _, tc := range j.c.call.Answer.ToolCalls {
				m.ToolsCalled[tc.Function.Name]++
			}
		}
		batch = batch[:0]
		return nil
	}
	if o.Progress != nil {
		o.Progress(0, len(calls))
	}
	for i, c := range calls {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		split, filter := s.split(c)
		batch = append(batch, job{c: c, split: split, filter: filter})
		if len(batch) == cap(batch) || i == len(calls)-1 {
			if err := flush(i + 1); err != nil {
				return nil, err
			}
		}
	}
	for name := range offered {
		m.Tools = append(m.Tools, name)
	}
	slices.Sort(m.Tools)
	if m.Files, err = out.close(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	if err := out.add(FileManifest, b.Bytes()); err != nil {
		return nil, err
	}

	// The trail first: an export nobody can account for is not left on disk.
	if err := o.Store.AppendAudit(ctx, store.AuditEntry{At: time.Now(), Actor: o.Actor, ActorName: o.ActorName,
		Action: store.AuditExport, Target: o.WorkloadID, Detail: auditDetail(m, o.Dir), Remote: o.Remote}); err != nil {
		return nil, fmt.Errorf("tune: writing the audit trail: %w", err)
	}
	if err := out.commit(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manifest) count(filter string) {
	for i := range m.Filters {
		if m.Filters[i].Name == filter {
			m.Filters[i].Calls++
			return
		}
	}
}

// auditDetail says what was exported, never what the calls hold.
func auditDetail(m *Manifest, dir string) string {
	set := m.EvalSetID
	if set == "" {
		set = "none"
	}
	var parts []string
	for _, f := range m.Files {
		parts = append(parts, fmt.Sprintf("%s %d", f.Path, f.Lines))
	}
	return fmt.Sprintf("dataset export as %s to %s: eval set %s; lines: %s; %d of %d calls left out by filters",
		m.Format, dir, set, strings.Join(parts, ", "), m.LeftOut(), m.Calls)
}

// loaded is one of the workload's calls, opened, with its preparation when it has a
// chat answer (nil otherwise).
type loaded struct {
	stored *store.Call
	call   *eval.Call
}

// loadCalls reads the workload's calls in id order, opens them and prepares those
// that answered. A ground-truth record is prepared like a reference's answer.
func loadCalls(ctx context.Context, st store.Store, kr *seal.Keyring, workloadID string) ([]loaded, error) {
	stored, err := st.ListCalls(ctx, store.Filter{WorkloadID: workloadID, WithPayloads: true, Ascending: true, Limit: 1 << 30})
	if err != nil {
		return nil, err
	}
	if len(stored) == 0 {
		return nil, fmt.Errorf("tune: no calls in workload %q (run downshift analyze first, and check the id with downshift workloads)", workloadID)
	}
	slices.SortFunc(stored, func(a, b store.Call) int { return cmp.Compare(a.ID, b.ID) })
	out := make([]loaded, len(stored))
	for i := range stored {
		c := &stored[i]
		if err := kr.OpenCall(c); err != nil {
			return nil, fmt.Errorf("tune: %w", err)
		}
		out[i].stored = c
		if c.Status >= 400 || c.Status == 0 {
			continue
		}
		// eval refuses ground truth only because it cannot be a reference to score
		// candidates against; as a training target it is what the dataset meant.
		prep := *c
		prep.GroundTruth = false
		if ec, err := eval.FromStoreCall(&prep); err == nil {
			out[i].call = ec
		}
	}
	return out, nil
}

// evalSet returns the workload's latest eval set, or draws and saves one as eval
// would. With under two calls to draw from there is no set (and no error): every
// call is then train.
func evalSet(ctx context.Context, o Options, evaluable []*eval.Call, logf func(string, ...any)) (store.EvalSet, bool, error) {
	set, err := o.Store.LatestEvalSet(ctx, o.WorkloadID)
	switch {
	case err == nil:
		logf("eval set %s (drawn %s): reused, so its test calls stay out of training", set.ID, set.CreatedAt.Format(time.DateTime))
		return set, false, nil
	case !errors.Is(err, store.ErrNotFound):
		return store.EvalSet{}, false, err
	case len(evaluable) < 2:
		logf("workload %s has %d calls an eval set can be drawn from: no eval set, every call goes to train", o.WorkloadID, len(evaluable))
		return store.EvalSet{}, false, nil
	}
	set, p, err := eval.DrawSet("es_"+ulid.Make().String(), o.WorkloadID, evaluable, o.Set, o.Now)
	if err != nil {
		return store.EvalSet{}, false, err
	}
	if err := o.Store.SaveEvalSet(ctx, set); err != nil {
		return store.EvalSet{}, false, err
	}
	logf("eval set %s drawn and saved as downshift eval draws it: %d test, %d validation, %d train calls (%d duplicates left out); eval will replay its test calls",
		set.ID, p.Split[store.SplitTest], p.Split[store.SplitValidation], p.Split[store.SplitTrain], p.Duplicates)
	return set, true, nil
}

// splitter decides each call's file, or the filter that leaves it out before it is
// converted.
type splitter struct {
	member     map[string]string // call id -> split, for the set's calls in the workload
	members    map[string]int    // calls per split
	memberKeys map[string]bool   // dedup keys of the set's calls
	groupSplit map[string]string // conversation -> the set's split for it (test wins)
	seen       map[string]bool   // dedup keys of calls kept that are not in the set
}

func newSplitter(set store.EvalSet, calls []loaded) *splitter {
	s := &splitter{member: map[string]string{}, members: map[string]int{}, memberKeys: map[string]bool{},
		groupSplit: map[string]string{}, seen: map[string]bool{}}
	split := map[string]string{}
	for _, mb := range set.Members {
		split[mb.CallID] = mb.Split
	}
	for _, c := range calls {
		sp, ok := split[c.stored.ID]
		if !ok {
			continue
		}
		s.member[c.stored.ID] = sp
		s.members[sp]++
		if c.call == nil {
			continue
		}
		s.memberKeys[eval.DedupKey(c.call)] = true
		if g := s.groupSplit[c.call.Group]; g != store.SplitTest {
			s.groupSplit[c.call.Group] = sp
		}
	}
	return s
}

func (s *splitter) split(c loaded) (split, filter string) {
	sc := c.stored
	split, member := s.member[sc.ID]
	switch {
	case sc.Status >= 400 || sc.Status == 0:
		return "", FilterFailed
	case sc.Route == store.RouteEscalated:
		return "", FilterEscalated
	case c.call == nil || !hasAnswer(&c.call.Answer):
		return "", FilterNoAnswer
	case finishReason(sc.Response) == "length":
		return "", FilterTruncated
	case member:
		return split, ""
	}
	key := eval.DedupKey(c.call)
	if s.memberKeys[key] || s.seen[key] {
		return "", FilterDuplicate
	}
	s.seen[key] = true
	switch s.groupSplit[c.call.Group] {
	case store.SplitTest:
		return "", FilterTestThread
	case store.SplitValidation:
		return store.SplitValidation, ""
	}
	return store.SplitTrain, ""
}

func finishReason(resp []byte) string {
	var r struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if json.Unmarshal(resp, &r) != nil || len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].FinishReason
}

// batchSize is how many calls are converted at once: enough to keep every core busy,
// few enough that their lines are a small part of memory.
const batchSize = 256

// job is one call on its way to a file: where it goes, or the filter that leaves it
// out, and its line.
type job struct {
	c                  loaded
	split, filter      string
	line               []byte
	prompt, completion int
	err                error
}

// convertAll converts the jobs not yet filtered, on every core.
func convertAll(jobs []job, f Format, counter *tokens.Counter, budget int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := &jobs[i]
				if j.filter == "" {
					j.line, j.prompt, j.completion, j.filter, j.err = convert(j.c.call, f, counter, budget)
				}
			}
		}()
	}
	wg.Wait()
}

// convert writes a call as one line of format f and counts its tokens, or names the
// filter that leaves it out.
func convert(c *eval.Call, f Format, counter *tokens.Counter, budget int) (line []byte, prompt, completion int, filter string, err error) {
	ex, err := newExample(c)
	if err == nil {
		line, err = f.line(ex)
	}
	if errors.Is(err, errUnconvertible) {
		return nil, 0, 0, FilterUnconverted, nil
	}
	if err != nil {
		return nil, 0, 0, "", fmt.Errorf("tune: call %s: %w", c.ID, err)
	}
	prompt = counter.Prompt(c.Req)
	completion = counter.Completion(&openai.ChatCompletion{Choices: []openai.Choice{{Message: c.Answer}}})
	if budget > 0 && prompt+completion > budget {
		return nil, 0, 0, FilterTokenBudget, nil
	}
	return line, prompt, completion, "", nil
}

// outputs are the files being written: temporary files in the directory until commit
// renames them into place.
type outputs struct {
	dir   string
	order []string // splits in file order
	files map[string]*File
	tmp   map[string]*os.File
	buf   map[string]*bufio.Writer
	sum   map[string]hash.Hash
	extra map[string]string // name -> temporary path, for the manifest
}

func newOutputs(dir string) (*outputs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tune: %w", err)
	}
	o := &outputs{dir: dir, order: []string{store.SplitTrain, store.SplitValidation, store.SplitTest},
		files: map[string]*File{}, tmp: map[string]*os.File{}, buf: map[string]*bufio.Writer{},
		sum: map[string]hash.Hash{}, extra: map[string]string{}}
	names := map[string]string{store.SplitTrain: FileTrain, store.SplitValidation: FileValidation, store.SplitTest: FileEval}
	for _, sp := range o.order {
		f, err := os.CreateTemp(dir, "."+names[sp]+".*")
		if err != nil {
			o.discard()
			return nil, fmt.Errorf("tune: %w", err)
		}
		o.tmp[sp] = f
		o.sum[sp] = sha256.New()
		o.buf[sp] = bufio.NewWriterSize(io.MultiWriter(f, o.sum[sp]), 1<<16)
		o.files[sp] = &File{Split: sp, Path: names[sp], CallIDs: []string{}}
	}
	return o, nil
}

func (o *outputs) write(split, id string, line []byte, prompt, completion int) error {
	w := o.buf[split]
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	if err := w.WriteByte('\n'); err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	f := o.files[split]
	f.Lines++
	f.PromptTokens += prompt
	f.CompletionTokens += completion
	f.CallIDs = append(f.CallIDs, id)
	return nil
}

// close flushes the data files and returns their entries.
func (o *outputs) close() ([]File, error) {
	var out []File
	for _, sp := range o.order {
		if err := o.buf[sp].Flush(); err != nil {
			return nil, fmt.Errorf("tune: %w", err)
		}
		if err := o.tmp[sp].Sync(); err != nil {
			return nil, fmt.Errorf("tune: %w", err)
		}
		if err := o.tmp[sp].Close(); err != nil {
			return nil, fmt.Errorf("tune: %w", err)
		}
		o.files[sp].SHA256 = hex.EncodeToString(o.sum[sp].Sum(nil))
		out = append(out, *o.files[sp])
	}
	return out, nil
}

// add writes another file (the manifest) to put in place with the others.
func (o *outputs) add(name string, b []byte) error {
	f, err := os.CreateTemp(o.dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	o.extra[name] = f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("tune: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tune: %w", err)
	}
	return nil
}

// commit renames the files into place, the manifest last.
func (o *outputs) commit() error {
	for _, sp := range o.order {
		if err := os.Rename(o.tmp[sp].Name(), filepath.Join(o.dir, o.files[sp].Path)); err != nil {
			return fmt.Errorf("tune: %w", err)
		}
		delete(o.tmp, sp)
	}
	for name, tmp := range o.extra {
		if err := os.Rename(tmp, filepath.Join(o.dir, name)); err != nil {
			return fmt.Errorf("tune: %w", err)
		}
		delete(o.extra, name)
	}
	return nil
}

// discard removes the temporary files not yet committed.
func (o *outputs) discard() {
	for _, f := range o.tmp {
		f.Close()
		os.Remove(f.Name())
	}
	for _, tmp := range o.extra {
		os.Remove(tmp)
	}
}
