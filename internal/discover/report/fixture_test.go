package report

import (
	"fmt"
	"time"
)

// start is the first call of the fixture; window is the week the fixture's monthly
// figures extrapolate from (x30/7).
var (
	start  = time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)
	window = [2]time.Time{start, start.Add(7 * 24 * time.Hour)}
	now    = time.Date(2025, 6, 8, 12, 0, 0, 0, time.UTC)
)

// candidates are two small models, each the cheaper one for a different mix of tokens:
// nano-a for prompt-heavy workloads, nano-b for completion-heavy ones.
var candidates = []Candidate{
	{Name: "nano-a", InputPerMTok: 0.05, OutputPerMTok: 0.40},
	{Name: "nano-b", InputPerMTok: 0.10, OutputPerMTok: 0.20},
}

// fixture returns calls of four workloads, and the assignment discovery made:
//   - w-book: 40 tool calls (book_reservation, get_user_details, sometimes both),
//     prompt-heavy, with one template of user requests;
//   - w-extract: 30 JSON answers, assigned through Input.Assign rather than the call;
//   - support-chat: 20 calls known only by their client tag, long text answers, 3
//     failed;
//   - 5 calls nobody named, short text.
func fixture() ([]Call, map[string]string) {
	var calls []Call
	assign := map[string]string{}
	at := start
	add := func(c Call) {
		c.ID = fmt.Sprintf("c%03d", len(calls))
		c.StartedAt = at
		at = at.Add(90 * time.Minute)
		if c.Status == 0 {
			c.Status = 200
		}
		c.RequestedModel, c.ServedModel = "gpt-4o", "meta/llama-3.3-70b-instruct"
		calls = append(calls, c)
	}
	cities := []string{"Boston", "Denver", "Seattle", "Atlanta", "Miami", "Dallas", "Chicago"}
	users := []string{"mia_li", "omar_roberts", "sophia_garcia", "liam_chen", "emma_kim"}
	for i := range 40 {
		tools := []string{"book_reservation"}
		switch {
		case i%4 == 1:
			tools = []string{"get_user_details"}
		case i%10 == 3:
			tools = []string{"get_user_details", "book_reservation", "get_user_details"}
		}
		add(Call{WorkloadID: "w-book", Fingerprint: "fp-book", PromptTokens: 2000, CachedTokens: 1000,
			CompletionTokens: 50, CostUSD: 0.0055, Latency: time.Duration(400+10*i) * time.Millisecond,
			Output: OutputToolCall, Tools: tools, ToolsOffered: 14,
			Prompt: fmt.Sprintf("please book flight %d from %s to %s for user %s on the 12th", i,
				cities[i%len(cities)], cities[(i+2)%len(cities)], users[i%len(users)])})
	}
	for i := range 30 {
		out := OutputJSON
		if i%10 == 0 {
			out = OutputText
		}
		add(Call{Fingerprint: "fp-extract", PromptTokens: 600, CompletionTokens: 80, CostUSD: 0.0023,
			Latency: time.Duration(300+5*i) * time.Millisecond, Output: out,
			Prompt: fmt.Sprintf("extract the order fields from: order %d, two blue shirts, ship to Berlin", i)})
		assign[calls[len(calls)-1].ID] = "w-extract"
	}
	topics := []string{"refund policy for cancelled trips", "why was my card charged twice",
		"can I bring my dog on board", "seat upgrade options and prices", "lost luggage claim status"}
	for i := range 20 {
		c := Call{Workload: "support-chat", PromptTokens: 500, CompletionTokens: 900, CostUSD: 0.0102,
			Latency: time.Duration(2000+100*i) * time.Millisecond, Output: OutputText,
			Prompt: topics[i%len(topics)] + fmt.Sprintf(" (ticket %d)", i)}
		if i%6 == 5 {
			c.Status, c.Output, c.CompletionTokens, c.CostUSD = 502, OutputError, 0, 0
		}
		add(c)
	}
	for i := range 5 {
		add(Call{PromptTokens: 100, CompletionTokens: 20, CostUSD: 0.0003, Latency: 250 * time.Millisecond,
			Output: OutputText, Prompt: fmt.Sprintf("hello there %d", i)})
	}
	return calls, assign
}

// fixtureInput is the fixture with labels, candidates and the week's window.
func fixtureInput() Input {
	calls, assign := fixture()
	return Input{
		Calls: calls, Assign: assign, Candidates: candidates, From: window[0], To: window[1], Now: now,
		Workloads: []Info{
			{ID: "w-book", Label: "book reservation", Terms: []string{"book", "flight"}, Representative: "c002"},
			{ID: "w-extract", Label: "extract order <fields> & \"ship\"", Terms: []string{"order", "extract"}},
			{ID: "w-ghost", Label: "a workload with no calls in the window"},
		},
	}
}
