// Package sim is an OpenAI-compatible model server for the demo, tests and
// benchmarks, where no model weights can run. In replay mode it answers a conversation
// with the answer a real model gave to it (recorded in package dataset); in synthetic
// mode, or for conversations it has no recording of, it invents an answer and marks it
// simulated. It models latency (time to first token, tokens per second) and injects
// faults (errors, 429s, timeouts, resets, cut streams) at seeded rates.
//
// Candidate models (Options.Candidates) answer with the recorded reference answer,
// spoilt on a seeded share of calls, so that an evaluation can be checked against a
// known failure rate. A candidate's answer is never that model's own, so it is always
// marked simulated, degraded or not; X-Downshift-Replayed-Model names the recorded
// answer it was made from.
//
// An answer is marked replayed (X-Downshift-Replayed) only when it is the recorded answer
// of the requested model (after Options.Models) to this very conversation. Every other
// answer made from a recording, another model's in particular, is marked simulated.
//
// A request whose conversation differs from a recording in its system (or developer)
// messages only, as an evaluation's in-context variant does by appending worked
// examples to the system prompt, is answered from that recording when no other
// recording has the same other messages, and is marked simulated, with
// X-Downshift-Replayed-Match: without-system. The simulator cannot model in-context
// learning: the answer is the one recorded for the original prompt, and a candidate
// degrades exactly the calls it degrades without the examples, so the in-context
// variant neither improves nor worsens a candidate.
//
// A store that redacts calls before writing them (package redact) holds conversations
// the simulator has no recording of: a customer's e-mail address is <EMAIL_1> there.
// With Options.Redactor (the store's redaction settings), the simulator also finds a
// recording by its conversation as redacted the way the gateway's recorder redacts a
// call: the request as Call.RequestJSON sends it together with the answer as one
// chat.completion, placeholders numbered across both. It answers with the recorded
// answer as redacted with it, so that its placeholders are those of the stored
// reference answer, marked simulated (the model was never asked the redacted
// conversation), with X-Downshift-Replayed-Match: redacted, or redacted-without-system
// for an in-context variant of a redacted conversation; a candidate degrades it on the
// calls it degrades as recorded. A recording whose redaction changed its answer only
// is answered as recorded: its conversation is the same either way. The redacted
// index is built on the first request that misses the plain one, not in New:
// redacting the bundled recordings (2,746 conversations) takes about 2 s of CPU,
// spread over every core (1.7 s on two), which a simulator that is never sent a
// redacted conversation should not pay at start.
//
// It is not a model and not part of the gateway: nothing on the hot path imports it,
// and its invented answers are placeholders, never data to train or judge on.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/redact"
	"github.com/downshift-dev/downshift/internal/tokens"
)

// Mode says where answers come from.
type Mode string

const (
	// ModeReplay answers with recorded real answers. It is the default.
	ModeReplay Mode = "replay"
	// ModeSynthetic invents every answer.
	ModeSynthetic Mode = "synthetic"
)

// Unknown says what replay mode does with a conversation it has no recording of.
type Unknown string

const (
	// UnknownError answers 404 with OpenAI's error body. It is the default.
	UnknownError Unknown = "error"
	// UnknownSynthetic invents an answer, marked simulated.
	UnknownSynthetic Unknown = "synthetic"
)

// Response headers that say where an answer came from. The "simulated" field of the
// response body (of every chunk, when streamed) is true on the answers
// HeaderSimulated marks, injected faults aside.
const (
	// HeaderSimulated is "true" on invented answers, on every candidate's answer
	// (degraded or not: it is never the candidate's own), on another model's recorded
	// answer (a model with no recorded answer of its own gets the reference's), on
	// answers recorded for another conversation (any match but MatchExact: another
	// system prompt, or the conversation before redaction), and on injected faults.
	HeaderSimulated = "X-Downshift-Simulated"
	// HeaderReplayed is "true" on a real model's recorded answer to this very
	// conversation (MatchExact), sent as recorded to that model: the requested name,
	// looked up in Options.Models, is the recorded model. It is never set together
	// with HeaderSimulated, but on a cut fault.
	HeaderReplayed = "X-Downshift-Replayed"
	// HeaderReplayedModel names the model whose recorded answer the reply is or, for
	// a candidate, was made from. It is set whenever a recording answered.
	HeaderReplayedModel = "X-Downshift-Replayed-Model"
	// HeaderReplayedMatch says how the request found its recording: MatchExact,
	// MatchWithoutSystem, MatchRedacted or MatchRedactedWithoutSystem. It is set
	// whenever HeaderReplayedModel is.
	HeaderReplayedMatch = "X-Downshift-Replayed-Match"
	// HeaderFault names the fault injected into this response.
	HeaderFault = "X-Downshift-Fault"
)

// CodeNoRecordedAnswer is the error code of a replay miss.
const CodeNoRecordedAnswer = "no_recorded_answer"

// Options configures a Server. The zero value is a replay server with no recordings,
// no latency and no faults, which answers every request with a replay-miss error.
type Options struct {
	// Mode is ModeReplay (default when empty) or ModeSynthetic.
	Mode Mode
	// Calls are the recorded calls replay mode answers from. A conversation recorded
	// more than once is answered from its first recording. A conversation that
	// differs from one recording in its system messages only is answered from it
	// too (see MatchWithoutSystem), and so is a redacted one (see Redactor).
	Calls []dataset.Call
	// Redactor, when set, finds recordings by their conversations as it redacts them
	// (see MatchRedacted): give it the redactor of the store an evaluation replays
	// from. Nil: conversations are matched as recorded only.
	Redactor *redact.Redactor
	// Unknown is what replay mode does with an unrecorded conversation: UnknownError
	// (default when empty) or UnknownSynthetic.
	Unknown Unknown
	// Models maps a requested model name to the recorded model whose answer it gets
	// (for GSM8K, "gpt-4" to GPT-4's and "mixtral" to Mixtral's answer). A name not in
	// the map is looked up as it is. A call with no answer from the resolved model is
	// answered with its first (reference) answer. Nil means DefaultModels().
	Models map[string]string
	// Candidates maps a requested model name to how it degrades the recorded
	// reference answer (the call's first) in replay mode: a candidate model with a
	// known true failure rate, to check an evaluation against. Every candidate answer
	// is marked simulated, degraded or not. A name here is not looked up in Models.
	// Unrecorded conversations and synthetic mode are answered as for any model.
	Candidates map[string]Degrade
	// Latency delays answers. The zero value adds no delay.
	Latency Latency
	// Faults are injected at these rates. The zero value injects none.
	Faults Faults
	// Seed seeds every random choice: jitter, faults, invented answers.
	Seed uint64
	// ToolCallShare is the share of invented answers to requests with tools (and no
	// tool_choice forcing either way) that call a tool. 0 means one half; a negative
	// value means never.
	ToolCallShare float64
	// EmbeddingDims is the length of embedding vectors when the request does not set
	// dimensions. 0 means 256.
	EmbeddingDims int
	// Logger receives one debug line per request and warnings. Nil discards.
	Logger *slog.Logger
	// Now returns the time for "created" fields. Nil means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done, returning ctx's error then. Latency and
	// Retry-After use it; tests pass one that returns at once. Nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Latency models how fast a simulated model answers. Latency{TTFT: d}, with no
// speed and no jitter, makes every answer take d: a non-streamed one is sent after
// d, a streamed one sends its first chunk after d and the rest at once.
type Latency struct {
	// TTFT is the time to the first token (for a non-streamed answer, added once).
	TTFT time.Duration
	// TokensPerSecond is the decoding speed; 0 means tokens come at once.
	TokensPerSecond float64
	// Jitter scales each delay by a seeded factor in [1-Jitter, 1+Jitter]; 0..1.
	Jitter float64
}

// Faults are the rates (0..1, summing to at most 1) at which chat-completion
// requests fail. One seeded draw per request picks at most one fault.
type Faults struct {
	// Error answers 500 with a server_error body.
	Error float64
	// RateLimit answers 429 with Retry-After.
	RateLimit float64
	// Timeout never answers: the request hangs until the client gives up or the
	// server shuts down.
	Timeout float64
	// Reset closes the connection with a TCP reset before any response.
	Reset float64
	// Cut ends the response part way: a stream after some chunks with no [DONE], a
	// JSON body after some of its bytes.
	Cut float64
	// RetryAfter is the Retry-After of 429s; 0 means 1s.
	RetryAfter time.Duration
}

// DefaultModels maps the names agents and configs commonly use to the models the
// bundled datasets recorded.
func DefaultModels() map[string]string {
	return map[string]string{
		"gpt-4o":                     dataset.ModelGPT4o,
		"gpt-4":                      dataset.ModelGPT4,
		dataset.ModelGPT4:            dataset.ModelGPT4,
		"mixtral":                    dataset.ModelMixtral,
		"mixtral-8x7b":               dataset.ModelMixtral,
		"mixtral-8x7b-instruct":      dataset.ModelMixtral,
		dataset.ModelMixtral:         dataset.ModelMixtral,
		"Mixtral-8x7B-Instruct-v0.1": dataset.ModelMixtral,
	}
}

// Server is the simulated model server. It is an http.Handler; Serve runs it on a
// listener until Shutdown.
type Server struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	sleep   func(context.Context, time.Duration) error
	models  map[string]string
	replay  *index
	counter *tokens.Counter
	rng     *lockedRand
	mux     *http.ServeMux
	// redacted returns the index of redacted conversations, built on first use; nil
	// without Options.Redactor.
	redacted func() *redactedIndex

	stop     chan struct{} // closed by Shutdown: hung requests give up
	stopOnce sync.Once
	mu       sync.Mutex
	servers  []*http.Server
}

var _ http.Handler = (*Server)(nil)

// New checks opts and builds a server, indexing the recorded calls.
func New(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	counter, err := tokens.New()
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Now,
		sleep:   opts.Sleep,
		models:  opts.Models,
		counter: counter,
		rng:     newLockedRand(opts.Seed),
		stop:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = sleepTimer
	}
	if s.models == nil {
		s.models = DefaultModels()
	}
	s.replay = newIndex(opts.Calls)
	if s.replay.duplicates > 0 {
		s.log.Debug("sim: conversations recorded more than once; answering from the first", "count", s.replay.duplicates)
	}
	if s.replay.ambiguous > 0 {
		s.log.Debug("sim: recordings that differ in their system messages only; not answered without them",
			"count", s.replay.ambiguous)
	}
	if opts.Redactor != nil {
		s.redacted = sync.OnceValue(func() *redactedIndex {
			start := time.Now()
			ri := newRedactedIndex(opts.Redactor, s.replay.recs)
			s.log.Debug("sim: indexed redacted conversations", "recordings", len(s.replay.recs),
				"changed", ri.changed, "ambiguous", ri.ambiguous, "took", time.Since(start))
			if ri.failed > 0 {
				s.log.Warn("sim: recordings that could not be redacted; not answered redacted", "count", ri.failed)
			}
			return ri
		})
	}
	s.mux = http.NewServeMux()
	s.mux.Handle("POST /v1/chat/completions", s.handle(s.chatCompletions))
	s.mux.Handle("GET /v1/models", s.handle(s.listModels))
	s.mux.Handle("POST /v1/embeddings", s.handle(s.embeddings))
	s.mux.Handle("/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, typ: openai.TypeNotFound,
			msg: fmt.Sprintf("the simulator has no route %s %s", r.Method, r.URL.Path)}
	}))
	return s, nil
}

func (o *Options) validate() error {
	switch o.Mode {
	case "", ModeReplay, ModeSynthetic:
	default:
		return fmt.Errorf("sim: mode %q: want %q or %q", o.Mode, ModeReplay, ModeSynthetic)
	}
	switch o.Unknown {
	case "", UnknownError, UnknownSynthetic:
	default:
		return fmt.Errorf("sim: unknown %q: want %q or %q", o.Unknown, UnknownError, UnknownSynthetic)
	}
	f := o.Faults
	sum := 0.0
	for _, r := range []struct {
		name string
		v    float64
	}{{"error", f.Error}, {"rate limit", f.RateLimit}, {"timeout", f.Timeout}, {"reset", f.Reset}, {"cut", f.Cut}} {
		if r.v < 0 || r.v > 1 {
			return fmt.Errorf("sim: %s rate %v is outside 0..1", r.name, r.v)
		}
		sum += r.v
	}
	if sum > 1 {
		return fmt.Errorf("sim: fault rates sum to %v, more than 1", sum)
	}
	if o.Latency.TTFT < 0 || o.Latency.TokensPerSecond < 0 || o.Latency.Jitter < 0 || o.Latency.Jitter > 1 {
		return fmt.Errorf("sim: latency %+v: durations and speed must not be negative, jitter must be in 0..1", o.Latency)
	}
	for name, d := range o.Candidates {
		if err := d.validate(name); err != nil {
			return err
		}
	}
	if o.EmbeddingDims < 0 || o.EmbeddingDims > maxEmbeddingDims {
		return fmt.Errorf("sim: embedding dims %d outside 0..%d", o.EmbeddingDims, maxEmbeddingDims)
	}
	return nil
}

// ServeHTTP serves the OpenAI-compatible routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve accepts connections on ln until Shutdown, and then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return http.ErrServerClosed
	default:
	}
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// Shutdown stops every Serve: requests hung by a timeout fault return at once, the
// others (streams included) may finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// apiError is an error with what the client may see: status and OpenAI's error body.
// cause, if any, is logged and never sent.
type apiError struct {
	status int
	typ    string
	code   string
	param  string
	msg    string
	header http.Header
	cause  error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *apiError) Unwrap() error { return e.cause }

// errHandled says the handler has already answered (or deliberately not answered).
var errHandled = errors.New("sim: response already handled")

// handle adapts a handler that returns an error into an http.Handler.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil || errors.Is(err, errHandled) {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{status: http.StatusInternalServerError, typ: openai.TypeServer,
				msg: "the simulator failed", cause: err}
		}
		if ae.cause != nil || ae.status >= 500 {
			s.log.Warn("sim: request failed", "path", r.URL.Path, "status", ae.status, "err", err)
		}
		for k, v := range ae.header {
			w.Header()[k] = v
		}
		writeError(w, ae)
	})
}

func writeError(w http.ResponseWriter, ae *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.status)
	_, _ = w.Write(openai.ErrorBody(ae.typ, ae.msg, ae.param, ae.code))
}

// readBody reads a request body of at most maxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: openai.TypeInvalidRequest,
				msg: fmt.Sprintf("request body is larger than %d bytes", maxBody)}
		}
		return nil, &apiError{status: http.StatusBadRequest, typ: openai.TypeInvalidRequest,
			msg: "could not read the request body", cause: err}
	}
	return body, nil
}

const maxBody = 32 << 20

func sleepTimer(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
