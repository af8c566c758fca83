package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
)

// HeaderSimulated is the header an upstream sets on an answer it invented (downshift's
// simulator does); such answers are counted on the leaderboard, never hidden.
const HeaderSimulated = "X-Downshift-Simulated"

// Job is one call to put to one candidate in one variant.
type Job struct {
	Candidate *backend.Model
	Variant   string
	Call      *Call
	// Examples are the in-context examples for VariantInContext (see Examples).
	Examples []*Call
}

// Verdict is what a result's Score holds, as JSON.
type Verdict struct {
	Compare   compare.Score `json:"compare"`
	Judge     *JudgeVerdict `json:"judge,omitempty"`
	Simulated bool          `json:"simulated,omitempty"`
	// Examples are the ids of the in-context examples the request carried.
	Examples     []string `json:"examples,omitempty"`
	FinishReason string   `json:"finish_reason,omitempty"`
	// TokensEstimated is true when the candidate reported no usage and the tokens
	// were counted with a tokenizer.
	TokensEstimated bool `json:"tokens_estimated,omitempty"`
}

// Runner replays jobs against candidates with bounded concurrency and retries, scores
// the answers and hands the results to Save in batches. A Runner is used once.
type Runner struct {
	RunID string
	// Concurrency is how many calls are in flight at once, over all candidates.
	// Default 8.
	Concurrency int
	// MaxAttempts bounds the tries of one call: connection errors, timeouts, a stream
	// cut short, 429 and 5xx are retried; other failures are final. Default 4.
	MaxAttempts int
	// Backoff is the wait before the first retry; each retry doubles it, with full
	// jitter, up to MaxBackoff. A Retry-After header (in seconds) is honoured up to
	// MaxBackoff. Defaults 250ms and 10s.
	Backoff, MaxBackoff time.Duration
	// Schemas caches compiled JSON schemas for scoring; nil checks no schemas.
	Schemas *compare.Schemas
	// Judge, when set, grades answers where the reference answered text.
	Judge *Judge
	// Seal, when set, seals a result's Answer in place before it is saved.
	Seal func(r *store.EvalResult) error
	// Save stores a batch of results; an error stops the run.
	Save func(ctx context.Context, rs []store.EvalResult) error
	// BatchSize is the most results saved at once. Default 32.
	BatchSize int
	// Progress, when set, is called after each result with the number done so far.
	Progress func(done int)
	// Tokens counts tokens when a candidate reports no usage; nil leaves them 0.
	Tokens *tokens.Counter

	rngMu sync.Mutex
	rng   *rand.Rand
}

// Stats sums up a Run.
type Stats struct {
	Done    int // results saved
	Failed  int // of which failed for good
	Retries int // attempts beyond the first
	Elapsed time.Duration
}

func (r *Runner) defaults() {
	if r.Concurrency <= 0 {
		r.Concurrency = 8
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 4
	}
	if r.Backoff <= 0 {
		r.Backoff = 250 * time.Millisecond
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 10 * time.Second
	}
	if r.BatchSize <= 0 {
		r.BatchSize = 32
	}
	r.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
}

// Run replays every job and saves its result. When ctx ends, calls in flight are
// abandoned (not saved, so a resumed run replays them), what was answered is saved,
// and Run returns ctx's error. A Save error stops the run and is returned.
func (r *Runner) Run(ctx context.Context, jobs []Job) (Stats, error) {
	r.defaults()
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	work := make(chan Job)
	results := make(chan store.EvalResult, r.Concurrency)
	var retries sync.Mutex
	var st Stats
	var wg sync.WaitGroup
	for range r.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				res, tries, final := r.replay(ctx, j)
				retries.Lock()
				st.Retries += tries - 1
				retries.Unlock()
				if !final {
					continue
				}
				select {
				case results <- res:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, j := range jobs {
			select {
			case work <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	var batch []store.EvalResult
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		// Saving must not be cut short by the interruption it may be finishing.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer scancel()
		if err := r.Save(sctx, batch); err != nil {
			return fmt.Errorf("eval: saving results: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	var saveErr error
	for res := range results {
		if saveErr != nil {
			continue // drain
		}
		if r.Seal != nil {
			if err := r.Seal(&res); err != nil {
				saveErr = err
				cancel(err)
				continue
			}
		}
		batch = append(batch, res)
		st.Done++
		if res.Error != "" {
			st.Failed++
		}
		if r.Progress != nil {
			r.Progress(st.Done)
		}
		if len(batch) >= r.BatchSize {
			if err := flush(); err != nil {
				saveErr = err
				cancel(err)
			}
		}
	}
	if saveErr == nil {
		saveErr = flush()
	}
	st.Elapsed = time.Since(start)
	if saveErr != nil {
		return st, saveErr
	}
	return st, context.Cause(ctx)
}

// replay puts one job to its candidate, with retries. final is false when the run
// was interrupted before the call was answered or failed for good.
func (r *Runner) replay(ctx context.Context, j Job) (res store.EvalResult, attempts int, final bool) {
	res = store.EvalResult{RunID: r.RunID, Candidate: j.Candidate.Name, Variant: j.Variant, CallID: j.Call.ID}
	var v Verdict
	examples := ""
	if len(j.Examples) > 0 {
		examples = FormatExamples(j.Examples)
		for _, e := range j.Examples {
			v.Examples = append(v.Examples, e.ID)
		}
	}
	body, err := BuildRequest(j.Call, j.Candidate.UpstreamName, examples)
	if err != nil {
		res.At, res.Error = time.Now(), err.Error()
		return res, 1, true
	}
	var a *answer
	for attempts = 1; ; attempts++ {
		a, err = r.attempt(ctx, j.Candidate.Backend, body)
		if ctx.Err() != nil {
			return res, attempts, false
		}
		if err == nil {
			break
		}
		retry, wait := r.retryable(err, attempts)
		if !retry || attempts >= r.MaxAttempts {
			res.At = time.Now()
			res.Error = err.Error()
			var be *backend.Error
			if errors.As(err, &be) {
				res.Status = be.Status
			}
			res.Attempts = attempts
			res.Score, _ = json.Marshal(v)
			return res, attempts, true
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return res, attempts, false
		}
	}
	res.At, res.Status, res.Attempts = time.Now(), http.StatusOK, attempts
	res.Latency, res.TTFT = a.latency, a.ttft
	msg := &a.completion.Choices[0].Message
	if u := a.completion.Usage; u != nil {
		res.PromptTokens, res.CompletionTokens = u.PromptTokens, u.CompletionTokens
	} else if r.Tokens != nil {
		res.PromptTokens, res.CompletionTokens = r.Tokens.Prompt(j.Call.Req), r.Tokens.Completion(a.completion)
		v.TokensEstimated = true
	}
	cached := 0
	if u := a.completion.Usage; u != nil && u.PromptTokensDetails != nil {
		cached = u.PromptTokensDetails.CachedTokens
	}
	res.CostUSD = j.Candidate.Cost(res.PromptTokens, res.CompletionTokens, cached)
	v.Simulated, v.FinishReason = a.simulated, a.completion.Choices[0].FinishReason
	v.Compare = compare.Answer(&j.Call.Answer, msg, compare.Request{Tools: j.Call.Req.Tools,
		ResponseFormat: j.Call.Req.ResponseFormat, Schemas: r.Schemas})
	res.Agreement, res.Pass = v.Compare.Agreement, v.Compare.Pass
	if r.Judge != nil && v.Compare.Kind == compare.KindText {
		jv := r.Judge.Grade(ctx, j.Call, msg)
		v.Judge = &jv
		if jv.Error == "" {
			res.Pass = jv.Pass
		}
	}
	res.Answer, _ = json.Marshal(msg)
	res.Score, _ = json.Marshal(v)
	return res, attempts, true
}

// retryable says whether err is worth another attempt, and how long to wait first.
func (r *Runner) retryable(err error, attempt int) (bool, time.Duration) {
	var be *backend.Error
	if errors.As(err, &be) && !be.Retryable() {
		return false, 0
	}
	var bad *badAnswer
	if errors.As(err, &bad) {
		return false, 0
	}
	wait := r.Backoff << (attempt - 1)
	if wait > r.MaxBackoff || wait <= 0 {
		wait = r.MaxBackoff
	}
	r.rngMu.Lock()
	wait = time.Duration(r.rng.Int64N(int64(wait)) + 1) // full jitter
	r.rngMu.Unlock()
	if be != nil && be.RetryAfter != "" {
		if s, err := strconv.Atoi(strings.TrimSpace(be.RetryAfter)); err == nil && s >= 0 {
			wait = min(time.Duration(s)*time.Second, r.MaxBackoff)
		}
	}
	return true, wait
}

// answer is one candidate answer as received.
type answer struct {
	completion    *openai.ChatCompletion
	latency, ttft time.Duration
	simulated     bool
}

// badAnswer is an answer that arrived whole but cannot be scored (no choices, not a
// chat completion): asking again would give the same.
type badAnswer struct{ msg string }

func (e *badAnswer) Error() string { return e.msg }

// streamError is a stream that broke or carried an upstream error: retryable.
type streamError struct{ err error }

func (e *streamError) Error() string { return "stream: " + e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// attempt sends body once and reads the whole answer, streamed or not.
func (r *Runner) attempt(ctx context.Context, b *backend.Backend, body []byte) (*answer, error) {
	start := time.Now()
	resp, err := b.Post(ctx, "/chat/completions", body, "text/event-stream")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	a := &answer{simulated: strings.EqualFold(resp.Header.Get(HeaderSimulated), "true")}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "text/event-stream" {
		var cc openai.ChatCompletion
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return nil, &streamError{err}
		}
		a.latency = time.Since(start)
		a.ttft = a.latency
		if err := json.Unmarshal(raw, &cc); err != nil {
			return nil, &badAnswer{"answer is not a chat completion: " + err.Error()}
		}
		a.completion = &cc
	} else {
		acc := openai.NewAccumulator()
		sse := openai.NewSSEReader(resp.Body)
		for {
			ev, err := sse.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, &streamError{err}
			}
			if openai.IsDone(ev) {
				break
			}
			c, err := acc.AddData(ev.Data)
			if err != nil {
				return nil, &badAnswer{err.Error()}
			}
			if c.Error != nil {
				return nil, &streamError{fmt.Errorf("upstream error in stream: %s", c.Error.Message)}
			}
			if a.ttft == 0 && firstToken(c) {
				a.ttft = time.Since(start)
			}
		}
		a.latency = time.Since(start)
		a.completion = acc.Completion()
		if a.ttft == 0 {
			a.ttft = a.latency
		}
	}
	a.simulated = a.simulated || a.completion.Simulated
	if len(a.completion.Choices) == 0 {
		return nil, &badAnswer{"answer has no choices"}
	}
	return a, nil
}

// firstToken reports whether a chunk carries the first of the answer: text, a refusal
// or a tool call.
func firstToken(c *openai.ChatCompletionChunk) bool {
	for _, ch := range c.Choices {
		d := &ch.Delta
		if (d.Content != nil && *d.Content != "") || (d.Refusal != nil && *d.Refusal != "") || len(d.ToolCalls) > 0 {
			return true
		}
	}
	return false
}
