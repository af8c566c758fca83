package compare

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/downshift-dev/downshift/internal/openai"
)

// ToolScore is how well a candidate's tool calls agree with the reference's. Calls are
// matched as a set: each count is the size of the best one-to-one assignment of
// candidate calls to reference calls under its criterion, so order never matters.
type ToolScore struct {
	// Expected is the number of calls the reference made (or the ground truth holds).
	Expected int
	// Candidate is the number of calls the candidate made.
	Candidate int
	// NameMatched counts reference calls paired with a candidate call of the same name.
	NameMatched int
	// ExactMatched counts reference calls paired with a candidate call of the same name
	// whose arguments are equal after normalisation (key order, number format, strings
	// trimmed, case-sensitive).
	ExactMatched int
	// Matched counts reference calls paired with a candidate call of the same name whose
	// arguments are leniently equal (BFCL's string standardisation, any allowed
	// alternative). It is BFCL's notion of a correct call.
	Matched int
	// Extra counts candidate calls left without a same-name partner; Missing counts
	// reference calls left without one.
	Extra, Missing int
	// InvalidArgs counts candidate calls whose arguments are not a JSON object.
	InvalidArgs int
	// NameAccuracy, ExactArgs and LenientArgs are NameMatched, ExactMatched and Matched
	// over max(Expected, Candidate), so extra calls cost as much as missing ones; all
	// three are 1 when neither side called anything.
	NameAccuracy, ExactArgs, LenientArgs float64
	// Pass is BFCL's verdict: as many calls as expected, each matched leniently. It
	// does not look at schemas; Score.Pass does.
	Pass bool

	// SchemaChecked is whether the candidate's calls were checked against the
	// request's tools (Answer with Request.Schemas set); the three fields below are
	// zero when it is false.
	SchemaChecked bool
	// SchemaValid counts candidate calls whose arguments are a JSON object that
	// validates against the called tool's parameters schema (a tool without one
	// accepts any object). A call to a tool whose schema does not compile is not valid.
	SchemaValid int
	// UnknownTool counts candidate calls to a function the request's tools do not
	// declare; none of them is schema-valid.
	UnknownTool int
	// SchemaError says why a called tool's parameters schema did not compile (the
	// first such tool); empty when every schema compiled. It tells a broken request
	// from a broken answer.
	SchemaError string `json:",omitempty"`
}

// SchemaOK reports whether every candidate call is schema-valid, or schemas were not
// checked.
func (s *ToolScore) SchemaOK() bool {
	return !s.SchemaChecked || s.SchemaValid == s.Candidate
}

// checkSchemas fills the schema fields of s: args are the candidate calls' parsed
// arguments, nil where they are not a JSON object.
func checkSchemas(s *ToolScore, calls []openai.ToolCall, args []map[string]any, opts Options) {
	if opts.Schemas == nil {
		return
	}
	s.SchemaChecked = true
	for j := range calls {
		tool := findTool(opts.Tools, calls[j].Function.Name)
		switch {
		case tool == nil:
			s.UnknownTool++
			continue
		case args[j] == nil:
			continue
		case len(tool.Parameters) == 0:
			s.SchemaValid++
			continue
		}
		err := opts.Schemas.Validate(tool.Parameters, args[j])
		switch {
		case err == nil:
			s.SchemaValid++
		case errors.Is(err, ErrInvalidSchema) && s.SchemaError == "":
			s.SchemaError = fmt.Sprintf("tool %q: %v", tool.Name, err)
		}
	}
}

// findTool returns the declaration of the named function among tools, or nil. Tool
// lists are short, so a scan beats building a map per scored answer.
func findTool(tools []openai.Tool, name string) *openai.FunctionDecl {
	for i := range tools {
		if tools[i].Function.Name == name {
			return &tools[i].Function
		}
	}
	return nil
}

// ExpectedCall is one call of a ground truth that may allow several answers, in BFCL's
// possible-answer form: each argument maps to its allowed values, any of which is
// right; "" among them means the argument may be left out. An allowed value that is an
// object has, for each member, a list of allowed values of its own (BFCL nests them so).
type ExpectedCall struct {
	Name string
	Args map[string][]any
}

// Options tune tool-call scoring. The zero value is ready to use.
type Options struct {
	// Required lists, by function name, the arguments the tool's JSON schema requires
	// (see RequiredArgs). A required argument must be present even where the ground
	// truth marks it optional with "". Nil: only the ground truth decides.
	Required map[string][]string
	// Tools are the request's tools, whose parameter schemas the candidate's calls are
	// checked against when Schemas is set.
	Tools []openai.Tool
	// Schemas compiles and caches the tools' schemas; nil: no schema check
	// (ToolScore.SchemaChecked false).
	Schemas *Schemas
}

// RequiredArgs reads the required arguments of each tool's JSON schema, for
// Options.Required. Compute it once per tool set, not per scored call.
func RequiredArgs(tools []openai.Tool) map[string][]string {
	out := make(map[string][]string, len(tools))
	for _, t := range tools {
		var s struct {
			Required []string `json:"required"`
		}
		if len(t.Function.Parameters) > 0 && json.Unmarshal(t.Function.Parameters, &s) == nil && len(s.Required) > 0 {
			out[t.Function.Name] = s.Required
		}
	}
	return out
}

// ErrBFCLAnswer is returned for a possible answer not in BFCL's form.
var ErrBFCLAnswer = errors.New("not a BFCL possible answer")

// ParseBFCLAnswer reads the ground_truth of a BFCL possible-answer row,
// [{"function": {"argument": [allowed values]}}, ...]. Dots in function names become
// underscores, as BFCL's OpenAI handler and downshift's importer write them.
func ParseBFCLAnswer(groundTruth []byte) ([]ExpectedCall, error) {
	var list []map[string]map[string][]any
	if err := json.Unmarshal(groundTruth, &list); err != nil {
		return nil, fmt.Errorf("compare: %w: %w", ErrBFCLAnswer, err)
	}
	out := make([]ExpectedCall, 0, len(list))
	for i, c := range list {
		if len(c) != 1 {
			return nil, fmt.Errorf("compare: %w: call %d has %d functions, want 1", ErrBFCLAnswer, i, len(c))
		}
		for name, args := range c {
			if args == nil {
				args = map[string][]any{}
			}
			out = append(out, ExpectedCall{Name: strings.ReplaceAll(name, ".", "_"), Args: args})
		}
	}
	return out, nil
}

// Pair levels: how far a candidate call agrees with a reference call. Each level
// implies the ones below it.
const (
	levelNone uint8 = iota
	levelName
	levelLenient
	levelExact
)

// ToolCalls scores a candidate's tool calls against a reference answer's. Arguments of
// both are parsed; a reference argument must be present in the candidate and the
// candidate may add none, under either comparison. No reference calls means no call
// was expected: any candidate call is extra and fails. opts.Required is not consulted:
// a concrete reference already names every argument the call must carry. With
// opts.Schemas set, each candidate call is also checked against its tool's parameters
// schema in opts.Tools (the Schema fields of ToolScore).
func ToolCalls(reference, candidate []openai.ToolCall, opts Options) ToolScore {
	cand, invalid := parseCandidate(candidate)
	ref := make([]map[string]any, len(reference))
	refOK := make([]bool, len(reference))
	for i, c := range reference {
		ref[i], refOK[i] = parseArgs(c.Function.Arguments)
	}
	s := score(len(reference), candidate, invalid, func(i, j int) uint8 {
		if reference[i].Function.Name != candidate[j].Function.Name {
			return levelNone
		}
		if !refOK[i] || cand[j] == nil {
			return levelName
		}
		if equal(ref[i], cand[j], exact) {
			return levelExact
		}
		if equal(ref[i], cand[j], lenient) {
			return levelLenient
		}
		return levelName
	})
	checkSchemas(&s, candidate, cand, opts)
	return s
}

// ToolCallsAgainst scores a candidate's tool calls against a ground truth that may
// allow several answers per argument (BFCL's possible answers). Exact and lenient both
// accept any allowed alternative; lenient also standardises strings as BFCL does. A
// candidate argument the ground truth does not name fails the call, as in BFCL. With
// opts.Schemas set, each candidate call is also checked against its tool's parameters
// schema in opts.Tools, as in ToolCalls.
func ToolCallsAgainst(expected []ExpectedCall, candidate []openai.ToolCall, opts Options) ToolScore {
	cand, invalid := parseCandidate(candidate)
	s := score(len(expected), candidate, invalid, func(i, j int) uint8 {
		e := &expected[i]
		if e.Name != candidate[j].Function.Name {
			return levelNone
		}
		if cand[j] == nil {
			return levelName
		}
		req := opts.Required[e.Name]
		switch {
		case argsMatch(e, cand[j], req, exact):
			return levelExact
		case argsMatch(e, cand[j], req, lenient):
			return levelLenient
		}
		return levelName
	})
	checkSchemas(&s, candidate, cand, opts)
	return s
}

func argsMatch(e *ExpectedCall, args map[string]any, required []string, m mode) bool {
	for k := range args {
		if _, ok := e.Args[k]; !ok {
			return false
		}
	}
	for k, allowed := range e.Args {
		v, present := args[k]
		if !matchAllowed(v, present, allowed, contains(required, k), m) {
			return false
		}
	}
	for _, k := range required {
		if _, ok := args[k]; !ok {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func parseCandidate(calls []openai.ToolCall) ([]map[string]any, int) {
	out := make([]map[string]any, len(calls))
	invalid := 0
	for j, c := range calls {
		m, ok := parseArgs(c.Function.Arguments)
		if !ok {
			invalid++
		}
		out[j] = m
	}
	return out, invalid
}

// score fills a ToolScore from the level of every (reference, candidate) pair.
func score(nRef int, candidate []openai.ToolCall, invalid int, level func(i, j int) uint8) ToolScore {
	nCand := len(candidate)
	s := ToolScore{Expected: nRef, Candidate: nCand, InvalidArgs: invalid}
	if nRef > 0 && nCand > 0 {
		levels := make([]uint8, nRef*nCand)
		for i := 0; i < nRef; i++ {
			for j := 0; j < nCand; j++ {
				levels[i*nCand+j] = level(i, j)
			}
		}
		s.NameMatched = maxMatching(levels, nRef, nCand, levelName)
		s.Matched = maxMatching(levels, nRef, nCand, levelLenient)
		s.ExactMatched = maxMatching(levels, nRef, nCand, levelExact)
	}
	s.Extra = nCand - s.NameMatched
	s.Missing = nRef - s.NameMatched
	den := max(nRef, nCand)
	if den == 0 {
		s.NameAccuracy, s.ExactArgs, s.LenientArgs, s.Pass = 1, 1, 1, true
		return s
	}
	s.NameAccuracy = float64(s.NameMatched) / float64(den)
	s.ExactArgs = float64(s.ExactMatched) / float64(den)
	s.LenientArgs = float64(s.Matched) / float64(den)
	s.Pass = nRef == nCand && s.Matched == nRef
	return s
}

// maxMatching returns the size of a maximum one-to-one matching between reference
// and candidate calls over the pairs whose level is at least min (Kuhn's augmenting
// paths; calls per answer are few, so O(n·m·min(n,m)) is nothing).
func maxMatching(levels []uint8, nRef, nCand int, min uint8) int {
	var buf [2 * 16]int
	var matchOf, seen []int // matchOf[j]: reference call holding candidate j, or -1
	if 2*nCand <= len(buf) {
		matchOf, seen = buf[:nCand], buf[nCand:2*nCand]
	} else {
		matchOf, seen = make([]int, nCand), make([]int, nCand)
	}
	for j := range matchOf {
		matchOf[j], seen[j] = -1, -1
	}
	var try func(i, round int) bool
	try = func(i, round int) bool {
		for j := 0; j < nCand; j++ {
			if levels[i*nCand+j] < min || seen[j] == round {
				continue
			}
			seen[j] = round
			if matchOf[j] < 0 || try(matchOf[j], round) {
				matchOf[j] = i
				return true
			}
		}
		return false
	}
	n := 0
	for i := 0; i < nRef; i++ {
		if try(i, i) {
			n++
		}
	}
	return n
}
