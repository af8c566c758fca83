package compare

import (
	"math"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

func call(name, args string) openai.ToolCall {
	return openai.ToolCall{Type: "function", Function: openai.FunctionCall{Name: name, Arguments: args}}
}

func calls(c ...openai.ToolCall) []openai.ToolCall { return c }

// tri is the expected scores of a case: NameAccuracy, ExactArgs, LenientArgs, Pass.
type tri struct {
	name, exact, lenient float64
	pass                 bool
}

func (w tri) check(t *testing.T, s ToolScore) {
	t.Helper()
	if s.NameAccuracy != w.name || s.ExactArgs != w.exact || s.LenientArgs != w.lenient || s.Pass != w.pass {
		t.Errorf("got name=%v exact=%v lenient=%v pass=%v, want %+v (%+v)", s.NameAccuracy, s.ExactArgs, s.LenientArgs, s.Pass, w, s)
	}
}

func TestToolCallsAgainstPossibleAnswer(t *testing.T) {
	answer := []byte(`[{"school.find": {"department": ["Science"], "school": ["Bluebird High School", "Bluebird HS"],
		"grade": [5, ""], "filters": [{"city": ["Austin", "ATX"], "open": [true, ""]}], "tags": [["a", "b"], ""]}},
		{"math.add": {"x": [2.5], "y": [3]}}]`)
	exp, err := ParseBFCLAnswer(answer)
	if err != nil {
		t.Fatal(err)
	}
	school := func(args string) openai.ToolCall { return call("school_find", args) }
	add := call("math_add", `{"x": 2.5, "y": 3}`)
	base := `"department": "Science", "school": "Bluebird High School", "filters": {"city": "Austin"}`
	opts := Options{Required: map[string][]string{"school_find": {"department", "school"}, "math_add": {"x", "y"}}}
	tests := []struct {
		name string
		cand []openai.ToolCall
		opts Options
		want tri
	}{
		{"ground truth", calls(school(`{`+base+`}`), add), opts, tri{1, 1, 1, true}},
		{"calls reordered", calls(add, school(`{`+base+`}`)), opts, tri{1, 1, 1, true}},
		{"key order and spacing", calls(school(`{"filters":{"city":"Austin"},"school":"Bluebird High School","department":"Science"}`), add), opts, tri{1, 1, 1, true}},
		{"second alternative", calls(school(`{"department": "Science", "school": "Bluebird HS", "filters": {"city": "ATX"}}`), add), opts, tri{1, 1, 1, true}},
		{"optional argument given", calls(school(`{`+base+`, "grade": 5, "tags": ["a", "b"]}`), add), opts, tri{1, 1, 1, true}},
		{"int as float", calls(school(`{`+base+`, "grade": 5.0}`), call("math_add", `{"x": 2.50, "y": 3.0}`)), opts, tri{1, 1, 1, true}},
		{"case and punctuation only lenient", calls(school(`{"department": "science", "school": "bluebird high-school.", "filters": {"city": "Austin"}}`), add), opts, tri{1, 0.5, 1, true}},
		{"surrounding spaces exact", calls(school(`{"department": " Science ", "school": "Bluebird High School", "filters": {"city": "Austin"}}`), add), opts, tri{1, 1, 1, true}},
		{"wrong function", calls(call("school_search", `{`+base+`}`), add), opts, tri{0.5, 0.5, 0.5, false}},
		{"missing required argument", calls(school(`{"school": "Bluebird High School", "filters": {"city": "Austin"}}`), add), opts, tri{1, 0.5, 0.5, false}},
		{"missing argument the answer requires", calls(school(`{"department": "Science", "school": "Bluebird High School"}`), add), opts, tri{1, 0.5, 0.5, false}},
		{"schema requires what the answer calls optional", calls(school(`{`+base+`}`), add), Options{Required: map[string][]string{"school_find": {"grade"}}}, tri{1, 0.5, 0.5, false}},
		{"wrong value", calls(school(`{`+base+`}`), call("math_add", `{"x": 2.5, "y": 4}`)), opts, tri{1, 0.5, 0.5, false}},
		{"wrong nested value", calls(school(`{"department": "Science", "school": "Bluebird High School", "filters": {"city": "Dallas"}}`), add), opts, tri{1, 0.5, 0.5, false}},
		{"list reordered", calls(school(`{`+base+`, "tags": ["b", "a"]}`), add), opts, tri{1, 0.5, 0.5, false}},
		{"unknown argument", calls(school(`{`+base+`, "limit": 3}`), add), opts, tri{1, 0.5, 0.5, false}},
		{"number as string", calls(school(`{`+base+`}`), call("math_add", `{"x": "2.5", "y": 3}`)), opts, tri{1, 0.5, 0.5, false}},
		{"bool as string", calls(school(`{"department": "Science", "school": "Bluebird High School", "filters": {"city": "Austin", "open": "true"}}`), add), opts, tri{1, 0.5, 0.5, false}},
		{"extra call", calls(school(`{`+base+`}`), add, add), opts, tri{2.0 / 3, 2.0 / 3, 2.0 / 3, false}},
		{"missing call", calls(add), opts, tri{0.5, 0.5, 0.5, false}},
		{"no call", nil, opts, tri{0, 0, 0, false}},
		{"arguments not JSON", calls(school(`{`+base), add), opts, tri{1, 0.5, 0.5, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, ToolCallsAgainst(exp, tc.cand, tc.opts))
		})
	}
}

func TestToolCalls(t *testing.T) {
	ref := calls(call("get_weather", `{"city": "Paris", "days": 3, "units": {"temp": "C"}}`), call("get_time", `{"tz": "Europe/Paris"}`))
	tests := []struct {
		name      string
		ref, cand []openai.ToolCall
		want      tri
		extra     int
	}{
		{"same", ref, ref, tri{1, 1, 1, true}, 0},
		{"reordered, reformatted", ref, calls(call("get_time", `{ "tz":"Europe/Paris" }`), call("get_weather", `{"units":{"temp":"C"},"days":3.0,"city":"Paris"}`)), tri{1, 1, 1, true}, 0},
		{"case differs", ref, calls(call("get_weather", `{"city": "paris", "days": 3, "units": {"temp": "c"}}`), ref[1]), tri{1, 0.5, 1, true}, 0},
		{"number as string", ref, calls(call("get_weather", `{"city": "Paris", "days": "3", "units": {"temp": "C"}}`), ref[1]), tri{1, 0.5, 0.5, false}, 0},
		{"argument added", ref, calls(call("get_weather", `{"city": "Paris", "days": 3, "units": {"temp": "C"}, "hourly": false}`), ref[1]), tri{1, 0.5, 0.5, false}, 0},
		{"extra call", ref, calls(ref[0], ref[1], call("get_news", `{}`)), tri{2.0 / 3, 2.0 / 3, 2.0 / 3, false}, 1},
		{"no call expected, none made", nil, nil, tri{1, 1, 1, true}, 0},
		{"no call expected, one made", nil, calls(ref[1]), tri{0, 0, 0, false}, 1},
		{"empty arguments are an empty object", calls(call("ping", "")), calls(call("ping", "{}")), tri{1, 1, 1, true}, 0},
		// Two calls of one function: the assignment must not pair greedily.
		{"same function twice, swapped", calls(call("f", `{"a": 1}`), call("f", `{"a": 2}`)), calls(call("f", `{"a": 2}`), call("f", `{"a": 1}`)), tri{1, 1, 1, true}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ToolCalls(tc.ref, tc.cand, Options{})
			tc.want.check(t, s)
			if s.Extra != tc.extra {
				t.Errorf("Extra = %d, want %d", s.Extra, tc.extra)
			}
		})
	}
}

func TestMaxMatchingBeatsGreedy(t *testing.T) {
	// Reference 0 matches candidates 0 and 1; reference 1 only candidate 0. Greedy
	// pairing 0–0 would leave reference 1 unmatched.
	levels := []uint8{levelExact, levelExact, levelExact, levelNone}
	if n := maxMatching(levels, 2, 2, levelExact); n != 2 {
		t.Fatalf("matched %d, want 2", n)
	}
}

func TestLenientEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"New York", "new york", true},
		{"New York", "NewYork", true},
		{"new-york_city.", "New York City", true},
		{"it's", `it"s`, true},
		{"Ünïcode", "üNÏCODE", true},
		{"", "  ", true},
		{"abc", "abd", false},
		{"abc", "abcd", false},
		{"5", "5.0", false},
	}
	for _, tc := range tests {
		if got := lenientEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("lenientEqual(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestJSON(t *testing.T) {
	ref := `{"name": "Ada", "age": 36, "langs": ["en", "fr"], "addr": {"city": "London", "zip": null}, "tags": {}}`
	tests := []struct {
		name       string
		ref, cand  string
		valid      bool
		p, r, f1   float64
		candFields int
	}{
		{"same, reordered", ref, `{"tags": {}, "addr": {"zip": null, "city": "London"}, "langs": ["en","fr"], "age": 36.0, "name": "Ada"}`, true, 1, 1, 1, 7},
		{"one wrong field", ref, `{"name": "Ada", "age": 37, "langs": ["en", "fr"], "addr": {"city": "London", "zip": null}, "tags": {}}`, true, 6.0 / 7, 6.0 / 7, 6.0 / 7, 7},
		{"missing and extra", ref, `{"name": "Ada", "age": 36, "extra": 1}`, true, 2.0 / 3, 2.0 / 7, 0.4, 3},
		{"type change", `{"n": 1}`, `{"n": "1"}`, true, 0, 0, 0, 1},
		{"invalid", ref, `{"name": "Ada"`, false, 0, 0, 0, 0},
		{"scalars", `42`, `42.0`, true, 1, 1, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := JSON(tc.ref, tc.cand)
			if s.Valid != tc.valid || !near(s.Precision, tc.p) || !near(s.Recall, tc.r) || !near(s.F1, tc.f1) || s.CandidateFields != tc.candFields {
				t.Errorf("got %+v, want valid=%v p=%v r=%v f1=%v fields=%d", s, tc.valid, tc.p, tc.r, tc.f1, tc.candFields)
			}
		})
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		name       string
		ref, cand  string
		exact      bool
		f1, rougeL float64
	}{
		{"same", "The cat sat.", " The cat sat. ", true, 1, 1},
		{"case and punctuation", "The cat sat.", "the cat sat", false, 1, 1},
		{"reordered", "the cat sat on the mat", "on the mat the cat sat", false, 1, 0.5},
		{"partial", "a b c d", "a b x", false, 2 * (2.0 / 3) * 0.5 / (2.0/3 + 0.5), 2 * (2.0 / 3) * 0.5 / (2.0/3 + 0.5)},
		{"disjoint", "yes", "no", false, 0, 0},
		{"both empty", "", "", true, 1, 1},
		{"one empty", "yes", "", false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Text(tc.ref, tc.cand)
			if s.Exact != tc.exact || !near(s.TokenF1, tc.f1) || !near(s.RougeL, tc.rougeL) {
				t.Errorf("got %+v, want exact=%v f1=%v rougeL=%v", s, tc.exact, tc.f1, tc.rougeL)
			}
		})
	}
}

func TestAnswerDispatchesOnReference(t *testing.T) {
	text := func(s string) *openai.Message {
		return &openai.Message{Role: "assistant", Content: openai.TextContent(s)}
	}
	tool := &openai.Message{Role: "assistant", Content: openai.Content{IsNull: true}, ToolCalls: calls(call("f", `{"a": 1}`))}
	tests := []struct {
		name      string
		ref, cand *openai.Message
		kind      Kind
		agreement float64
	}{
		{"tool calls agree", tool, tool, KindTools, 1},
		{"tool call expected, text given", tool, text("a is 1"), KindTools, 0},
		{"no tool call expected, one made", text("no tool needed"), tool, KindTools, 0},
		{"json", text(`{"a": 1, "b": 2}`), text(`{"b": 2, "a": 3}`), KindJSON, 0.5},
		{"json expected, text given", text(`{"a": 1}`), text(`a is 1`), KindJSON, 0},
		{"text", text("the answer is 42"), text("The answer is 42."), KindText, 1},
		{"number is text", text("42"), text("42"), KindText, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Answer(tc.ref, tc.cand, Request{})
			if s.Kind != tc.kind || !near(s.Agreement, tc.agreement) {
				t.Errorf("got kind=%s agreement=%v, want %s %v", s.Kind, s.Agreement, tc.kind, tc.agreement)
			}
		})
	}
}
