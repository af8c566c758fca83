package sim

import (
	"fmt"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/downshift-dev/downshift/internal/openai"
)

// event is one stream chunk and the time to wait before sending it.
type event struct {
	wait time.Duration
	data []byte
}

// stream writes rep as server-sent events: a role chunk, content deltas, tool-call
// deltas (id and name first, then arguments in pieces, interleaved across calls),
// a finish_reason chunk, the usage chunk when asked for, then [DONE]. Each event is
// flushed as it is written. With cut, the connection is dropped after some chunks.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *openai.ChatRequest, rep *reply, cut bool) error {
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	events, err := s.events(rep, includeUsage)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flush := func() {}
	if fl, ok := w.(http.Flusher); ok {
		flush = fl.Flush
	}
	flush()
	cutAt := -1
	if cut {
		cutAt = 1 + s.rng.IntN(len(events)-1) // at least one chunk, never all
	}
	for i, ev := range events {
		if i == cutAt {
			panic(http.ErrAbortHandler)
		}
		if err := s.sleep(r.Context(), ev.wait); err != nil {
			return errHandled
		}
		if err := openai.WriteEvent(w, ev.data); err != nil {
			return errHandled
		}
		flush()
	}
	if err := openai.WriteDone(w); err != nil {
		return errHandled
	}
	flush()
	return nil
}

// events renders rep as the chunks of a stream, with the latency before each.
func (s *Server) events(rep *reply, includeUsage bool) ([]event, error) {
	base := openai.ChatCompletionChunk{
		ID:        rep.id,
		Object:    "chat.completion.chunk",
		Created:   s.now().Unix(),
		Model:     rep.model,
		Simulated: rep.simulated,
	}
	var deltas []openai.Delta
	role := openai.Delta{Role: "assistant"}
	text := rep.msg.Content.String()
	if !rep.msg.Content.IsNull || text != "" {
		empty := ""
		role.Content = &empty
	}
	deltas = append(deltas, role)
	for _, p := range textPieces(text) {
		deltas = append(deltas, openai.Delta{Content: &p})
	}
	if rep.msg.Refusal != nil {
		for _, p := range textPieces(*rep.msg.Refusal) {
			deltas = append(deltas, openai.Delta{Refusal: &p})
		}
	}
	deltas = append(deltas, toolCallDeltas(rep.msg.ToolCalls)...)

	// Spread the decoding time over the pieces after the role chunk.
	var perPiece time.Duration
	if tps := s.opts.Latency.TokensPerSecond; tps > 0 && len(deltas) > 1 {
		total := float64(rep.usage.CompletionTokens) / tps * float64(time.Second)
		perPiece = time.Duration(total / float64(len(deltas)-1))
	}

	events := make([]event, 0, len(deltas)+2)
	add := func(wait time.Duration, c openai.ChatCompletionChunk) error {
		b, err := marshal(c)
		if err != nil {
			return fmt.Errorf("sim: encode chunk: %w", err)
		}
		events = append(events, event{wait: wait, data: b})
		return nil
	}
	for i, d := range deltas {
		c := base
		c.Choices = []openai.ChunkChoice{{Index: 0, Delta: d}}
		wait := s.jitter(perPiece)
		if i == 0 {
			wait = s.jitter(s.opts.Latency.TTFT)
		}
		if err := add(wait, c); err != nil {
			return nil, err
		}
	}
	finish := rep.finish
	c := base
	c.Choices = []openai.ChunkChoice{{Index: 0, Delta: openai.Delta{}, FinishReason: &finish}}
	if err := add(0, c); err != nil {
		return nil, err
	}
	if includeUsage {
		usage := rep.usage
		c := base
		c.Choices = []openai.ChunkChoice{}
		c.Usage = &usage
		if err := add(0, c); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// toolCallDeltas announces each call (index, id, type, name) and then sends the
// arguments in pieces, taking one piece of each unfinished call in turn.
func toolCallDeltas(calls []openai.ToolCall) []openai.Delta {
	var out []openai.Delta
	args := make([][]string, len(calls))
	for i, tc := range calls {
		typ := tc.Type
		if typ == "" {
			typ = "function"
		}
		out = append(out, openai.Delta{ToolCalls: []openai.ToolCallDelta{{
			Index: i, ID: tc.ID, Type: typ, Function: openai.FunctionCallDelta{Name: tc.Function.Name},
		}}})
		args[i] = runePieces(tc.Function.Arguments, argumentPiece)
	}
	for more := true; more; {
		more = false
		for i := range args {
			if len(args[i]) == 0 {
				continue
			}
			out = append(out, openai.Delta{ToolCalls: []openai.ToolCallDelta{{
				Index: i, Function: openai.FunctionCallDelta{Arguments: args[i][0]},
			}}})
			args[i] = args[i][1:]
			more = true
		}
	}
	return out
}

// Piece sizes, in runes, standing in for tokens.
const (
	wordPiece     = 6
	argumentPiece = 8
)

// textPieces splits s into token-sized pieces that concatenate back to s: each word
// with the spaces before it, punctuation on its own, long words in pieces.
func textPieces(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) { // leading spaces
			r, n := utf8.DecodeRuneInString(s[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += n
		}
		if i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			i += n
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				for runes := 1; i < len(s) && runes < wordPiece; runes++ {
					r, n := utf8.DecodeRuneInString(s[i:])
					if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
						break
					}
					i += n
				}
			}
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

// runePieces splits s into pieces of n runes.
func runePieces(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for runes := 0; i < len(s) && runes < n; runes++ {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}
