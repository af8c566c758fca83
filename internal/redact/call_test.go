package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

const callRequest = `{"model":"gpt-4o","x_unknown":{"keep":"mia.li@example.com"},
"messages":[
 {"role":"system","content":"You are an agent. Escalate to ops@example.com."},
 {"role":"user","name":"Mia","content":"I'm mia.li@example.com, call me at (415) 555-0132"},
 {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_user","arguments":"{\"email\":\"mia.li@example.com\",\"payment_method_id\":\"credit_card_4421\",\"card\":4111111111111111,\"n\":3}"}}]},
 {"role":"tool","tool_call_id":"call_1","name":"get_user","content":"{\"email\": \"mia.li@example.com\", \"phone\": \"4155550132\", \"password\": \"hunter2\", \"note\": \"IBAN DE89370400440532013000\"}"},
 {"role":"user","content":[{"type":"text","text":"my card is 4111-1111-1111-1111"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}
],
"tools":[{"type":"function","function":{"name":"get_user","description":"email me at x@example.com","parameters":{"type":"object"}}}]}`

const callResponse = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Thanks! I'll text 415.555.0132 and write to MIA.LI@example.com.","tool_calls":[{"id":"call_2","type":"function","function":{"name":"send","arguments":"{\"to\":\"mia.li@example.com\",\"body\":\"hi\"}"}}]}}],
"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`

func TestRedactCallKeepsJSONAndNumbersPerCall(t *testing.T) {
	r := testRedactor(t)
	req, resp, sum, err := r.RedactCall([]byte(callRequest), []byte(callResponse))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"request": req, "response": resp} {
		if !json.Valid(b) {
			t.Fatalf("%s is not valid JSON:\n%s", name, b)
		}
	}
	var cr openai.ChatRequest
	if err := json.Unmarshal(req, &cr); err != nil {
		t.Fatalf("request does not decode as openai.ChatRequest: %v", err)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(resp, &cc); err != nil {
		t.Fatalf("response does not decode as openai.ChatCompletion: %v", err)
	}
	for _, leak := range []string{"mia.li@example.com", "MIA.LI", "555-0132", "555.0132", "4155550132", "4111", "hunter2", "DE89", "ops@example.com"} {
		for name, b := range map[string][]byte{"request": req, "response": resp} {
			s := string(b)
			if name == "request" {
				// Unknown fields and tools pass through untouched.
				s = strings.Replace(s, `"keep":"mia.li@example.com"`, "", 1)
			}
			if strings.Contains(s, leak) {
				t.Errorf("%s still holds %q:\n%s", name, leak, b)
			}
		}
	}
	if !bytes.Contains(req, []byte(`"x_unknown":{"keep":"mia.li@example.com"}`)) || !bytes.Contains(req, []byte(`"description":"email me at x@example.com"`)) {
		t.Errorf("unknown fields or tools changed:\n%s", req)
	}
	if got := cr.Messages[1].Content.Text; got != "I'm <EMAIL_2>, call me at <PHONE_1>" {
		t.Errorf("user content = %q", got)
	}
	if cr.Messages[1].Name != "Mia" || cr.Messages[3].Name != "get_user" || cr.Model != "gpt-4o" {
		t.Errorf("names, model changed: %+v", cr.Messages)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(cr.Messages[2].ToolCalls[0].Function.Arguments), &args); err != nil {
		t.Fatalf("arguments are no longer JSON: %v", err)
	}
	want := map[string]any{"email": "<EMAIL_2>", "payment_method_id": "credit_card_4421", "card": "<CARD_1>", "n": 3.0}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("arguments[%q] = %v, want %v", k, args[k], v)
		}
	}
	var tool map[string]string
	if err := json.Unmarshal([]byte(cr.Messages[3].Content.Text), &tool); err != nil {
		t.Fatalf("tool result is no longer JSON: %v", err)
	}
	if tool["phone"] != "<PHONE_1>" || tool["password"] != "<SECRET_1>" || tool["note"] != "IBAN <IBAN_1>" {
		t.Errorf("tool result = %v", tool)
	}
	if got := cc.Choices[0].Message.Content.Text; got != "Thanks! I'll text <PHONE_1> and write to <EMAIL_2>." {
		t.Errorf("response content = %q", got)
	}
	if got := cc.Choices[0].Message.ToolCalls[0].Function.Arguments; got != `{"to":"<EMAIL_2>","body":"hi"}` {
		t.Errorf("response arguments = %q", got)
	}
	if sum.Distinct[EMAIL] != 2 || sum.Distinct[PHONE] != 1 || sum.Distinct[CARD] != 1 || sum.Counts[EMAIL] != 6 {
		t.Errorf("summary = %+v", sum)
	}
	b, err := json.Marshal(sum)
	if err != nil || bytes.Contains(b, []byte("example.com")) {
		t.Errorf("summary JSON %s, %v", b, err)
	}
}

func TestRedactCallReturnsInputWhenNothingFound(t *testing.T) {
	r := testRedactor(t)
	req := []byte(`{"model":"m","messages":[{"role":"user","content":"hello, flight HAT123 on 2024-05-15"}]}`)
	resp := []byte(`{"choices":[{"message":{"role":"assistant","content":"ok"}}]}`)
	req2, resp2, sum, err := r.RedactCall(req, resp)
	if err != nil || sum.Total() != 0 {
		t.Fatalf("sum %+v err %v", sum, err)
	}
	if &req2[0] != &req[0] || &resp2[0] != &resp[0] {
		t.Error("unchanged payloads were copied")
	}
}

func TestRedactCallErrorBodyAndNotJSON(t *testing.T) {
	r := testRedactor(t)
	resp := []byte(`{"error":{"message":"user bob@example.com is over quota","type":"rate_limit","param":null,"code":null}}`)
	_, resp2, _, err := r.RedactCall(nil, resp)
	if err != nil || !bytes.Contains(resp2, []byte(`"message":"user <EMAIL_1> is over quota"`)) {
		t.Errorf("error body: %s, %v", resp2, err)
	}
	req2, _, sum, err := r.RedactCall([]byte("not json: bob@example.com"), nil)
	if !errors.Is(err, ErrNotJSON) || string(req2) != "not json: <EMAIL_1>" || sum.Counts[EMAIL] != 1 {
		t.Errorf("not JSON: %q, %+v, %v", req2, sum, err)
	}
}

func TestRedactCallSweepsValuesFoundElsewhere(t *testing.T) {
	r := testRedactor(t)
	// The bare number is a phone only under the "phone" key; the agent then repeats it.
	req := []byte(`{"messages":[{"role":"tool","content":"{\"phone\":\"4155550132\"}"},{"role":"assistant","content":"I will call 4155550132."}]}`)
	req2, _, _, err := r.RedactCall(req, nil)
	if err != nil || bytes.Contains(req2, []byte("4155550132")) {
		t.Errorf("%s, %v", req2, err)
	}
}

func TestDenyListsAndRules(t *testing.T) {
	r, err := New(Options{
		NoGitleaks: true,
		Rules:      []Rule{{Type: "ORDER", Pattern: `#(W\d{7})\b`}},
		Deny:       []Deny{{Type: "CUSTOMER", Values: []string{"Mia Li", "mia_li_3668"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := r.RedactText("MIA LI (mia_li_3668) asked about #W2378156; Miami is fine.", nil)
	want := "<CUSTOMER_1> (<CUSTOMER_2>) asked about #<ORDER_1>; Miami is fine."
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, bad := range []Options{
		{Rules: []Rule{{Type: "order", Pattern: "x"}}},
		{Rules: []Rule{{Type: "ORDER", Pattern: "("}}},
		{Deny: []Deny{{Type: "A-B", Values: []string{"x"}}}},
		{Disable: []Type{"NOPE"}},
	} {
		if _, err := New(bad); !errors.Is(err, ErrOptions) {
			t.Errorf("New(%+v) = %v, want ErrOptions", bad, err)
		}
	}
}

func TestDisableTurnsATypeOff(t *testing.T) {
	r, err := New(Options{NoGitleaks: true, Disable: []Type{IPV4, SECRET}})
	if err != nil {
		t.Fatal(err)
	}
	in := "10.0.0.1 sk-abcdefghijklmnopqrstuvwxyz a@example.com"
	if got := r.RedactText(in, nil); got != "10.0.0.1 sk-abcdefghijklmnopqrstuvwxyz <EMAIL_1>" {
		t.Errorf("got %q", got)
	}
}

func TestRedactorIsSafeForConcurrentUse(t *testing.T) {
	r := testRedactor(t)
	done := make(chan string, 8)
	for g := 0; g < 8; g++ {
		go func() {
			var last string
			for i := 0; i < 50; i++ {
				req, _, _, _ := r.RedactCall([]byte(callRequest), []byte(callResponse))
				last = string(req)
			}
			done <- last
		}()
	}
	first := <-done
	for g := 1; g < 8; g++ {
		if got := <-done; got != first {
			t.Fatal("concurrent calls disagree")
		}
	}
}

func TestRedactCallUserAndMetadata(t *testing.T) {
	r, err := New(Options{NoGitleaks: true})
	if err != nil {
		t.Fatal(err)
	}
	req := []byte(`{"model":"m","user":"mia.li@example.org","metadata":{"workload":"triage","customer":"call +1 415-555-0132"},"messages":[{"role":"user","content":"mail mia.li@example.org"}]}`)
	got, _, sum, err := r.RedactCall(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","user":"<EMAIL_1>","metadata":{"workload":"triage","customer":"call <PHONE_1>"},"messages":[{"role":"user","content":"mail <EMAIL_1>"}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if sum.Counts[EMAIL] != 2 || sum.Counts[PHONE] != 1 {
		t.Errorf("summary %+v", sum)
	}
}

func TestRedactCallWithSecondUsesOnePlaceholderPerValueAcrossAllThree(t *testing.T) {
	r := testRedactor(t)
	req := []byte(`{"model":"m","messages":[` +
		`{"role":"tool","content":"{\"phone\":\"4155550132\"}"},` +
		`{"role":"user","content":"I'm mia.li@example.com, my key is sk-proj-4f8Qz2LmN7xR1vT9bK3wY6hJ"}]}`)
	resp := []byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Thanks, mia.li@example.com."}}]}`)
	second := []byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",` +
		`"content":"Log in with sk-proj-4f8Qz2LmN7xR1vT9bK3wY6hJ, or I will call 4155550132 and write to bob@example.org.",` +
		`"tool_calls":[{"id":"c1","type":"function","function":{"name":"send","arguments":"{\"to\":\"mia.li@example.com\"}"}}]}}]}`)

	req2, resp2, second2, sum, err := r.RedactCallWithSecond(req, resp, second)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"request": req2, "response": resp2, "second response": second2} {
		if !json.Valid(b) {
			t.Fatalf("%s is not valid JSON:\n%s", name, b)
		}
		for _, leak := range []string{"mia.li@example.com", "sk-proj-4f8Qz2", "4155550132", "bob@example.org"} {
			if bytes.Contains(b, []byte(leak)) {
				t.Errorf("%s still holds %q:\n%s", name, leak, b)
			}
		}
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(second2, &cc); err != nil {
		t.Fatalf("second response does not decode as openai.ChatCompletion: %v", err)
	}
	msg := cc.Choices[0].Message
	// The key and the phone number are the request's; bob is new, so he comes after mia.
	if got, want := msg.Content.Text, "Log in with <SECRET_1>, or I will call <PHONE_1> and write to <EMAIL_2>."; got != want {
		t.Errorf("second response content = %q, want %q", got, want)
	}
	if got := msg.ToolCalls[0].Function.Arguments; got != `{"to":"<EMAIL_1>"}` {
		t.Errorf("second response arguments = %q", got)
	}
	if !bytes.Contains(req2, []byte(`my key is <SECRET_1>`)) || !bytes.Contains(req2, []byte(`I'm <EMAIL_1>`)) {
		t.Errorf("request placeholders differ from the second response's:\n%s", req2)
	}
	if !bytes.Contains(resp2, []byte(`Thanks, <EMAIL_1>.`)) {
		t.Errorf("response placeholders differ:\n%s", resp2)
	}
	// Counted in all three: the e-mail twice in the second response, once each elsewhere.
	if sum.Counts[EMAIL] != 4 || sum.Distinct[EMAIL] != 2 || sum.Counts[SECRET] != 2 || sum.Counts[PHONE] != 2 {
		t.Errorf("summary = %+v", sum)
	}
}

func TestRedactCallWithoutSecondIsRedactCall(t *testing.T) {
	r := testRedactor(t)
	wantReq, wantResp, wantSum, wantErr := r.RedactCall([]byte(callRequest), []byte(callResponse))
	for _, second := range [][]byte{nil, {}} {
		req, resp, second2, sum, err := r.RedactCallWithSecond([]byte(callRequest), []byte(callResponse), second)
		if !bytes.Equal(req, wantReq) || !bytes.Equal(resp, wantResp) || !reflect.DeepEqual(sum, wantSum) || !errors.Is(err, wantErr) {
			t.Errorf("second %q: not RedactCall's result: %v\n%s\n%s\n%+v", second, err, req, resp, sum)
		}
		if len(second2) != 0 {
			t.Errorf("an empty second response came back as %q", second2)
		}
	}
}

func TestRedactCallWithSecondNotJSON(t *testing.T) {
	r := testRedactor(t)
	_, _, second2, sum, err := r.RedactCallWithSecond(nil, nil, []byte("upstream said: bob@example.com"))
	if !errors.Is(err, ErrNotJSON) || !strings.Contains(err.Error(), "second response") {
		t.Errorf("err = %v, want ErrNotJSON naming the second response", err)
	}
	if string(second2) != "upstream said: <EMAIL_1>" || sum.Counts[EMAIL] != 1 {
		t.Errorf("second response %q, summary %+v", second2, sum)
	}
}
