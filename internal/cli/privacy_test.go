package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
)

// seeded are sensitive values an agent's traffic carries, one or more of each type the
// redactor knows. None of them may reach the store's files.
var seeded = map[string]string{
	"email":    "mia.li@example.org",
	"phone":    "+1 415-555-0132",
	"card":     "4111 1111 1111 1111",
	"iban":     "DE89 3704 0044 0532 0130 00",
	"ssn":      "219-09-9999",
	"ipv4":     "203.0.113.77",
	"ipv6":     "2001:db8:85a3::8a2e:370:7334",
	"url":      "https://admin:hunter2secret@db.example.com/x",
	"openai":   "sk-proj-Tj8f3kQ9mZ2xW7vB1nL4pR6sY0aC5dE8gH2jK4mN6qP",
	"aws":      "AKIAZ7XQ4M2N8P5R3T6V",
	"github":   "ghp_8Fj3kL9mQ2wE5rT7yU1iO4pA6sD0fG3hJ5kL",
	"password": "Tr0ub4dor&3xyz",
}

// plainText is ordinary message text with nothing sensitive in it: with encryption on,
// not even this may appear in the store's files.
const plainText = "purple elephants negotiate quietly"

// echoUpstream answers every chat completion by quoting the conversation's last user
// message and calling a tool with the e-mail and card from it, so that the sensitive
// values come back in the response (text and tool-call arguments) too.
func echoUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req openai.ChatRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		last := req.Messages[len(req.Messages)-1].Content.String()
		args, _ := json.Marshal(map[string]string{"email": seeded["email"], "card": seeded["card"], "note": plainText})
		msg := openai.Message{Role: "assistant", Content: openai.TextContent("You said: " + last),
			ToolCalls: []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "update_payment", Arguments: string(args)}}}}
		usage := &openai.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(openai.ChatCompletion{ID: "c1", Object: "chat.completion", Model: req.Model,
				Choices: []openai.Choice{{Message: msg, FinishReason: "tool_calls"}}, Usage: usage})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		content := msg.Content.Text
		chunks := []openai.ChatCompletionChunk{
			{Choices: []openai.ChunkChoice{{Delta: openai.Delta{Role: "assistant", Content: &content}}}},
			{Choices: []openai.ChunkChoice{{Delta: openai.Delta{ToolCalls: []openai.ToolCallDelta{{Index: 0, ID: "call_1", Type: "function",
				Function: openai.FunctionCallDelta{Name: "update_payment", Arguments: string(args)}}}}}}},
			{Choices: []openai.ChunkChoice{{Delta: openai.Delta{}, FinishReason: ptr("tool_calls")}}},
			{Choices: []openai.ChunkChoice{}, Usage: usage},
		}
		for _, c := range chunks {
			c.ID, c.Object, c.Model = "c1", "chat.completion.chunk", req.Model
			b, _ := json.Marshal(c)
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

func ptr[T any](v T) *T { return &v }

// seededRequests carry every seeded value in every place a request can hold text: the
// system prompt, user text and content parts, an earlier assistant turn's tool-call
// arguments, a tool result, and a malformed body the gateway rejects.
func seededRequests() []string {
	all := make([]string, 0, len(seeded))
	for _, k := range []string{"email", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "url", "openai", "aws", "github"} {
		all = append(all, seeded[k])
	}
	user := plainText + ". My details: " + strings.Join(all, " ; ") + ". password=" + seeded["password"]
	args, _ := json.Marshal(map[string]string{"email": seeded["email"], "phone": seeded["phone"], "iban": seeded["iban"]})
	toolResult, _ := json.Marshal(map[string]any{"user": map[string]string{"email": seeded["email"], "ssn": seeded["ssn"], "ip": seeded["ipv4"]}})
	msgs := []map[string]any{
		{"role": "system", "content": "You help customers. Escalations go to " + seeded["email"] + "."},
		{"role": "user", "content": "hi"},
		{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_0", "type": "function",
			"function": map[string]any{"name": "get_user", "arguments": string(args)}}}},
		{"role": "tool", "tool_call_id": "call_0", "content": string(toolResult)},
		{"role": "user", "content": []any{map[string]any{"type": "text", "text": user}}},
	}
	var out []string
	for _, stream := range []bool{false, true} {
		b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "stream": stream, "messages": msgs,
			"user": seeded["email"], "metadata": map[string]string{"workload": "support", "note": seeded["phone"]}})
		out = append(out, string(b))
	}
	// The gateway records malformed bodies too; they must be redacted as text.
	out = append(out, `{"model":"gpt-4o","messages":[{"role":"user","content":"`+user+`"}`)
	return out
}

func TestRecordedFilesHoldNoSeededValues(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "redacted", true: "redacted and encrypted"}[encrypted], func(t *testing.T) {
			dir := t.TempDir()
			cfg := config.Default()
			cfg.Store.DSN = filepath.Join(dir, "downshift.db")
			cfg.Backends = []config.Backend{{Name: "echo", URL: echoUpstream(t)}}
			cfg.Models = []config.Model{{Name: "gpt-4o", Backend: "echo", Role: "reference"}}
			cfg.Auth.Open = true
			if encrypted {
				key, err := seal.GenerateKey()
				if err != nil {
					t.Fatal(err)
				}
				keyFile := filepath.Join(dir, "k1.key")
				if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg.Privacy.Encryption = config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", File: keyFile}}}
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv, err := startServer(context.Background(), cfg, ln, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range seededRequests() {
				resp, err := http.Post("http://"+srv.addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && !strings.Contains(string(got), seeded["email"]) {
					t.Errorf("the client's answer was changed: redaction must only touch the record: %s", got)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.shutdown(ctx); err != nil {
				t.Fatal(err)
			}

			var raw []byte
			for _, suffix := range []string{"", "-wal", "-shm"} {
				b, err := os.ReadFile(cfg.Store.DSN + suffix)
				if err == nil {
					raw = append(raw, b...)
				}
			}
			for name, v := range seeded {
				if strings.Contains(string(raw), v) {
					t.Errorf("%s value %q is in the store's files", name, v)
				}
			}
			if encrypted && strings.Contains(string(raw), plainText) {
				t.Errorf("message text %q is in the encrypted store's files", plainText)
			}

			// What was recorded is still useful: valid JSON with typed placeholders.
			st, err := openStore(ctx, "sqlite", cfg.Store.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			calls, err := st.ListCalls(ctx, store.Filter{WithPayloads: true, Ascending: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != 3 {
				t.Fatalf("recorded %d calls, want 3", len(calls))
			}
			kr, err := seal.NewKeyring(cfg.Privacy.Encryption, os.Getenv)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range calls {
				if encrypted != (c.KeyID == "k1") {
					t.Errorf("call %s: key id %q", c.ID, c.KeyID)
				}
				if err := kr.OpenCall(&c); err != nil {
					t.Fatal(err)
				}
				if c.Status == 200 {
					if !json.Valid(c.Request) || !json.Valid(c.Response) {
						t.Errorf("call %s: redacted payloads are not valid JSON", c.ID)
					}
					if !strings.Contains(string(c.Request), "<EMAIL_1>") || !strings.Contains(string(c.Response), "<EMAIL_1>") {
						t.Errorf("call %s: no consistent e-mail placeholder in request and response", c.ID)
					}
					if !strings.Contains(string(c.Request), plainText) {
						t.Errorf("call %s: redaction removed ordinary text", c.ID)
					}
				}
				if c.Redactions["EMAIL"] == 0 || c.Redactions["CARD"] == 0 || c.Redactions["SECRET"] == 0 {
					t.Errorf("call %s: redaction summary %v", c.ID, c.Redactions)
				}
			}
		})
	}
}

// The privacy section's options reach the redactor: user rules, deny lists from a file,
// and a pseudonym key that makes placeholders the same across calls.
func TestPrivacyOptions(t *testing.T) {
	dir := t.TempDir()
	denyFile := filepath.Join(dir, "customers.txt")
	pseudoFile := filepath.Join(dir, "pseudonym.key")
	if err := os.WriteFile(denyFile, []byte("# customers\nAcme Corp\n\nGlobex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pseudoFile, []byte(strings.Repeat("k", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := newPrivacy(config.Privacy{
		Redact:           true,
		PseudonymKeyFile: pseudoFile,
		Rules:            []config.RedactRule{{Type: "TICKET", Pattern: `TCK-[0-9]{6}`}},
		Deny:             []config.DenyList{{Type: "CUSTOMER", File: denyFile}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	call := func(text string) store.Call {
		c := store.Call{ID: "c", Request: []byte(`{"model":"m","messages":[{"role":"user","content":` + strconvQuote(text) + `}]}`)}
		if err := p.prepare(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := call("Acme Corp opened TCK-123456; reach ops@acme.example")
	b := call("again from ops@acme.example about globex")
	for _, leaked := range []string{"Acme Corp", "TCK-123456", "ops@acme.example"} {
		if strings.Contains(string(a.Request), leaked) {
			t.Errorf("%q survived: %s", leaked, a.Request)
		}
	}
	if strings.Contains(strings.ToLower(string(b.Request)), "globex") {
		t.Errorf("deny-list value survived (case-insensitive): %s", b.Request)
	}
	pa := emailPattern2.FindString(string(a.Request))
	pb := emailPattern2.FindString(string(b.Request))
	if pa == "" || pa != pb || pa == "<EMAIL_1>" {
		t.Errorf("pseudonyms %q and %q: want the same keyed pseudonym in both calls", pa, pb)
	}
	if a.Redactions["CUSTOMER"] != 1 || a.Redactions["TICKET"] != 1 {
		t.Errorf("summary %v", a.Redactions)
	}
}

var emailPattern2 = regexp.MustCompile(`<EMAIL_[0-9a-f]+>`)

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// A second answer's body is a payload like the response: redacted with the call's
// request and response under one numbering, counted, and sealed under the call's key.
func TestPrepareRedactsAndSealsTheSecondAnswerWithTheCall(t *testing.T) {
	dir := t.TempDir()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "k1.key")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	enc := config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", File: keyFile}}}
	p, err := newPrivacy(config.Privacy{Redact: true, Encryption: enc}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	second := &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200,
		Response: []byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Use ` +
			seeded["openai"] + ` and write to ` + seeded["email"] + ` or bob@example.net."}}]}`)}
	original := string(second.Response)
	c := store.Call{ID: "01JPRIV",
		Request:  []byte(`{"model":"m","messages":[{"role":"user","content":"I am ` + seeded["email"] + `, key ` + seeded["openai"] + `"}]}`),
		Response: []byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Noted, ` + seeded["email"] + `."}}]}`),
		Second:   second}
	if err := p.prepare(&c); err != nil {
		t.Fatal(err)
	}
	if string(second.Response) != original {
		t.Error("prepare changed the gateway's SecondAnswer in place")
	}
	if c.KeyID != "k1" || bytes.Contains(c.Second.Response, []byte("chat.completion")) {
		t.Fatalf("second response not sealed (key %q): %q", c.KeyID, c.Second.Response)
	}
	// The counts are the three payloads': the e-mail in each, the key in two, bob once.
	if c.Redactions["EMAIL"] != 4 || c.Redactions["SECRET"] != 2 {
		t.Errorf("redactions %v, want EMAIL 4 and SECRET 2 (request, response and second response)", c.Redactions)
	}
	if err := p.keyring.OpenCall(&c); err != nil {
		t.Fatal(err)
	}
	got := string(c.Second.Response)
	for _, leak := range []string{seeded["email"], seeded["openai"], "bob@example.net"} {
		if strings.Contains(got, leak) {
			t.Errorf("second response still holds %q: %s", leak, got)
		}
	}
	if want := "Use <SECRET_1> and write to <EMAIL_1> or <EMAIL_2>."; !strings.Contains(got, want) {
		t.Errorf("second response %s\nwant it to read %q", got, want)
	}
	if !strings.Contains(string(c.Request), "I am <EMAIL_1>, key <SECRET_1>") {
		t.Errorf("request %s: not the second response's placeholders", c.Request)
	}
}
