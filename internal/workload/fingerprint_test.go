package workload

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// request builds a call from a system prompt, tool names and a response_format type.
func request(system string, tools []string, format string) *openai.ChatRequest {
	req := &openai.ChatRequest{Model: "gpt-4o"}
	if system != "" {
		req.Messages = append(req.Messages, openai.Message{Role: "system", Content: openai.TextContent(system)})
	}
	req.Messages = append(req.Messages, openai.Message{Role: "user", Content: openai.TextContent("hello")})
	for _, name := range tools {
		req.Tools = append(req.Tools, openai.Tool{Type: "function", Function: openai.FunctionDecl{Name: name}})
	}
	if format != "" {
		req.ResponseFormat = &openai.ResponseFormat{Type: format}
	}
	return req
}

func TestFingerprintIgnoresVolatileParts(t *testing.T) {
	tests := []struct {
		name string
		a, b string // system prompts that must fingerprint alike
	}{
		{"date, time and zone", "The current time is 2024-05-15 15:00:00 EST.", "The current time is 2025-11-02 09:07:31 PDT."},
		{"ISO timestamp", "Now: 2024-05-15T15:00:00Z. Be brief.", "Now: 2025-12-31T23:59:59.123+01:00. Be brief."},
		{"weekday and month names", "Today is Wednesday, May 15, 2024.", "Today is Friday, JUNE 7, 2025."},
		{"clock with AM/PM", "It is 3:00 PM in the office.", "It is 11:45 a.m. in the office."},
		{"nine-letter month and weekday", "Due Wednesday, 1 September.", "Due SATURDAY, 12 oct."},
		{"uuid", "Session 123e4567-e89b-12d3-a456-426614174000 is open.", "Session 9b2f1c3e-0a4d-4e5f-8a6b-7c8d9e0f1a2b is open."},
		{"hex ids", "Trace 5f3a9c2e7b1d, request 0x1f3a9c.", "Trace a1b2c3d4e5f6, request 0xdeadbe."},
		{"email", "Reply to mia.li@example.com only.", "Reply to noah@mail.example.org only."},
		{"amounts", "Budget $50.25 for 3 nights.", "Budget $1,200.00 for 12 nights."},
		{"user and reservation ids", "User mia_li_3668 holds reservation 8JX2KQ.", "User noah_rossi_1234 holds reservation ZFA04Y."},
		{"whitespace", "Be\tbrief.\n\n  Answer in   JSON. ", "  Be brief. Answer in JSON."},
		{"url with ids", "Docs: https://example.com/orders/123?ref=9 here", "Docs: https://example.com/orders/77?ref=1 here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tools := []string{"search", "book"}
			fa := Fingerprint(request(tt.a, tools, "json_object"))
			fb := Fingerprint(request(tt.b, tools, "json_object"))
			if fa != fb {
				t.Errorf("fingerprints differ: %s for %q, %s for %q", fa, tt.a, fb, tt.b)
			}
		})
	}
}

func TestFingerprintSeparatesTemplates(t *testing.T) {
	base := request("You route support tickets to a queue.", []string{"assign", "escalate"}, "")
	tests := []struct {
		name string
		req  *openai.ChatRequest
	}{
		{"different prompt", request("You extract the order from an e-mail.", []string{"assign", "escalate"}, "")},
		{"different punctuation", request("You route support tickets to a queue!", []string{"assign", "escalate"}, "")},
		{"masked word added", request("You route 2 support tickets to a queue.", []string{"assign", "escalate"}, "")},
		{"no system prompt", request("", []string{"assign", "escalate"}, "")},
		{"tool added", request("You route support tickets to a queue.", []string{"assign", "escalate", "close"}, "")},
		{"tool removed", request("You route support tickets to a queue.", []string{"assign"}, "")},
		{"tool renamed", request("You route support tickets to a queue.", []string{"assign", "escalate_v2"}, "")},
		{"tool names split differently", request("You route support tickets to a queue.", []string{"assignescalate"}, "")},
		{"no tools", request("You route support tickets to a queue.", nil, "")},
		{"json_object", request("You route support tickets to a queue.", []string{"assign", "escalate"}, "json_object")},
		{"json_schema", request("You route support tickets to a queue.", []string{"assign", "escalate"}, "json_schema")},
	}
	seen := map[string]string{Fingerprint(base): "base"}
	for _, tt := range tests {
		fp := Fingerprint(tt.req)
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s: fingerprint %s same as for %s", tt.name, fp, prev)
		}
		seen[fp] = tt.name
	}
}

func TestFingerprintIgnoresWhatIsNotTemplate(t *testing.T) {
	base := request("You route support tickets to a queue.", []string{"assign", "escalate", "close"}, "json_schema")
	want := Fingerprint(base)

	reordered := request("You route support tickets to a queue.", []string{"close", "assign", "escalate"}, "json_schema")
	other := *base
	other.Model = "meta/llama-3.3-70b-instruct"
	other.Messages = append(slices.Clone(base.Messages),
		openai.Message{Role: "assistant", Content: openai.TextContent("queue B")},
		openai.Message{Role: "system", Content: openai.TextContent("a later system message")})
	other.Stream = true
	other.Metadata = map[string]string{"workload": "x"}
	developer := request("", []string{"assign", "escalate", "close"}, "json_schema")
	developer.Messages = append([]openai.Message{{Role: "developer", Content: openai.TextContent("You route support tickets to a queue.")}}, developer.Messages...)
	parts := request("", []string{"assign", "escalate", "close"}, "json_schema")
	parts.Messages = append([]openai.Message{{Role: "system", Content: openai.Content{IsParts: true, Parts: []openai.ContentPart{
		{Type: "text", Text: "You route support"},
		{Type: "image_url"},
		{Type: "text", Text: "tickets to a queue."},
	}}}}, parts.Messages...)

	for name, req := range map[string]*openai.ChatRequest{
		"tool order":                      reordered,
		"model, later messages, metadata": &other,
		"developer role":                  developer,
		"content parts":                   parts,
	} {
		if got := Fingerprint(req); got != want {
			t.Errorf("%s: fingerprint %s, want %s", name, got, want)
		}
	}
}

func TestFingerprintForm(t *testing.T) {
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	many := make([]string, 100) // more tools than the stack array holds
	for i := range many {
		many[i] = fmt.Sprintf("tool_%c%c", 'a'+i%26, 'a'+i/26)
	}
	reversed := slices.Clone(many)
	slices.Reverse(reversed)
	for name, req := range map[string]*openai.ChatRequest{
		"nil":        nil,
		"empty":      {},
		"100 tools":  request("x", many, ""),
		"long words": request(strings.Repeat("supercalifragilistic ", 500), nil, ""),
	} {
		if fp := Fingerprint(req); !hex16.MatchString(fp) {
			t.Errorf("%s: Fingerprint = %q, want 16 hex digits", name, fp)
		}
	}
	if Fingerprint(request("x", many, "")) != Fingerprint(request("x", reversed, "")) {
		t.Error("order of 100 tools changes the fingerprint")
	}
	if Fingerprint(nil) == Fingerprint(request("x", nil, "")) {
		t.Error("nil request fingerprints like a real one")
	}
}

// tauBenchAirline is the real system prompt and tools of tau-bench's airline agent.
func tauBenchAirline(t testing.TB) *openai.ChatRequest {
	t.Helper()
	policy, err := os.ReadFile("testdata/tau-bench-airline/wiki.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/tau-bench-airline/tools_openai.json")
	if err != nil {
		t.Fatal(err)
	}
	var tools []openai.Tool
	if err := json.Unmarshal(data, &tools); err != nil {
		t.Fatal(err)
	}
	return &openai.ChatRequest{
		Model: "gpt-4o",
		Messages: []openai.Message{
			{Role: "system", Content: openai.TextContent(string(policy))},
			{Role: "user", Content: openai.TextContent("Hi, I want to change my flight. My user id is mia_li_3668.")},
		},
		Tools: tools,
	}
}

func TestFingerprintTauBenchAirline(t *testing.T) {
	req := tauBenchAirline(t)
	if len(req.Tools) != 14 || len(req.Messages[0].Content.Text) < 6000 {
		t.Fatalf("testdata changed: %d tools, %d-byte prompt", len(req.Tools), len(req.Messages[0].Content.Text))
	}
	want := Fingerprint(req)
	// Golden value: a change here splits every recorded workload. If it is intended,
	// bump fingerprintVersion and update the value.
	if want != "2ad33c2f3f0e5f13" {
		t.Errorf("Fingerprint(tau-bench airline) = %s, want 2ad33c2f3f0e5f13", want)
	}

	policy := req.Messages[0].Content.Text
	if !strings.Contains(policy, "2024-05-15 15:00:00 EST") {
		t.Fatal("testdata changed: policy lacks its date line")
	}
	later := *req
	later.Messages = slices.Clone(req.Messages)
	later.Messages[0].Content = openai.TextContent(strings.Replace(policy, "2024-05-15 15:00:00 EST", "2025-01-31 08:05:59 PST", 1))
	later.Tools = slices.Clone(req.Tools)
	slices.Reverse(later.Tools)
	if got := Fingerprint(&later); got != want {
		t.Errorf("another day, tools reordered: %s, want %s", got, want)
	}

	fewer := *req
	fewer.Tools = req.Tools[1:]
	if Fingerprint(&fewer) == want {
		t.Error("dropping a tool left the fingerprint unchanged")
	}
	edited := *req
	edited.Messages = slices.Clone(req.Messages)
	edited.Messages[0].Content = openai.TextContent(strings.Replace(policy, "basic economy", "economy", 1))
	if Fingerprint(&edited) == want {
		t.Error("editing the policy left the fingerprint unchanged")
	}
}

func TestFingerprintAllocatesOnlyItsResult(t *testing.T) {
	req := tauBenchAirline(t)
	if n := testing.AllocsPerRun(100, func() { Fingerprint(req) }); n > 1 {
		t.Errorf("Fingerprint allocates %v times per call, want 1 (the string)", n)
	}
}

func BenchmarkFingerprint(b *testing.B) {
	cases := []struct {
		name string
		req  *openai.ChatRequest
	}{
		{"tau-bench-airline-6KB-14-tools", tauBenchAirline(b)},
		{"short-prompt-2-tools", request("You route support tickets. Today is 2024-05-15.", []string{"assign", "escalate"}, "json_object")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.req.Messages[0].Content.Text)))
			b.ReportAllocs()
			for b.Loop() {
				Fingerprint(c.req)
			}
		})
	}
}

// BenchmarkHash compares the fingerprint's hash with SHA-256 on the same 6 KB, the
// measurement behind choosing a 64-bit multiply hash for the hot path.
func BenchmarkHash(b *testing.B) {
	text := tauBenchAirline(b).Messages[0].Content.Text
	b.Run("multiply-64", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			h := newHasher()
			h.writeString(text)
			h.sum()
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		buf := []byte(text)
		for b.Loop() {
			sha256.Sum256(buf)
		}
	})
}
