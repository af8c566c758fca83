package eval

import (
	"fmt"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/store"
)

// fakeCall is a call of conversation conv whose reference called tool (or answered
// text when tool is "").
func fakeCall(id, conv, tool, user string) *Call {
	req := &openai.ChatRequest{Messages: []openai.Message{
		{Role: "system", Content: openai.TextContent("You are an airline agent.")},
		{Role: "user", Content: openai.TextContent("conversation " + conv)},
		{Role: "user", Content: openai.TextContent(user)},
	}}
	c := &Call{ID: id, Req: req, Request: []byte(`{}`)}
	if tool != "" {
		c.Answer = openai.Message{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "x", Type: "function",
			Function: openai.FunctionCall{Name: tool, Arguments: `{"q":"` + user + `"}`}}}}
	} else {
		c.Answer = openai.Message{Role: "assistant", Content: openai.TextContent("answer to " + user)}
	}
	c.Stratum, c.Group = Stratum(&c.Answer), group(req)
	return c
}

// population is 100 conversations of 1-3 calls: 60% get_user, 30% search, 10% text.
func population() []*Call {
	var calls []*Call
	n := 0
	for conv := range 100 {
		for turn := range 1 + conv%3 {
			tool := "get_user"
			switch n % 10 {
			case 0:
				tool = ""
			case 1, 2, 3:
				tool = "search"
			}
			calls = append(calls, fakeCall(fmt.Sprintf("c%04d", n), fmt.Sprint(conv), tool, fmt.Sprintf("turn %d of %d", turn, conv)))
			n++
		}
	}
	return calls
}

func TestDrawSetSplitsWholeConversationsInProportion(t *testing.T) {
	calls := population() // 199 calls
	set, p, err := DrawSet("s1", "wl", calls, SetOptions{TestSize: 60}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Members) != len(calls) {
		t.Fatalf("members = %d, want every call (%d)", len(set.Members), len(calls))
	}
	splitOf := map[string]string{}
	for _, m := range set.Members {
		splitOf[m.CallID] = m.Split
	}
	convSplit := map[string]string{}
	for _, c := range calls {
		s := splitOf[c.ID]
		if prev, ok := convSplit[c.Group]; ok && prev != s {
			t.Fatalf("conversation %s is in both %s and %s", c.Group, prev, s)
		}
		convSplit[c.Group] = s
	}
	test := p.Split[store.SplitTest]
	if test < 58 || test > 62 {
		t.Errorf("test split = %d calls, want about 60", test)
	}
	// Proportions within a few calls of the population's.
	for stratum, share := range map[string]float64{"get_user": 0.6, "search": 0.3, "text": 0.1} {
		want := share * float64(test)
		if got := float64(p.TestStrata[stratum]); got < want-3 || got > want+3 {
			t.Errorf("test %s = %v, want about %.0f (strata %v)", stratum, got, want, p.TestStrata)
		}
	}
	if v := p.Split[store.SplitValidation]; v < 11 || v > 16 {
		t.Errorf("validation = %d, want about 10%% of the %d left", v, len(calls)-test)
	}
}

func TestDrawSetIsFixedBySeedAndDeduplicates(t *testing.T) {
	calls := population()
	dup := *calls[5]
	dup.ID = "z-copy"
	withDup := append(calls[:len(calls):len(calls)], &dup)
	// Input order must not matter.
	reversed := make([]*Call, len(withDup))
	for i, c := range withDup {
		reversed[len(withDup)-1-i] = c
	}
	a, pa, err := DrawSet("a", "wl", withDup, SetOptions{Seed: 7, TestSize: 50}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := DrawSet("b", "wl", reversed, SetOptions{Seed: 7, TestSize: 50}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.Members) != fmt.Sprint(b.Members) {
		t.Error("the same calls and seed gave different sets")
	}
	if pa.Duplicates != 1 {
		t.Errorf("duplicates = %d, want 1", pa.Duplicates)
	}
	for _, m := range a.Members {
		if m.CallID == "z-copy" {
			t.Error("the later copy of a duplicate is a member")
		}
	}
	c, _, _ := DrawSet("c", "wl", withDup, SetOptions{Seed: 8, TestSize: 50}, time.Unix(0, 0))
	if fmt.Sprint(a.Members) == fmt.Sprint(c.Members) {
		t.Error("another seed gave the same set")
	}
}

func TestDrawSetCapsTestAtHalf(t *testing.T) {
	calls := population()[:40]
	_, p, err := DrawSet("s", "wl", calls, SetOptions{}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Split[store.SplitTest]; got < 18 || got > 22 {
		t.Errorf("test = %d of 40 calls with the default size 200, want about half", got)
	}
	if p.Split[store.SplitTrain] == 0 {
		t.Error("no train calls left")
	}
	if _, _, err := DrawSet("s", "wl", calls[:1], SetOptions{}, time.Unix(0, 0)); err == nil {
		t.Error("a set from one call was drawn")
	}
}

func TestQuotasSumToSize(t *testing.T) {
	q := quotas(map[string]int{"a": 1, "b": 1, "c": 1}, 3, 2)
	if q["a"]+q["b"]+q["c"] != 2 {
		t.Errorf("quotas %v do not sum to 2", q)
	}
	q = quotas(map[string]int{"a": 67, "b": 33}, 100, 10)
	if q["a"] != 7 || q["b"] != 3 {
		t.Errorf("quotas %v, want a=7 b=3", q)
	}
}
