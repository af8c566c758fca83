package discover

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/workload"
)

// Output types of a reference answer.
const (
	OutputToolCalls = "tool_calls"
	OutputText      = "text"
	OutputJSON      = "json"
)

// Action is what the reference model did in answer to a call.
type Action struct {
	// Label is the tool name(s) called, sorted and joined by "+", or "text" or "json";
	// "" when the call has no answer to read.
	Label string
	// Output is OutputToolCalls, OutputText or OutputJSON ("" with no answer).
	Output string
	Tools  []string // names of the tools called, in order
}

// ReadAction reads the reference's action from an answer: a chat.completion (its first
// choice's message), a bare assistant message, or an array of tool calls. Content that
// parses as a JSON object or array is OutputJSON. Anything else (an error body,
// nothing) gives the zero Action.
func ReadAction(answer []byte) Action {
	answer = bytes.TrimSpace(answer)
	if len(answer) == 0 {
		return Action{}
	}
	var msg openai.Message
	switch answer[0] {
	case '[':
		if json.Unmarshal(answer, &msg.ToolCalls) != nil {
			return Action{}
		}
	case '{':
		var body struct {
			Choices []struct {
				Message openai.Message `json:"message"`
			} `json:"choices"`
			Role string `json:"role"`
		}
		if json.Unmarshal(answer, &body) != nil {
			return Action{}
		}
		switch {
		case len(body.Choices) > 0:
			msg = body.Choices[0].Message
		case body.Role != "":
			if json.Unmarshal(answer, &msg) != nil {
				return Action{}
			}
		default:
			return Action{}
		}
	default:
		return Action{}
	}
	return actionOf(msg)
}

func actionOf(msg openai.Message) Action {
	if len(msg.ToolCalls) > 0 {
		a := Action{Output: OutputToolCalls}
		for _, tc := range msg.ToolCalls {
			a.Tools = append(a.Tools, tc.Function.Name)
		}
		names := slices.Clone(a.Tools)
		slices.Sort(names)
		a.Label = strings.Join(slices.Compact(names), "+")
		return a
	}
	text := strings.TrimSpace(msg.Content.String())
	if text != "" && (text[0] == '{' || text[0] == '[') && json.Valid([]byte(text)) {
		return Action{Label: OutputJSON, Output: OutputJSON}
	}
	return Action{Label: OutputText, Output: OutputText}
}

// Namespaces of discover's own features in the hashed space (workload's request
// features use namespaces below 16).
const (
	nsAction   = 16
	nsTemplate = 17
)

// actionNames returns the names of a's action features: the label, and for an answer
// that calls several tools also each tool and the number of calls, so that parallel
// calls of one tool lie near single calls of it. Shared features such as the output
// type are left out on purpose within a template: they would pull every
// tool-calling action together and blur the tools apart.
//
// Pooled calls come from many templates whose tools rarely share names, so for them
// the action is described by its shape as well: the output type, and whether it makes
// no call, one or several, of one tool or of several. Only these three counts are told
// apart: two calls and four of one tool are the same task asked for more items.
func actionNames(a Action, pooled bool) []string {
	names := []string{"label:" + a.Label}
	if pooled {
		distinct := len(slices.Compact(slices.Sorted(slices.Values(a.Tools))))
		names = append(names, "out:"+a.Output, "calls:"+howMany(len(a.Tools)), "distinct:"+howMany(distinct))
		for _, t := range a.Tools {
			names = append(names, "tool:"+t)
		}
		return names
	}
	if len(a.Tools) > 1 {
		names = append(names, "calls:"+strconv.Itoa(min(len(a.Tools), 4)))
		for _, t := range a.Tools {
			names = append(names, "tool:"+t)
		}
	}
	return names
}

// template is what discovery reads of a pooled call's request beyond its
// conversation: the form of the template it was made from.
type template struct {
	bad    bool     // the body is not a chat request
	tools  []string // names of the tools offered, in request order
	format string   // response_format type
	system string   // text of the first system or developer message
	hasSys bool
}

// readTemplate reads a request's template from its head (no full decode).
func readTemplate(body []byte) template {
	h, err := openai.ScanChatRequest(body)
	if err != nil {
		return template{bad: true}
	}
	t := template{tools: h.ToolNames, format: h.ResponseType, hasSys: h.HasSystem}
	if h.HasSystem {
		t.system = h.System().String()
	}
	return t
}

// templateNames returns the names of a request's template features, for calls whose
// templates are pooled: the tool names offered, their number (on a log scale), the
// response format and the words of the system prompt.
func templateNames(t template) []string {
	if t.bad {
		return []string{"bad-request"}
	}
	names := []string{"ntools:" + strconv.Itoa(logBucket(len(t.tools))), "format:" + t.format}
	for _, n := range t.tools {
		names = append(names, "offer:"+n)
	}
	if t.hasSys {
		for _, w := range tokens(t.system, 64) {
			names = append(names, "sys:"+w)
		}
		names = append(names, "system")
	}
	return names
}

// logBucket maps a count to 0, 1, 2 (2-3), 3 (4-7), 4 (8-15) and so on: a task offered
// three tools is nearer one offered four than one offered thirty.
func logBucket(n int) int {
	if n <= 0 {
		return 0
	}
	return bits.Len(uint(n))
}

// howMany names a count as "none", "one" or "several".
func howMany(n int) string {
	return [...]string{"none", "one", "several"}[min(max(n, 0), 2)]
}

// shapeKey names the shape of a pooled call's task: how many tools it is offered
// (none, one, several), the response format it asks for, and, unless requestOnly, the
// form of the reference's answer (no call and its output type, one call, several).
// The shape is what calls of one kind of task share when their templates do not: a
// call that must pick one of several tools, one that must call one tool several times
// and one that must decline are different tasks, whatever their topics.
func shapeKey(t template, a Action, requestOnly bool) string {
	if t.bad {
		return "bad-request"
	}
	key := "tools=" + howMany(len(t.tools))
	if t.format != "" {
		key += ",format=" + t.format
	}
	if !requestOnly && a.Label != "" {
		if len(a.Tools) == 0 {
			key += ",answer=" + a.Output
		} else {
			key += ",calls=" + howMany(len(a.Tools))
		}
	}
	return key
}

// keepShared drops the names that occur in fewer than two of the calls in df: a
// feature of one call only (a tool name no other pooled template has) tells nothing
// about which calls belong together, and would only push that call away from all.
func keepShared(names []string, df map[string]int) []string {
	out := names[:0]
	for _, n := range names {
		if df[n] >= 2 {
			out = append(out, n)
		}
	}
	return out
}

func oneHot(ns uint64, names []string, dimBits int) workload.Vector {
	var v workload.Vector
	for _, n := range names {
		ix := workload.HashFeature(ns, n, dimBits)
		if i := slices.Index(v.Idx, ix); i >= 0 {
			v.Val[i]++
			continue
		}
		v.Idx = append(v.Idx, ix)
		v.Val = append(v.Val, 1)
	}
	scale(v, 1)
	return v
}

// scale sets v's norm to norm (a zero vector stays zero).
func scale(v workload.Vector, norm float64) {
	var s float64
	for _, x := range v.Val {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	f := float32(norm / sqrt(s))
	for i := range v.Val {
		v.Val[i] *= f
	}
}

// projector maps sparse hashed vectors to dense ones of dim dimensions by a sparse
// random projection: each feature adds ±1/√s to s fixed coordinates, which keeps inner
// products in expectation (a sparse Johnson-Lindenstrauss transform).
type projector struct {
	dim int
	s   int
}

func (pr projector) add(dst []float32, v workload.Vector, weight float32) {
	inv := weight / float32(sqrt(float64(pr.s)))
	for i, ix := range v.Idx {
		x := v.Val[i] * inv
		h := uint64(ix)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
		for range pr.s {
			h ^= h >> 29
			h *= 0xbf58476d1ce4e5b9
			h ^= h >> 32
			pos := int((h >> 1) % uint64(pr.dim))
			if h&1 == 0 {
				dst[pos] += x
			} else {
				dst[pos] -= x
			}
		}
	}
}

// tokens returns up to max lower-cased words of s that make good labels: letters only,
// at least three of them, not a stop word.
func tokens(s string, max int) []string {
	var out []string
	for i := 0; i < len(s) && len(out) < max; {
		c := s[i]
		if !isLetter(c) && !isDigit(c) {
			i++
			continue
		}
		j := i
		digit := false
		for j < len(s) && (isLetter(s[j]) || isDigit(s[j]) || s[j] == '_') {
			digit = digit || isDigit(s[j])
			j++
		}
		w := strings.ToLower(s[i:j])
		if !digit && len(w) >= 3 && !stopWords[w] {
			out = append(out, w)
		}
		i = j
	}
	return out
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`the and for are but not you your yours with have has had
		this that these those from they them their there what which who whom when where why how
		can could would should will shall may might must was were been being does did doing
		all any both each few more most other some such only own same than too very just into
		about above after again against below between during before over under out off once
		here then also its our ours his her hers him she himself herself itself myself
		yourself let please thank thanks okay yes true false null none`) {
		m[w] = true
	}
	return m
}()
