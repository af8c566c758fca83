package eval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// Call is one recorded call made ready for evaluation: its request, decoded, and the
// reference's answer.
type Call struct {
	ID      string
	Request []byte // the recorded request body, opened (not sealed)
	Req     *openai.ChatRequest
	// Answer is the reference's message: the first choice of the recorded response.
	Answer openai.Message
	// Stratum is what the reference did (see Stratum).
	Stratum string
	// Group identifies the conversation the call belongs to (see group): calls of one
	// conversation share a prefix, so they are kept in one split.
	Group string
	// Reference is the call as the reference model served it.
	Reference Reference
	// Tokens as recorded, to price a reference answer whose cost was not recorded
	// (imported calls).
	PromptTokens, CompletionTokens, CachedTokens int
}

// ErrNotEvaluable is wrapped by FromStoreCall for calls that cannot be a reference:
// failed calls, and calls whose response is a dataset's ground truth in a form other
// than a chat completion.
var ErrNotEvaluable = errors.New("eval: not a reference answer")

// FromStoreCall prepares a stored call whose payloads are opened (see seal.OpenCall).
// Failed calls and ground-truth records wrap ErrNotEvaluable.
func FromStoreCall(c *store.Call) (*Call, error) {
	if c.Status >= 400 || c.Status == 0 {
		return nil, fmt.Errorf("call %s: status %d: %w", c.ID, c.Status, ErrNotEvaluable)
	}
	if c.GroundTruth {
		return nil, fmt.Errorf("call %s: ground truth, not a model's answer: %w", c.ID, ErrNotEvaluable)
	}
	req, err := openai.DecodeChatRequest(c.Request)
	if err != nil {
		return nil, fmt.Errorf("call %s: request: %w", c.ID, err)
	}
	var resp openai.ChatCompletion
	if err := json.Unmarshal(c.Response, &resp); err != nil {
		return nil, fmt.Errorf("call %s: response: %w", c.ID, err)
	}
	if len(resp.Choices) == 0 {
		return nil, fmt.Errorf("call %s: response has no choices: %w", c.ID, ErrNotEvaluable)
	}
	ec := &Call{ID: c.ID, Request: c.Request, Req: req, Answer: resp.Choices[0].Message,
		PromptTokens: c.PromptTokens, CompletionTokens: c.CompletionTokens, CachedTokens: c.CachedTokens}
	ec.Stratum = Stratum(&ec.Answer)
	ec.Group = group(req)
	ec.Reference = Reference{CallID: c.ID, Model: c.ServedModel, Stratum: ec.Stratum,
		Latency: c.Latency, TTFT: c.TTFT, CostUSD: c.CostUSD}
	return ec, nil
}

// Stratum names what an answer did, for stratified sampling and per-action figures:
// the names of the tools it called, sorted and joined with "+", or "json" for a JSON
// object or array, or "text".
func Stratum(m *openai.Message) string {
	if len(m.ToolCalls) > 0 {
		names := make([]string, len(m.ToolCalls))
		for i, tc := range m.ToolCalls {
			names[i] = tc.Function.Name
		}
		slices.Sort(names)
		return strings.Join(slices.Compact(names), "+")
	}
	s := strings.TrimSpace(m.Content.String())
	if s != "" && (s[0] == '{' || s[0] == '[') && json.Valid([]byte(s)) {
		return "json"
	}
	return "text"
}

// group identifies a call's conversation by its system prompt and its first user
// message: an agent's later calls in one conversation repeat both, and different
// conversations almost never share the first user message. Keeping a conversation's
// calls in one split stops a test call's own earlier turns from being trained on.
func group(req *openai.ChatRequest) string {
	h := sha256.New()
	var system, user string
	for i := range req.Messages {
		m := &req.Messages[i]
		if m.Role == "system" && system == "" {
			system = m.Content.String()
		}
		if m.Role == "user" {
			user = m.Content.String()
			break
		}
	}
	fmt.Fprintf(h, "%d:%s%d:%s", len(system), system, len(user), user)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// dedupKey identifies a call's content: the request's messages and tools and the
// reference's answer, ignoring ids, so that a call recorded twice (a retry, a
// re-import under another id) counts once.
func dedupKey(c *Call) string {
	h := sha256.New()
	write := func(s string) { fmt.Fprintf(h, "%d:%s", len(s), s) }
	msgs := append(slices.Clip(c.Req.Messages), c.Answer)
	for i := range msgs {
		m := &msgs[i]
		write(m.Role)
		write(strings.TrimSpace(m.Content.String()))
		for _, tc := range m.ToolCalls {
			write(tc.Function.Name)
			write(compactJSON(tc.Function.Arguments))
		}
	}
	for _, t := range c.Req.Tools {
		write(t.Function.Name)
	}
	return string(h.Sum(nil))
}

// DedupKey is the key DrawSet deduplicates calls by (see dedupKey), for dataset export
// to leave out the same copies, and copies of held-out calls, that eval sets leave out.
func DedupKey(c *Call) string { return dedupKey(c) }

func compactJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return strings.TrimSpace(s)
	}
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}
