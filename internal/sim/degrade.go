package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// Degrade says how a candidate model spoils the recorded reference answers, so that a
// comparison of the candidate with the reference has a known true failure rate.
type Degrade struct {
	// Rate is the share (0..1) of calls whose answer is degraded. Which calls is a
	// seeded hash of the seed, the model name and the recorded conversation: the same
	// for every run, independent between candidates, and the same for a request that
	// found its recording another way (see MatchWithoutSystem and MatchRedacted).
	Rate float64
	// Kinds are the degradations to pick from, uniformly per call among those that
	// apply to the answer (see the Degrade* constants). Empty means all of them. When
	// none of Kinds applies (wrong_argument on a call without arguments, a text kind
	// on a tool call), the answer gets text_for_tool if it calls tools, else
	// truncate_text, so that a degraded answer always fails.
	Kinds []string
}

// The kinds of degradation.
const (
	// DegradeWrongTool calls a different tool of the request's tools, with the same
	// arguments.
	DegradeWrongTool = "wrong_tool"
	// DegradeWrongArgument changes the value of one argument of one call.
	DegradeWrongArgument = "wrong_argument"
	// DegradeDropCall leaves out one call: the last of parallel calls; a single call
	// leaves the answer's text, or a short text when it had none.
	DegradeDropCall = "drop_call"
	// DegradeTextForTool answers with text saying what it would call, calling nothing.
	DegradeTextForTool = "text_for_tool"
	// DegradeToolForText calls one of the request's tools where the reference
	// answered text.
	DegradeToolForText = "tool_for_text"
	// DegradeTruncateText cuts a text answer to its first half of words.
	DegradeTruncateText = "truncate_text"

	// Malformed answers, as small models give them and downshift's guards refuse.
	// They are not among the default kinds: name them in Kinds.

	// DegradeBrokenArguments cuts one call's arguments in the middle, so that they
	// are not JSON.
	DegradeBrokenArguments = "broken_arguments"
	// DegradeUnknownTool renames one call to a tool the request does not offer.
	DegradeUnknownTool = "unknown_tool"
)

// HeaderDegraded names the degradation applied to a candidate's answer.
const HeaderDegraded = "X-Downshift-Degraded"

var degradeKinds = []string{DegradeWrongTool, DegradeWrongArgument, DegradeDropCall, DegradeTextForTool,
	DegradeToolForText, DegradeTruncateText}

// malformedKinds are the kinds that make an answer malformed; they apply only when
// named.
var malformedKinds = []string{DegradeBrokenArguments, DegradeUnknownTool}

func (d Degrade) validate(model string) error {
	if strings.TrimSpace(model) == "" {
		return fmt.Errorf("sim: candidate with an empty model name")
	}
	if !(d.Rate >= 0 && d.Rate <= 1) {
		return fmt.Errorf("sim: candidate %s: rate %v is outside 0..1", model, d.Rate)
	}
	for _, k := range d.Kinds {
		if !slices.Contains(degradeKinds, k) && !slices.Contains(malformedKinds, k) {
			return fmt.Errorf("sim: candidate %s: kind %q: want one of %s", model, k,
				strings.Join(append(slices.Clone(degradeKinds), malformedKinds...), ", "))
		}
	}
	return nil
}

// degradeDraw returns two seeded numbers for (seed, model, conversation): u in [0, 1)
// decides whether the answer is degraded, pick chooses how.
func degradeDraw(seed uint64, model string, k key) (u float64, pick uint64) {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	_, _ = h.Write(b[:])
	writeField(h, model)
	_, _ = h.Write(k[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	u = float64(binary.LittleEndian.Uint64(sum[:8])>>11) / (1 << 53)
	return u, binary.LittleEndian.Uint64(sum[8:16])
}

// degrade returns a spoilt copy of msg (never sharing its tool calls) and the kind
// applied. tools are the request's tools; pick chooses the kind and what to change.
func degrade(msg openai.Message, tools []openai.Tool, kinds []string, pick uint64) (openai.Message, string, string) {
	if len(kinds) == 0 {
		kinds = degradeKinds
	}
	var can []string
	for _, k := range kinds {
		if degradeApplies(k, &msg, tools) && !slices.Contains(can, k) {
			can = append(can, k)
		}
	}
	kind := DegradeTruncateText
	if len(msg.ToolCalls) > 0 {
		kind = DegradeTextForTool
	}
	if len(can) > 0 {
		kind = can[pick%uint64(len(can))]
	}
	pick >>= 8 // the rest of the draw chooses within the kind
	out := msg
	out.ToolCalls = slices.Clone(msg.ToolCalls)
	finish := "stop"
	switch kind {
	case DegradeWrongTool:
		i := int(pick % uint64(len(out.ToolCalls)))
		others := otherTools(tools, out.ToolCalls[i].Function.Name)
		out.ToolCalls[i].Function.Name = others[(pick>>16)%uint64(len(others))]
	case DegradeWrongArgument:
		var withArgs []int
		for i, tc := range out.ToolCalls {
			if a, ok := argObject(tc.Function.Arguments); ok && len(a) > 0 {
				withArgs = append(withArgs, i)
			}
		}
		i := withArgs[pick%uint64(len(withArgs))]
		args, _ := argObject(out.ToolCalls[i].Function.Arguments)
		names := make([]string, 0, len(args))
		for n := range args {
			names = append(names, n)
		}
		slices.Sort(names)
		n := names[(pick>>16)%uint64(len(names))]
		args[n] = changeValue(args[n])
		b, _ := marshal(args) // decoded JSON always encodes
		out.ToolCalls[i].Function.Arguments = string(b)
	case DegradeDropCall:
		out.ToolCalls = out.ToolCalls[:len(out.ToolCalls)-1]
		if len(out.ToolCalls) == 0 && strings.TrimSpace(out.Content.String()) == "" {
			out.Content = openai.TextContent("Is there anything else I can help you with?")
		}
	case DegradeTextForTool:
		names := make([]string, len(out.ToolCalls))
		for i, tc := range out.ToolCalls {
			names[i] = tc.Function.Name
		}
		out.ToolCalls = nil
		out.Content = openai.TextContent("I would call " + strings.Join(names, " and ") + " to do this.")
	case DegradeToolForText:
		t := tools[pick%uint64(len(tools))].Function
		out.Content = openai.Content{IsNull: true}
		out.ToolCalls = []openai.ToolCall{{ID: fmt.Sprintf("call_sim_%016x", pick), Type: "function",
			Function: openai.FunctionCall{Name: t.Name, Arguments: "{}"}}}
	case DegradeBrokenArguments:
		i := int(pick % uint64(len(out.ToolCalls)))
		a := out.ToolCalls[i].Function.Arguments
		out.ToolCalls[i].Function.Arguments = a[:len(a)/2]
	case DegradeUnknownTool:
		i := int(pick % uint64(len(out.ToolCalls)))
		out.ToolCalls[i].Function.Name += "_v2"
	case DegradeTruncateText:
		words := strings.Fields(out.Content.String())
		text := strings.Join(words[:len(words)/2], " ")
		if len(words) < 2 {
			text = "I am not sure."
		}
		out.Content = openai.TextContent(text)
	}
	if len(out.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	return out, finish, kind
}

// degradeApplies reports whether kind can spoil msg.
func degradeApplies(kind string, msg *openai.Message, tools []openai.Tool) bool {
	calls := msg.ToolCalls
	switch kind {
	case DegradeWrongTool:
		for _, tc := range calls {
			if len(otherTools(tools, tc.Function.Name)) > 0 {
				return true
			}
		}
		return false
	case DegradeWrongArgument:
		for _, tc := range calls {
			if a, ok := argObject(tc.Function.Arguments); ok && len(a) > 0 {
				return true
			}
		}
		return false
	case DegradeDropCall, DegradeTextForTool, DegradeUnknownTool:
		return len(calls) > 0
	case DegradeBrokenArguments:
		for _, tc := range calls {
			if len(tc.Function.Arguments) < 2 {
				return false
			}
		}
		return len(calls) > 0
	case DegradeToolForText:
		return len(calls) == 0 && len(tools) > 0
	case DegradeTruncateText:
		return len(calls) == 0
	}
	return false
}

// otherTools returns the names of the tools not named name.
func otherTools(tools []openai.Tool, name string) []string {
	var out []string
	for _, t := range tools {
		if t.Function.Name != name && t.Function.Name != "" {
			out = append(out, t.Function.Name)
		}
	}
	return out
}

func argObject(s string) (map[string]any, bool) {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// changeValue returns a value of the same JSON type that no comparison takes for v:
// strings gain letters (so case- and punctuation-blind matching still differs),
// numbers grow by one, booleans flip, arrays and objects lose or gain a member.
func changeValue(v any) any {
	switch x := v.(type) {
	case string:
		return x + "X"
	case float64:
		if math.Abs(x) > 1<<52 {
			return x / 2
		}
		return x + 1
	case bool:
		return !x
	case []any:
		if len(x) > 0 {
			return x[:len(x)-1]
		}
		return []any{"X"}
	case map[string]any:
		if len(x) > 0 {
			return map[string]any{}
		}
		return map[string]any{"X": true}
	}
	return "X" // null
}
