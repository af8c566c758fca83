package guard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/downshift-dev/downshift/internal/compare"
	"github.com/downshift-dev/downshift/internal/openai"
)

// Check names one check, as configuration and Failure name it.
type Check string

// The checks, in the order they run.
const (
	// NotEmpty: each choice has content that is not blank, or tool calls. An answer
	// without choices fails it.
	NotEmpty Check = "not_empty"
	// NotRefusal: no choice sets the message's refusal field, nor (with
	// Options.RefusalPhrases) starts its content with a refusal phrase.
	NotRefusal Check = "not_refusal"
	// FinishReason: each choice finished with "stop" or "tool_calls", and
	// "tool_calls" only with calls. "length", "content_filter", none at all (a stream
	// cut off) or anything else fails. "stop" with calls passes: OpenAI finishes so
	// when tool_choice names the function. An answer without choices fails it.
	FinishReason Check = "finish_reason"
	// ToolKnown: every tool call is well formed (a function name, an id no other call
	// has) and calls a tool the request offers; tool_choice is respected ("none": no
	// call; "required": at least one; a named function or allowed_tools: only those)
	// and so is parallel_tool_calls: false (at most one call).
	ToolKnown Check = "tool_known"
	// JSONValid: when the request asks for JSON (response_format json_object or
	// json_schema), content parses as JSON, unless the answer calls tools instead;
	// every call's arguments parse as a JSON object.
	JSONValid Check = "json_valid"
	// SchemaValid: content matches response_format's json_schema; each call's
	// arguments match the called tool's parameters schema. A schema that does not
	// compile fails it too: the answer cannot be vouched for.
	SchemaValid Check = "schema_valid"
)

// AllChecks returns every check, in the order they run.
func AllChecks() []Check {
	return []Check{NotEmpty, NotRefusal, FinishReason, ToolKnown, JSONValid, SchemaValid}
}

// ErrUnknownCheck is wrapped by New's error for a check name it does not know.
var ErrUnknownCheck = errors.New("guard: unknown check")

// DefaultMaxRefusalScan is the default of Options.MaxRefusalScan.
const DefaultMaxRefusalScan = 80

// DefaultRefusalPhrases returns a short list of the phrases with which chat models
// open a blanket refusal, for Options.RefusalPhrases. It leaves out phrases that
// open legitimate answers ("I'm sorry, but I can't change a basic economy flight" is
// an airline agent following its policy), so it misses refusals worded otherwise.
func DefaultRefusalPhrases() []string {
	return []string{
		"i can't assist with that",
		"i cannot assist with that",
		"i can't help with that",
		"i cannot help with that",
		"i'm unable to help with that",
		"i am unable to help with that",
		"i'm not able to help with that",
		"i can't comply with",
		"i cannot comply with",
		"as an ai language model",
	}
}

// Options configure Guards. The zero value runs every check, refusal phrases off,
// with a schema cache of its own.
type Options struct {
	// Checks lists the checks to run; empty runs them all.
	Checks []Check
	// Schemas compiles and caches the request's schemas (tools' parameters,
	// response_format's json_schema). Share the one the shadow scorer uses. Nil: a
	// cache of its own with compare's default bounds.
	Schemas *compare.Schemas
	// RefusalPhrases, when not empty, makes content that holds one of them within its
	// first MaxRefusalScan bytes a refusal (case is ignored, and typographic
	// apostrophes match '). Nil: only the refusal field counts. See
	// DefaultRefusalPhrases.
	RefusalPhrases []string
	// MaxRefusalScan is how many bytes at the start of the content are searched for
	// a refusal phrase; 0 means DefaultMaxRefusalScan.
	MaxRefusalScan int
}

// Guards runs the configured checks on answers. It is immutable once built and safe
// for concurrent use.
type Guards struct {
	on      [numChecks]bool
	schemas *compare.Schemas
	phrases [][]byte // lower-cased, apostrophes folded
	scan    int
}

const numChecks = 6

func (c Check) index() int {
	switch c {
	case NotEmpty:
		return 0
	case NotRefusal:
		return 1
	case FinishReason:
		return 2
	case ToolKnown:
		return 3
	case JSONValid:
		return 4
	case SchemaValid:
		return 5
	}
	return -1
}

// New returns Guards configured by opts. A check name it does not know is an error
// wrapping ErrUnknownCheck.
func New(opts Options) (*Guards, error) {
	g := &Guards{schemas: opts.Schemas, scan: opts.MaxRefusalScan}
	if len(opts.Checks) == 0 {
		opts.Checks = AllChecks()
	}
	for _, c := range opts.Checks {
		i := c.index()
		if i < 0 {
			return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownCheck, clip(string(c), 32), checkList())
		}
		g.on[i] = true
	}
	if g.schemas == nil && g.on[SchemaValid.index()] {
		g.schemas = compare.NewSchemas(compare.SchemasOptions{})
	}
	if g.scan <= 0 {
		g.scan = DefaultMaxRefusalScan
	}
	for _, p := range opts.RefusalPhrases {
		if p = strings.TrimSpace(p); p != "" {
			g.phrases = append(g.phrases, fold(nil, p))
		}
	}
	return g, nil
}

func checkList() string {
	names := make([]string, 0, numChecks)
	for _, c := range AllChecks() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}

// Enabled reports whether c is one of the checks g runs.
func (g *Guards) Enabled(c Check) bool {
	i := c.index()
	return i >= 0 && g.on[i]
}

// Result is the verdict on one answer.
type Result struct {
	// Pass is true when no check failed.
	Pass bool
	// Failed lists the failures, by choice and then in the order the checks run; nil
	// when Pass.
	Failed []Failure
}

// Failure is one failed check. Detail says why for people (logs, the dashboard); it
// carries nothing of the answer beyond a called tool's name (quoted, clipped) and the
// byte offset of a JSON syntax error.
type Failure struct {
	Check  Check
	Detail string
}

// String returns the failures as "check: detail; ...", or "pass".
func (r Result) String() string {
	if len(r.Failed) == 0 {
		return "pass"
	}
	var b strings.Builder
	for i, f := range r.Failed {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(string(f.Check))
		b.WriteString(": ")
		b.WriteString(f.Detail)
	}
	return b.String()
}

// Fails reports whether check c failed.
func (r Result) Fails(c Check) bool {
	for _, f := range r.Failed {
		if f.Check == c {
			return true
		}
	}
	return false
}

// verdict collects failures; prefix names the choice when the answer has several.
type verdict struct {
	failed []Failure
	prefix string
}

func (v *verdict) fail(c Check, format string, args ...any) {
	v.failed = append(v.failed, Failure{Check: c, Detail: v.prefix + fmt.Sprintf(format, args...)})
}

// Check runs the configured checks on ans, the answer to req, every choice of it. A
// nil req is a request with no tools and no response_format.
func (g *Guards) Check(req *Request, ans *openai.ChatCompletion) Result {
	if req == nil {
		req = &Request{}
	}
	var v verdict
	if ans == nil || len(ans.Choices) == 0 {
		if g.on[NotEmpty.index()] {
			v.fail(NotEmpty, "the answer has no choices")
		}
		if g.on[FinishReason.index()] {
			v.fail(FinishReason, "the answer has no choices, so no finish_reason")
		}
		return Result{Pass: len(v.failed) == 0, Failed: v.failed}
	}
	for i := range ans.Choices {
		if len(ans.Choices) > 1 {
			v.prefix = fmt.Sprintf("choice %d: ", ans.Choices[i].Index)
		}
		g.checkChoice(&v, req, &ans.Choices[i])
	}
	return Result{Pass: len(v.failed) == 0, Failed: v.failed}
}

func (g *Guards) checkChoice(v *verdict, req *Request, ch *openai.Choice) {
	m := &ch.Message
	content := m.Content.Text
	if m.Content.IsParts {
		content = m.Content.String()
	}
	calls := m.ToolCalls
	if g.on[NotEmpty.index()] && len(calls) == 0 && strings.TrimSpace(content) == "" {
		v.fail(NotEmpty, "no content and no tool calls")
	}
	if g.on[NotRefusal.index()] {
		switch {
		case m.Refusal != nil && *m.Refusal != "":
			v.fail(NotRefusal, "the model refused (the message's refusal is set)")
		case g.refusalPhrase(content):
			v.fail(NotRefusal, "the content opens with a refusal phrase")
		}
	}
	if g.on[FinishReason.index()] {
		checkFinish(v, ch.FinishReason, len(calls))
	}
	if g.on[ToolKnown.index()] {
		checkToolUse(v, req, calls)
	}
	if g.on[JSONValid.index()] || g.on[SchemaValid.index()] {
		for i := range calls {
			g.checkArguments(v, req, i, &calls[i])
		}
		if len(calls) == 0 && wantsJSON(req.ResponseType) {
			g.checkContentJSON(v, req, content)
		}
	}
}

func checkFinish(v *verdict, reason string, calls int) {
	switch reason {
	case "stop":
	case "tool_calls":
		if calls == 0 {
			v.fail(FinishReason, "finish_reason is tool_calls but the answer makes no tool call")
		}
	case "":
		v.fail(FinishReason, "finish_reason is missing (a stream cut off?)")
	case "length":
		v.fail(FinishReason, "finish_reason is length: the answer was cut off at its token limit")
	case "content_filter":
		v.fail(FinishReason, "finish_reason is content_filter: the answer was filtered")
	default:
		if isIdent(reason) {
			v.fail(FinishReason, "finish_reason %q is neither stop nor tool_calls", reason)
		} else {
			v.fail(FinishReason, "finish_reason is neither stop nor tool_calls, nor a name")
		}
	}
}

// isIdent reports whether s looks like a finish_reason OpenAI or another upstream
// would send (function_call, eos, ...), so that a detail may name it: anything else
// may be a model's words.
func isIdent(s string) bool {
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// checkToolUse runs ToolKnown: each call well formed and offered, tool_choice and
// parallel_tool_calls respected.
func checkToolUse(v *verdict, req *Request, calls []openai.ToolCall) {
	tc := &req.ToolChoice
	switch {
	case tc.Mode == ChoiceNone && len(calls) > 0:
		v.fail(ToolKnown, "tool_choice is none but the answer makes %d tool call(s)", len(calls))
	case tc.Mode == ChoiceRequired && len(calls) == 0:
		if len(tc.Allowed) == 1 {
			v.fail(ToolKnown, "tool_choice requires a call to %q but the answer makes none", clip(tc.Allowed[0], maxName))
		} else {
			v.fail(ToolKnown, "tool_choice requires a tool call but the answer makes none")
		}
	}
	if req.NoParallelCalls && len(calls) > 1 {
		v.fail(ToolKnown, "parallel_tool_calls is false but the answer makes %d tool calls", len(calls))
	}
	for i := range calls {
		c := &calls[i]
		name := c.Function.Name
		switch {
		case c.Type != "" && c.Type != "function":
			if !req.hasToolType(c.Type) {
				v.fail(ToolKnown, "tool call %d is of type %q, which the request does not offer", i, clip(c.Type, 32))
			}
		case name == "":
			v.fail(ToolKnown, "tool call %d has no function name", i)
		case len(req.Tools) == 0:
			v.fail(ToolKnown, "tool call %d %q: the request offers no tools", i, clip(name, maxName))
		case req.tool(name) == nil:
			v.fail(ToolKnown, "tool call %d %q is not among the request's tools", i, clip(name, maxName))
		case len(tc.Allowed) > 0 && !contains(tc.Allowed, name):
			v.fail(ToolKnown, "tool call %d %q is not allowed by tool_choice", i, clip(name, maxName))
		}
		if c.ID == "" {
			v.fail(ToolKnown, "tool call %d has no id", i)
			continue
		}
		for j := range i {
			if calls[j].ID == c.ID {
				v.fail(ToolKnown, "tool calls %d and %d have the same id", j, i)
				break
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkArguments runs JSONValid and SchemaValid on one call's arguments. A failure is
// reported once: arguments that do not parse under JSONValid when it is on, else
// under SchemaValid when a schema was to be checked.
func (g *Guards) checkArguments(v *verdict, req *Request, i int, c *openai.ToolCall) {
	if c.Type != "" && c.Type != "function" {
		return // another kind of tool: no JSON arguments to read
	}
	var params []byte
	if g.on[SchemaValid.index()] {
		if t := req.tool(c.Function.Name); t != nil {
			params = t.Parameters
		}
	}
	val, problem := parseJSON(c.Function.Arguments, params != nil, true)
	if problem != "" {
		switch {
		case g.on[JSONValid.index()]:
			v.fail(JSONValid, "tool call %d %q: arguments are %s", i, clip(c.Function.Name, maxName), problem)
		case params != nil:
			v.fail(SchemaValid, "tool call %d %q: arguments are %s, so they cannot match the parameters schema",
				i, clip(c.Function.Name, maxName), problem)
		}
		return
	}
	if params == nil {
		return
	}
	switch compiled, why := g.validate(params, val); {
	case !compiled:
		v.fail(SchemaValid, "tool call %d %q: the parameters schema %s, so the arguments cannot be checked",
			i, clip(c.Function.Name, maxName), why)
	case why != "":
		v.fail(SchemaValid, "tool call %d %q: arguments do not match the parameters schema: %s",
			i, clip(c.Function.Name, maxName), why)
	}
}

// checkContentJSON runs JSONValid and SchemaValid on content the request asked to be
// JSON.
func (g *Guards) checkContentJSON(v *verdict, req *Request, content string) {
	schema := req.ResponseSchema
	if !g.on[SchemaValid.index()] || req.ResponseType != "json_schema" {
		schema = nil
	}
	val, problem := parseJSON(content, schema != nil, false)
	if problem != "" {
		switch {
		case g.on[JSONValid.index()]:
			v.fail(JSONValid, "content is %s", problem)
		case schema != nil:
			v.fail(SchemaValid, "content is %s, so it cannot match response_format's json_schema", problem)
		}
		return
	}
	if schema == nil {
		return
	}
	switch compiled, why := g.validate(schema, val); {
	case !compiled:
		v.fail(SchemaValid, "response_format's json_schema %s, so the content cannot be checked", why)
	case why != "":
		v.fail(SchemaValid, "content does not match response_format's json_schema: %s", why)
	}
}

// validate checks val against schema. compiled is false when the schema does not
// compile, why then saying so; otherwise why says where val fails it, and is empty
// when val is valid.
func (g *Guards) validate(schema []byte, val any) (compiled bool, why string) {
	err := g.schemas.Validate(schema, val)
	switch {
	case err == nil:
		return true, ""
	case errors.Is(err, compare.ErrRemoteRef):
		return false, "refers to another document (never loaded)"
	case errors.Is(err, compare.ErrInvalidSchema):
		return false, "does not compile"
	}
	return true, mismatch(err)
}

// maxName bounds a tool name quoted in a detail: a model can emit anything there.
const maxName = 64
