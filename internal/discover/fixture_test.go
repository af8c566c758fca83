package discover

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/workload"
)

// The fixture: three agent nodes, each with its own prompt template, and in the third
// two tasks. Within a node the user's words vary widely; what stays is the template,
// the shape of the request and what the reference does.
//   - classify: a ticket classifier answering JSON, no tools;
//   - summarise: a summariser answering text, no tools;
//   - agent: a booking agent with tools, whose calls are either booking look-ups
//     (user names a booking, reference calls get_booking) or flight searches (user
//     names two cities, reference calls search_flights).
//
// So: four workloads, and each call's task is known.

var (
	fixSubjects = strings.Fields("printer laptop invoice parcel password subscription refund router camera " +
		"headset monitor license account voucher warranty charger tablet keyboard phone speaker")
	fixProblems = strings.Fields("broken missing late damaged wrong locked expired duplicated overcharged " +
		"blocked slow noisy cracked stolen frozen unpaid invalid lost flickering dead")
	fixTopics = strings.Fields("budget roadmap hiring migration launch security audit pricing onboarding " +
		"retention marketing logistics compliance training outage vendor partnership forecast quality design")
	fixCities = strings.Fields("Paris Berlin Madrid Lisbon Rome Vienna Prague Oslo Dublin Athens Warsaw " +
		"Zurich Brussels Helsinki Budapest Copenhagen Stockholm Milan Porto Lyon")
	fixNames = strings.Fields("Mia Noah Liam Emma Olivia Ava Lucas Ethan Sofia Aria Leo Zoe Ivan Nora Omar Yara")
)

type fixtureCall struct {
	call Call
	task string
}

func pick(r *rand.Rand, xs []string) string { return xs[r.IntN(len(xs))] }

func fixtureCalls(t testing.TB, perTask int, seed uint64) []fixtureCall {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	var out []fixtureCall
	add := func(task, system string, tools []string, format string, user string, answer openai.Message) {
		req := openai.ChatRequest{Model: "gpt-4o", Messages: []openai.Message{
			{Role: "system", Content: openai.TextContent(system)},
			{Role: "user", Content: openai.TextContent(user)},
		}}
		for _, name := range tools {
			req.Tools = append(req.Tools, openai.Tool{Type: "function", Function: openai.FunctionDecl{
				Name: name, Parameters: json.RawMessage(`{"type":"object","properties":{}}`)}})
		}
		if format != "" {
			req.ResponseFormat = &openai.ResponseFormat{Type: format}
		}
		body, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := json.Marshal(openai.ChatCompletion{Object: "chat.completion", Choices: []openai.Choice{{Message: answer}}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fixtureCall{task: task, call: Call{
			ID:          fmt.Sprintf("%s-%03d", task, len(out)),
			Fingerprint: workload.Fingerprint(&req),
			Request:     body,
			Response:    resp,
		}})
	}
	toolCall := func(name, args string) openai.Message {
		return openai.Message{Role: "assistant", Content: openai.Content{IsNull: true},
			ToolCalls: []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: name, Arguments: args}}}}
	}
	text := func(s string) openai.Message {
		return openai.Message{Role: "assistant", Content: openai.TextContent(s)}
	}
	for i := range perTask {
		// Interleave the nodes, as live traffic would.
		_ = i
		subj, prob := pick(r, fixSubjects), pick(r, fixProblems)
		add("classify", "You classify customer support tickets into billing, technical or shipping. Ticket received on 2024-05-15.",
			nil, "json_object",
			fmt.Sprintf("Hi, my %s is %s and the %s is %s too, %s here.", subj, prob, pick(r, fixSubjects), pick(r, fixProblems), pick(r, fixNames)),
			text(fmt.Sprintf(`{"category":"%s"}`, pick(r, []string{"billing", "technical", "shipping"}))))
		topic := pick(r, fixTopics)
		add("summarise", "Summarise the meeting notes below in three sentences for the weekly digest.",
			nil, "",
			fmt.Sprintf("Notes: %s discussed %s and %s; next steps on %s with %s.", pick(r, fixNames), topic, pick(r, fixTopics), pick(r, fixTopics), pick(r, fixNames)),
			text(fmt.Sprintf("The team discussed %s. Actions were agreed. Follow-up next week.", topic)))
		from, to := pick(r, fixCities), pick(r, fixCities)
		booking := fmt.Sprintf("%c%c%d", 'A'+r.IntN(26), 'A'+r.IntN(26), 1000+r.IntN(9000))
		agent := "You are a travel booking agent. Use the tools to look up bookings and search flights. Today is Monday."
		tools := []string{"get_booking", "search_flights", "cancel_booking"}
		add("agent/lookup", agent, tools, "",
			fmt.Sprintf("Hello, this is %s, can you check my booking %s? I want to know its status.", pick(r, fixNames), booking),
			toolCall("get_booking", fmt.Sprintf(`{"booking_id":"%s"}`, booking)))
		add("agent/search", agent, tools, "",
			fmt.Sprintf("I need a flight from %s to %s next %s, what options are there?", from, to, pick(r, []string{"week", "month", "weekend"})),
			toolCall("search_flights", fmt.Sprintf(`{"from":"%s","to":"%s"}`, from, to)))
	}
	return out
}

func splitFixture(fc []fixtureCall) ([]Call, []string) {
	calls := make([]Call, len(fc))
	tasks := make([]string, len(fc))
	for i, c := range fc {
		calls[i], tasks[i] = c.call, c.task
	}
	return calls, tasks
}

// TestDiscoverFindsTheFixtureWorkloads fails if clustering merges two of the fixture's
// tasks or splits one: the partition must equal the tasks exactly, with and without
// the reference's actions.
func TestDiscoverFindsTheFixtureWorkloads(t *testing.T) {
	calls, tasks := splitFixture(fixtureCalls(t, 60, 1))
	for _, requestOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("request only %v", requestOnly), func(t *testing.T) {
			res, err := Discover(context.Background(), calls, Options{Seed: 3, RequestOnly: requestOnly})
			if err != nil {
				t.Fatal(err)
			}
			got := clustersOf(res, calls)
			ag, err := Compare(tasks, got)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Workloads) != 4 || ag.ARI != 1 {
				for _, w := range res.Workloads {
					t.Logf("%s %d %s", w.ID, len(w.CallIDs), w.Label)
				}
				t.Fatalf("%d workloads, %s; want the 4 tasks exactly", len(res.Workloads), fmtAgreement(ag))
			}
			// Labels say what each workload is.
			for _, w := range res.Workloads {
				task := tasks[indexOfID(calls, w.Representative)]
				want := map[string]string{"classify": "json answers", "summarise": "text answers",
					"agent/lookup": "get_booking", "agent/search": "search_flights"}[task]
				if !strings.HasPrefix(w.Label, want) {
					t.Errorf("workload of %s is labelled %q, want it to start with %q", task, w.Label, want)
				}
				if len(w.Terms) == 0 {
					t.Errorf("workload of %s has no terms", task)
				}
			}
		})
	}
}

func indexOfID(calls []Call, id string) int {
	for i, c := range calls {
		if c.ID == id {
			return i
		}
	}
	return -1
}

// TestDiscoverIsDeterministicForASeed runs discovery twice on the same calls (in the
// second run with one worker) and wants the same workloads, IDs, assignments and model.
func TestDiscoverIsDeterministicForASeed(t *testing.T) {
	calls, _ := splitFixture(fixtureCalls(t, 40, 2))
	a, err := Discover(context.Background(), calls, Options{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Discover(context.Background(), calls, Options{Seed: 9, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("two runs with the same seed differ")
	}
}

// TestDiscoverKeepsTagsAndPoolsRareTemplates checks the grouping order: tagged calls
// form their tag's workload whatever their content, and templates too rare to cluster
// alone are pooled, where their content still separates them.
func TestDiscoverKeepsTagsAndPoolsRareTemplates(t *testing.T) {
	fc := fixtureCalls(t, 40, 3)
	calls, tasks := splitFixture(fc)
	// Tag half the lookups "bookings"; give every classify call a template of its own
	// (a ticket id in a word without digits, which the fingerprint does not mask).
	for i := range calls {
		switch tasks[i] {
		case "agent/lookup":
			if i%2 == 0 {
				calls[i].Workload = "bookings"
				tasks[i] = "tag"
			}
		case "classify", "summarise":
			calls[i].Fingerprint = fmt.Sprintf("rare-%s-%d", tasks[i], i)
		}
	}
	res, err := Discover(context.Background(), calls, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := Compare(tasks, clustersOf(res, calls))
	if err != nil {
		t.Fatal(err)
	}
	if ag.ARI != 1 {
		for _, w := range res.Workloads {
			t.Logf("%s %d %s %v", w.ID, len(w.CallIDs), w.Label, w.Fingerprints[:min(2, len(w.Fingerprints))])
		}
		t.Fatalf("%s; want tasks and the tag exactly", fmtAgreement(ag))
	}
	for i, c := range calls {
		if c.Workload != "" && res.Assignments[c.ID] != c.Workload {
			t.Errorf("tagged call %d went to %q", i, res.Assignments[c.ID])
		}
	}
}

// TestAssignerPlacesNewCallsOfTheFixture fits on one fixture draw and assigns the calls
// of another: every call must go to the workload of its task.
func TestAssignerPlacesNewCallsOfTheFixture(t *testing.T) {
	calls, tasks := splitFixture(fixtureCalls(t, 60, 4))
	res, err := Discover(context.Background(), calls, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	byTask := map[string]string{}
	for i, c := range calls {
		byTask[tasks[i]] = res.Assignments[c.ID]
	}
	a, err := workload.NewAssigner(res.Model)
	if err != nil {
		t.Fatal(err)
	}
	fresh, freshTasks := splitFixture(fixtureCalls(t, 30, 5))
	wrong := 0
	for i, c := range fresh {
		got, sim := a.Assign(c.Fingerprint, c.Request)
		if got != byTask[freshTasks[i]] {
			wrong++
			t.Logf("%s (%s) went to %q (similarity %.2f), want %q", c.ID, freshTasks[i], got, sim, byTask[freshTasks[i]])
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d new calls assigned wrongly", wrong, len(fresh))
	}
}
