package openai

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Accumulator reassembles a streamed chat completion into the one chat.completion
// the same call would have returned unstreamed. Feed it every chunk in order with
// Add or AddData; ask for the result with Completion at any point. Logprobs are not
// kept. It is not safe for concurrent use.
type Accumulator struct {
	head      ChatCompletionChunk // id, created, model, ... from the chunks
	usage     *Usage
	simulated bool
	choices   []*choiceState // in order of first appearance
}

type choiceState struct {
	index        int
	role         string
	content      strings.Builder
	sawContent   bool
	refusal      strings.Builder
	sawRefusal   bool
	toolCalls    []*toolCallState // in order of first appearance
	finishReason string
}

type toolCallState struct {
	index int
	id    string
	typ   string
	name  string
	args  strings.Builder
}

// NewAccumulator returns an empty accumulator.
func NewAccumulator() *Accumulator { return &Accumulator{} }

// AddData parses data, the payload of one SSE event, as a chunk and adds it. It
// returns the parsed chunk so that the caller parses each event once. The "[DONE]"
// event is not a chunk: check IsDone first. A chunk carrying an upstream error
// (chunk.Error) is returned and otherwise ignored.
func (a *Accumulator) AddData(data []byte) (*ChatCompletionChunk, error) {
	c := &ChatCompletionChunk{}
	if err := decodeChunk(data, c); err != nil {
		return nil, fmt.Errorf("openai: parsing stream chunk: %w", err)
	}
	a.Add(c)
	return c, nil
}

// Add adds one chunk. A nil chunk is ignored.
func (a *Accumulator) Add(c *ChatCompletionChunk) {
	if c == nil {
		return
	}
	h := &a.head
	// Some upstreams open with a chunk that has no id or model (Azure's prompt
	// filter results), so each field is taken from the first chunk that has it.
	if h.ID == "" {
		h.ID = c.ID
	}
	if h.Created == 0 {
		h.Created = c.Created
	}
	if h.Model == "" {
		h.Model = c.Model
	}
	if h.SystemFingerprint == "" {
		h.SystemFingerprint = c.SystemFingerprint
	}
	if h.ServiceTier == "" {
		h.ServiceTier = c.ServiceTier
	}
	a.simulated = a.simulated || c.Simulated
	if c.Usage != nil {
		u := *c.Usage
		a.usage = &u
	}
	for i := range c.Choices {
		a.addChoice(&c.Choices[i])
	}
}

func (a *Accumulator) addChoice(cc *ChunkChoice) {
	var st *choiceState
	for _, s := range a.choices {
		if s.index == cc.Index {
			st = s
			break
		}
	}
	if st == nil {
		st = &choiceState{index: cc.Index}
		a.choices = append(a.choices, st)
	}
	d := &cc.Delta
	if st.role == "" {
		st.role = d.Role
	}
	if d.Content != nil {
		st.content.WriteString(*d.Content)
		st.sawContent = true
	}
	if d.Refusal != nil {
		st.refusal.WriteString(*d.Refusal)
		st.sawRefusal = true
	}
	for i := range d.ToolCalls {
		st.addToolCall(&d.ToolCalls[i])
	}
	if cc.FinishReason != nil && *cc.FinishReason != "" {
		st.finishReason = *cc.FinishReason
	}
}

func (st *choiceState) addToolCall(td *ToolCallDelta) {
	var tc *toolCallState
	for _, t := range st.toolCalls {
		if t.index == td.Index {
			tc = t
			break
		}
	}
	if tc == nil {
		tc = &toolCallState{index: td.Index}
		st.toolCalls = append(st.toolCalls, tc)
	}
	if tc.id == "" {
		tc.id = td.ID
	}
	if tc.typ == "" {
		tc.typ = td.Type
	}
	if tc.name == "" {
		tc.name = td.Function.Name
	}
	tc.args.WriteString(td.Function.Arguments)
}

// Completion returns the chunks added so far as one chat.completion: choices sorted
// by index; each message's role defaulting to "assistant"; content concatenated, or
// null when there was none or the choice made tool calls or refused with no text;
// refusal concatenated; tool calls merged by their delta index (id, type and name
// from the first piece that has them, type defaulting to "function", arguments
// concatenated in order) and sorted by it; finish_reason the last one sent; usage
// from the last chunk that had it. Completion does not change the accumulator.
func (a *Accumulator) Completion() *ChatCompletion {
	out := &ChatCompletion{
		ID:                a.head.ID,
		Object:            "chat.completion",
		Created:           a.head.Created,
		Model:             a.head.Model,
		SystemFingerprint: a.head.SystemFingerprint,
		ServiceTier:       a.head.ServiceTier,
		Simulated:         a.simulated,
		Choices:           make([]Choice, 0, len(a.choices)),
	}
	if a.usage != nil {
		u := *a.usage
		out.Usage = &u
	}
	states := slices.Clone(a.choices)
	slices.SortStableFunc(states, func(x, y *choiceState) int { return cmp.Compare(x.index, y.index) })
	for _, st := range states {
		out.Choices = append(out.Choices, st.choice())
	}
	return out
}

func (st *choiceState) choice() Choice {
	m := Message{Role: st.role}
	if m.Role == "" {
		m.Role = "assistant"
	}
	text := st.content.String()
	refusal := st.refusal.String()
	switch {
	case text != "":
		m.Content = TextContent(text)
	case !st.sawContent || len(st.toolCalls) > 0 || refusal != "":
		m.Content = Content{IsNull: true}
	default:
		m.Content = TextContent("")
	}
	if refusal != "" {
		m.Refusal = &refusal
	}
	calls := slices.Clone(st.toolCalls)
	slices.SortStableFunc(calls, func(x, y *toolCallState) int { return cmp.Compare(x.index, y.index) })
	for _, tc := range calls {
		typ := tc.typ
		if typ == "" {
			typ = "function"
		}
		m.ToolCalls = append(m.ToolCalls, ToolCall{
			ID:       tc.id,
			Type:     typ,
			Function: FunctionCall{Name: tc.name, Arguments: tc.args.String()},
		})
	}
	return Choice{Index: st.index, Message: m, FinishReason: st.finishReason}
}

// IsUsageOnly reports whether c is the chunk that stream_options.include_usage adds
// at the end of a stream: no choices, usage set. The gateway drops it when the
// client did not ask for usage.
func IsUsageOnly(c *ChatCompletionChunk) bool {
	return c != nil && len(c.Choices) == 0 && c.Usage != nil
}
