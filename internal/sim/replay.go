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

// conversationKey returns the key of msgs.
func conversationKey(msgs []openai.Message) key {
	h := sha256.New()
	var scratch bytes.Buffer
	for i := range msgs {
		m := &msgs[i]
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

// index finds the recorded call of a conversation.
type index struct {
	calls      map[key]*recording
	models     []string // every model that answered, in first-seen order
	duplicates int
}

// recording is one indexed call with its token counts, computed on first use.
type recording struct {
	call       *dataset.Call
	once       sync.Once
	prompt     int
	completion []int // per answer
}

func newIndex(calls []dataset.Call) *index {
	ix := &index{calls: make(map[key]*recording, len(calls))}
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
		ix.calls[k] = &recording{call: c}
	}
	return ix
}

// lookup returns the recording of the conversation with key k, or nil.
func (ix *index) lookup(k key) *recording {
	return ix.calls[k]
}

// answer picks the answer for the resolved model: its own if it gave one, else the
// call's reference answer. It returns the answer's position too.
func (rec *recording) answer(model string) (dataset.Answer, int) {
	for i, a := range rec.call.Answers {
		if a.Model == model {
			return a, i
		}
	}
	return rec.call.Answers[0], 0
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
