package workload

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

func TestReadConversation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Conversation
	}{
		{
			name: "user message last",
			body: `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Cancel booking 8JX2KQ"}]}`,
			want: Conversation{Messages: 2, UserTurns: 1, LastRole: "user", LastText: "Cancel booking 8JX2KQ"},
		},
		{
			name: "tool result named by the call it answers",
			body: `{"model":"m","tools":[{"type":"function","function":{"name":"get_booking"}},{"type":"function","function":{"name":"x"}}],
				"messages":[{"role":"user","content":"check"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"x","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"get_booking","arguments":"{\"id\":\"1\"}"}}]},
				{"role":"tool","tool_call_id":"b","content":"{\"status\": \"ok\"}"}]}`,
			want: Conversation{Messages: 3, UserTurns: 1, Steps: 1, LastRole: "tool", LastText: `{"status": "ok"}`, LastTool: "get_booking"},
		},
		{
			name: "tool message with its own name",
			body: `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","tool_calls":[]},{"role":"tool","name":"think","content":"t"}],"model":"m"}`,
			want: Conversation{Messages: 5, UserTurns: 2, Steps: 1, LastRole: "tool", LastText: "t", LastTool: "think"},
		},
		{
			name: "parts and escapes",
			body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9 \"x\"\n"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"\ud83d\ude00"}]}]}`,
			want: Conversation{Messages: 1, UserTurns: 1, LastRole: "user", LastText: "café \"x\"\n\n😀"},
		},
		{
			name: "assistant prefill keeps the user's text",
			body: `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Sure"}]}`,
			want: Conversation{Messages: 2, UserTurns: 1, Steps: 1, LastRole: "assistant", LastText: "hi"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadConversation([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestReadConversationRejectsWhatIsNotAChatRequest(t *testing.T) {
	for _, body := range []string{``, `[]`, `{"model":"m"}`, `{"messages":{}}`, `{"messages":[{"role":"user","content":"x"}`, `{"messages":[{"role":"user","content":"x}]}`} {
		if _, err := ReadConversation([]byte(body)); err == nil {
			t.Errorf("no error for %q", body)
		}
	}
}

func TestReadConversationCutsLongText(t *testing.T) {
	long := strings.Repeat("é", MaxTextBytes) // two bytes each
	body, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": long}}})
	c, err := ReadConversation(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.LastText) > MaxTextBytes || len(c.LastText) < MaxTextBytes-1 || !strings.HasPrefix(long, c.LastText) {
		t.Errorf("cut to %d bytes, not a prefix of whole runes within %d", len(c.LastText), MaxTextBytes)
	}
}

func vectorOf(t *testing.T, f *Featurizer, body string) Vector {
	t.Helper()
	c, err := ReadConversation([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return f.Vector(&c, Vector{})
}

func userBody(text string) string {
	b, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": text}}})
	return string(b)
}

func TestFeaturizerVectors(t *testing.T) {
	f, err := NewFeaturizer(DefaultFeatureConfig(), IDF{})
	if err != nil {
		t.Fatal(err)
	}
	a := vectorOf(t, f, userBody("Please cancel my reservation 8JX2KQ for tomorrow"))
	if n := a.Dot(a); math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² %.6f, want 1", n)
	}
	seen := map[uint32]bool{}
	for _, ix := range a.Idx {
		if seen[ix] {
			t.Fatalf("feature %d listed twice", ix)
		}
		seen[ix] = true
	}
	// Ids change nothing; other words of the same request stay close; another task is far.
	same := vectorOf(t, f, userBody("Please cancel my reservation ZFA04Y for tomorrow"))
	near := vectorOf(t, f, userBody("Please cancel my reservation 8JX2KQ today"))
	far := vectorOf(t, f, userBody("What is the baggage allowance in economy class?"))
	if d := a.Dot(same); math.Abs(d-1) > 1e-5 {
		t.Errorf("cosine with only the id changed = %.4f, want 1", d)
	}
	if dn, df := a.Dot(near), a.Dot(far); dn <= df+0.2 {
		t.Errorf("cosine with a paraphrase %.3f is not well above that with another task %.3f", dn, df)
	}
	// IDF lowers the weight of common features.
	common := f.Terms(&Conversation{LastText: "reservation"}, nil)
	df := map[uint32]int{}
	for _, term := range common {
		df[term.Idx] = 100
	}
	idf := FitIDF(df, 100, 2)
	g, err := NewFeaturizer(DefaultFeatureConfig(), idf)
	if err != nil {
		t.Fatal(err)
	}
	if before, after := a.Dot(far), vectorOf(t, g, userBody("Please cancel my reservation 8JX2KQ for tomorrow")).Dot(vectorOf(t, g, userBody("reservation"))); after >= before+0.5 && before < 0 {
		t.Errorf("unexpected: %.3f %.3f", before, after)
	}
	withCommon := vectorOf(t, f, userBody("reservation")).Dot(a)
	withoutIDF := vectorOf(t, g, userBody("reservation")).Dot(vectorOf(t, g, userBody("Please cancel my reservation 8JX2KQ for tomorrow")))
	if withoutIDF >= withCommon {
		t.Errorf("a word in every document still weighs as much: cosine %.3f with IDF, %.3f without", withoutIDF, withCommon)
	}
}

func TestNewFeaturizerRejectsBadConfig(t *testing.T) {
	bad := []FeatureConfig{
		{DimBits: 4, WordBytes: 10, TextWeight: 1},
		{DimBits: 18, WordBytes: MaxTextBytes + 1, TextWeight: 1},
		{DimBits: 18, WordBytes: 10},
	}
	for _, c := range bad {
		if _, err := NewFeaturizer(c, IDF{}); err == nil {
			t.Errorf("no error for %+v", c)
		}
	}
}

// twoWorkloadModel has two workloads under fingerprint "agent" (one per kind of
// question) and one pooled workload.
func twoWorkloadModel(t *testing.T) *Model {
	t.Helper()
	cfg := DefaultFeatureConfig()
	f, err := NewFeaturizer(cfg, IDF{})
	if err != nil {
		t.Fatal(err)
	}
	centroid := func(workload, fp string, texts ...string) Centroid {
		sum := map[uint32]float64{}
		for _, text := range texts {
			v := vectorOf(t, f, userBody(text))
			for i, ix := range v.Idx {
				sum[ix] += float64(v.Val[i])
			}
		}
		var norm float64
		for _, x := range sum {
			norm += x * x
		}
		c := Centroid{Workload: workload, Fingerprint: fp}
		for ix, x := range sum {
			c.Idx = append(c.Idx, ix)
			c.Val = append(c.Val, float32(x/math.Sqrt(norm)))
		}
		return c
	}
	return &Model{Version: ModelVersion, Features: cfg, MinSimilarity: 0.45, Centroids: []Centroid{
		centroid("cancel", "agent", "please cancel my reservation", "cancel the booking please", "I want to cancel my flight"),
		centroid("baggage", "agent", "how many bags can I bring", "what is the baggage allowance", "checked bags fee"),
		centroid("translate", "", "translate this to French", "translate into German please"),
		centroid("summary", "notes", "summarise these notes"),
	}}
}

func TestAssignerPicksTheNearestWorkloadOfTheTemplate(t *testing.T) {
	m := twoWorkloadModel(t)
	b, err := MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := UnmarshalModel(b)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAssigner(m2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		fp, text, want string
	}{
		{"agent", "Can you cancel reservation 8JX2KQ please?", "cancel"},
		{"agent", "What baggage allowance do I have, how many bags?", "baggage"},
		{"unknown", "translate the menu to French", "translate"}, // an unknown template: pooled workloads
		{"notes", "anything at all", "summary"},                  // one workload for the template
		{"agent", "zzz qqq", ""},                                 // nothing in common: below MinSimilarity
	}
	for _, tt := range tests {
		got, sim := a.Assign(tt.fp, []byte(userBody(tt.text)))
		if got != tt.want {
			t.Errorf("Assign(%q, %q) = %q (%.3f), want %q", tt.fp, tt.text, got, sim, tt.want)
		}
		if got != "" && (sim < m.MinSimilarity || sim > 1+1e-6) {
			t.Errorf("Assign(%q, %q) similarity %.3f out of range", tt.fp, tt.text, sim)
		}
	}
	if got, _ := a.Assign("agent", []byte(`not json`)); got != "" {
		t.Errorf("a body that is not a request went to %q", got)
	}
}

func TestNewAssignerRejectsBadModels(t *testing.T) {
	good := twoWorkloadModel(t)
	for name, change := range map[string]func(m *Model){
		"version":        func(m *Model) { m.Version = 99 },
		"no workload":    func(m *Model) { m.Centroids[0].Workload = "" },
		"ragged":         func(m *Model) { m.Centroids[0].Val = m.Centroids[0].Val[:1] },
		"index too big":  func(m *Model) { m.Centroids[0].Idx[0] = 1 << 30 },
		"bad dimensions": func(m *Model) { m.Features.DimBits = 40 },
	} {
		b, _ := MarshalModel(good)
		var m Model
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		change(&m)
		if _, err := NewAssigner(&m); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// tauRequest builds a tau-bench-sized request (the airline policy as system prompt, its
// 14 tools, a conversation of fourteen messages ending in a user message): about 20 KB.
func tauRequest(t testing.TB) []byte {
	t.Helper()
	policy, err := os.ReadFile("testdata/tau-bench-airline/wiki.md")
	if err != nil {
		t.Fatal(err)
	}
	tools, err := os.ReadFile("testdata/tau-bench-airline/tools_openai.json")
	if err != nil {
		t.Fatal(err)
	}
	msgs := []any{
		map[string]any{"role": "system", "content": string(policy)},
		map[string]any{"role": "user", "content": "Hi, I'd like to change my flight for reservation 4WQ150 to a later one on the same day."},
		map[string]any{"role": "assistant", "content": "Sure. Could you provide your user id?"},
		map[string]any{"role": "user", "content": "It's chen_jackson_3290."},
		map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_user_details", "arguments": `{"user_id":"chen_jackson_3290"}`}}}},
		map[string]any{"role": "tool", "tool_call_id": "call_1", "content": `{"name": {"first_name": "Chen", "last_name": "Jackson"}, "address": {"address1": "658 Elm Street", "city": "San Diego", "country": "USA", "state": "CA", "zip": "92148"}, "email": "chen.jackson3290@example.com", "dob": "1956-07-07", "payment_methods": {"gift_card_3576581": {"source": "gift_card", "amount": 44, "id": "gift_card_3576581"}}, "membership": "gold", "reservations": ["4WQ150", "7ZQ1X4"]}`},
		map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_2", "type": "function", "function": map[string]any{"name": "get_reservation_details", "arguments": `{"reservation_id":"4WQ150"}`}}}},
		map[string]any{"role": "tool", "tool_call_id": "call_2", "content": `{"reservation_id": "4WQ150", "user_id": "chen_jackson_3290", "origin": "DFW", "destination": "LAX", "flight_type": "round_trip", "cabin": "business", "flights": [{"origin": "DFW", "destination": "LAX", "flight_number": "HAT170", "date": "2024-05-22", "price": 883}, {"origin": "LAX", "destination": "DFW", "flight_number": "HAT022", "date": "2024-05-26", "price": 779}], "passengers": [{"first_name": "Chen", "last_name": "Jackson", "dob": "1956-07-07"}, {"first_name": "Raj", "last_name": "Smith", "dob": "1967-04-01"}], "payment_history": [{"payment_id": "gift_card_3576581", "amount": 3324}], "created_at": "2024-05-02T03:21:32", "total_baggages": 2, "nonfree_baggages": 0, "insurance": "no"}`},
		map[string]any{"role": "assistant", "content": "I found your reservation. Which flight would you like instead?"},
		map[string]any{"role": "user", "content": "Before that, what about my other reservation 7ZQ1X4? Is it refundable?"},
		map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_3", "type": "function", "function": map[string]any{"name": "get_reservation_details", "arguments": `{"reservation_id":"7ZQ1X4"}`}}}},
		map[string]any{"role": "tool", "tool_call_id": "call_3", "content": `{"reservation_id": "7ZQ1X4", "user_id": "chen_jackson_3290", "origin": "ORD", "destination": "JFK", "flight_type": "one_way", "cabin": "economy", "flights": [{"origin": "ORD", "destination": "JFK", "flight_number": "HAT139", "date": "2024-05-18", "price": 152}], "passengers": [{"first_name": "Chen", "last_name": "Jackson", "dob": "1956-07-07"}, {"first_name": "Mei", "last_name": "Jackson", "dob": "1990-02-11"}, {"first_name": "Ivan", "last_name": "Garcia", "dob": "1982-12-30"}], "payment_history": [{"payment_id": "gift_card_3576581", "amount": 456}], "created_at": "2024-05-01T11:02:17", "total_baggages": 1, "nonfree_baggages": 0, "insurance": "yes"}`},
		map[string]any{"role": "assistant", "content": "That reservation has travel insurance, so it can be cancelled for a refund under the policy. Shall we return to the first change?"},
		map[string]any{"role": "user", "content": "The later one in the afternoon please, HAT232 if it exists."},
	}
	body, err := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs, "tools": json.RawMessage(tools)})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// benchModel has centroids many workloads under one template, each with the largest
// number of weights discover keeps.
func benchModel(t testing.TB, workloads int) *Model {
	t.Helper()
	m := &Model{Version: ModelVersion, Features: DefaultFeatureConfig(), MinSimilarity: 0.05}
	state := uint64(1)
	for w := range workloads {
		c := Centroid{Workload: "w" + string(rune('a'+w%26)) + string(rune('a'+w/26)), Fingerprint: "tau"}
		for range 384 {
			state = state*6364136223846793005 + 1442695040888963407
			c.Idx = append(c.Idx, uint32(state>>40)&(1<<18-1))
			c.Val = append(c.Val, 0.05)
		}
		m.Centroids = append(m.Centroids, c)
	}
	return m
}

func BenchmarkAssign(b *testing.B) {
	body := tauRequest(b)
	for _, n := range []int{16, 256} {
		b.Run(strings.Repeat("", 0)+"centroids="+itoa(n), func(b *testing.B) {
			a, err := NewAssigner(benchModel(b, n))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				a.Assign("tau", body)
			}
		})
	}
}

func BenchmarkReadConversation(b *testing.B) {
	body := tauRequest(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadConversation(body); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestTauRequestIsTauSized guards the benchmark's input.
func TestTauRequestIsTauSized(t *testing.T) {
	body := tauRequest(t)
	if len(body) < 18000 {
		t.Errorf("request is %d bytes, want a tau-bench-sized one (~20 KB)", len(body))
	}
	var req openai.ChatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	c, err := ReadConversation(body)
	if err != nil {
		t.Fatal(err)
	}
	if c.Messages != len(req.Messages) || c.LastRole != "user" || c.Steps != 0 || c.UserTurns != 4 {
		t.Errorf("read %+v from the benchmark request", c)
	}
}
