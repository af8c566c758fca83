package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash"
	"strings"
	"sync"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

// key identifies a conversation: the hash of its messages' roles, texts and tool
// calls, trimmed of surrounding whitespace. Tool-call ids, names and everything else
// are left out, so a client that renumbers ids still finds its recording.
type key [sha256.Size]byte

// isSystem reports whether role is a system prompt's: "system", or "developer",
// which newer OpenAI models take in its place.
func isSystem(role string) bool { return role == "system" || role == "developer" }

// conversationKey returns the key of msgs.
func conversationKey(msgs []openai.Message) key { return hashMessages(msgs, false) }

// withoutSystemKey returns the key of msgs without their system (and developer)
// messages: the same for a conversation whose system prompt was changed, added or
// removed.
func withoutSystemKey(msgs []openai.Message) key { return hashMessages(msgs, true) }

func hashMessages(msgs []openai.Message, skipSystem bool) key {
	h := sha256.New()
	var scratch bytes.Buffer
	for i := range msgs {
		m := &msgs[i]
		if skipSystem && isSystem(m.Role) {
			continue
		}
		writeField(h, m.Role)
		writeField(h, strings.TrimSpace(m.Content.String()))
		writeCount(h, len(m.ToolCalls))
		for _, tc := range m.ToolCalls {
			writeField(h, strings.TrimSpace(tc.Function.Name))
			writeField(h, normalArguments(&scratch, tc.Function.Arguments))
		}
	}
	var k key
	h.Sum(k[:0])
	return k
}

// normalArguments trims arguments and, when they are JSON, removes insignificant
// whitespace, so that pretty-printed and compact arguments match.
func normalArguments(scratch *bytes.Buffer, args string) string {
	args = strings.TrimSpace(args)
	scratch.Reset()
	if err := json.Compact(scratch, []byte(args)); err != nil {
		return args
	}
	return scratch.String()
}

// writeField writes s length-prefixed, so that field boundaries cannot shift.
func writeField(h hash.Hash, s string) {
	writeCount(h, len(s))
	_, _ = h.Write([]byte(s))
}

func writeCount(h hash.Hash, n int) {
	var b [binary.MaxVarintLen64]byte
	_, _ = h.Write(b[:binary.PutUvarint(b[:], uint64(n))])
}

// How a request found its recording (the values of HeaderReplayedMatch).
const (
	// MatchExact: the request's conversation is the recorded one.
	MatchExact = "exact"
	// MatchWithoutSystem: the conversations differ in their system (or developer)
	// messages only, and no other recording has the request's other messages. The
	// answer is the one recorded for the recording's system prompt.
	MatchWithoutSystem = "without-system"
	// MatchRedacted: the request's conversation is a recording's as redaction left it
	// (Options.Redactor), and the answer is the recorded one redacted with it.
	MatchRedacted = "redacted"
	// MatchRedactedWithoutSystem: as MatchWithoutSystem, for a redacted conversation.
	MatchRedactedWithoutSystem = "redacted-without-system"
)

// index finds the recorded call of a conversation.
type index struct {
	calls map[key]*recording
	// withoutSystem finds a recording by withoutSystemKey. A nil value marks a key
	// shared by recordings with different system prompts, which it does not answer.
	withoutSystem map[key]*recording
	recs          []*recording // every recording, in the order of the calls
	models        []string     // every model that answered, in first-seen order
	duplicates    int
	ambiguous     int // withoutSystem keys shared by more than one recording
}

// recording is one indexed call with its token counts, computed on first use.
type recording struct {
	call *dataset.Call
	// key is the call's conversationKey, whichever way a request found it, so that a
	// candidate's degradation draw is the same for both.
	key        key
	once       sync.Once
	prompt     int
	completion []int // per answer
}

func newIndex(calls []dataset.Call) *index {
	ix := &index{
		calls:         make(map[key]*recording, len(calls)),
		withoutSystem: make(map[key]*recording, len(calls)),
	}
	seen := map[string]bool{}
	for i := range calls {
		c := &calls[i]
		if len(c.Answers) == 0 {
			continue
		}
		for _, a := range c.Answers {
			if !seen[a.Model] {
				seen[a.Model] = true
				ix.models = append(ix.models, a.Model)
			}
		}
		k := conversationKey(c.Request.Messages)
		if _, dup := ix.calls[k]; dup {
			ix.duplicates++
			continue
		}
		rec := &recording{call: c, key: k}
		ix.calls[k] = rec
		ix.recs = append(ix.recs, rec)
		wk := withoutSystemKey(c.Request.Messages)
		if other, shared := ix.withoutSystem[wk]; shared {
			if other != nil {
				ix.ambiguous++
				ix.withoutSystem[wk] = nil
			}
			continue
		}
		ix.withoutSystem[wk] = rec
	}
	return ix
}

// hit is the recording a request found, and how.
type hit struct {
	rec   *recording
	match string // MatchExact, MatchWithoutSystem, MatchRedacted or MatchRedactedWithoutSystem
	// redacted, for a redacted match, are the recording's answers as redaction left
	// them (see redactedRecording.answers); nil otherwise.
	redacted []*dataset.Answer
}

// lookup returns the recording of the conversation msgs and how it matched: by the
// whole conversation, else by its redacted form (when red is not nil), else by the
// conversation without its system messages when exactly one recording has those,
// plain, then redacted. A redacted match comes before the plain one without system
// messages because it is the more specific: it matched every message. The zero hit
// says none matched. red is called on a miss of the whole conversation only, so that
// a lazily built redacted index is built when first needed.
func (ix *index) lookup(msgs []openai.Message, red func() *redactedIndex) hit {
	k := conversationKey(msgs)
	if rec := ix.calls[k]; rec != nil {
		return hit{rec: rec, match: MatchExact}
	}
	var ri *redactedIndex
	if red != nil {
		ri = red()
	}
	if rr := ri.exact(k); rr != nil {
		return hit{rec: rr.rec, match: MatchRedacted, redacted: rr.answers}
	}
	wk := withoutSystemKey(msgs)
	if rec := ix.withoutSystem[wk]; rec != nil {
		return hit{rec: rec, match: MatchWithoutSystem}
	}
	if rr := ri.withoutSys(wk); rr != nil {
		return hit{rec: rr.rec, match: MatchRedactedWithoutSystem, redacted: rr.answers}
	}
	return hit{}
}

// answer picks the answer for the resolved model: its own if it gave one, else the
// call's reference answer (for a redacted match: else the first answer redacted
// into the request's conversation). It returns the answer's position in the call
// too.
func (h hit) answer(model string) (dataset.Answer, int) {
	answers := h.rec.call.Answers
	if h.redacted == nil {
		for i, a := range answers {
			if a.Model == model {
				return a, i
			}
		}
		return answers[0], 0
	}
	first := -1
	for i, a := range h.redacted {
		if a == nil {
			continue
		}
		if a.Model == model {
			return *a, i
		}
		if first < 0 {
			first = i
		}
	}
	return *h.redacted[first], first
}

// reference returns the reference answer a candidate degrades: the call's first,
// redacted for a redacted match.
func (h hit) reference() dataset.Answer {
	if h.redacted == nil {
		return h.rec.call.Answers[0]
	}
	for _, a := range h.redacted {
		if a != nil {
			return *a
		}
	}
	return h.rec.call.Answers[0] // not reached: a redacted recording has an answer
}

// usage counts the recorded call's tokens once; the counts are shared by every
// replay of it.
func (rec *recording) usage(s *Server, answer int) openai.Usage {
	rec.once.Do(func() {
		rec.prompt = s.counter.Prompt(&rec.call.Request)
		rec.completion = make([]int, len(rec.call.Answers))
		for i := range rec.call.Answers {
			rec.completion[i] = s.completionTokens(rec.call.Answers[i].Message)
		}
	})
	return makeUsage(rec.prompt, rec.completion[answer])
}

func makeUsage(prompt, completion int) openai.Usage {
	return openai.Usage{
		PromptTokens:            prompt,
		CompletionTokens:        completion,
		TotalTokens:             prompt + completion,
		PromptTokensDetails:     &openai.PromptTokensDetails{},
		CompletionTokensDetails: &openai.CompletionTokensDetails{},
	}
}

func (s *Server) completionTokens(m openai.Message) int {
	return s.counter.Completion(&openai.ChatCompletion{Choices: []openai.Choice{{Message: m}}})
}
