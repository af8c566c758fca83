package openai

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

func TestScanChatRequest(t *testing.T) {
	cases := []struct {
		name string
		body string
		want Head
	}{
		{name: "minimal", body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			want: Head{Model: "m", Messages: 1}},
		{name: "everything", body: `{"messages":[{"role":"developer","content":[{"type":"text","text":"Be brief."}]},{"role":"system","content":"second"},{"role":"user","content":"q"}],` +
			`"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b","parameters":{}}}],` +
			`"metadata":{"workload":"triage","x":"y"},"response_format":{"type":"json_object"}}`,
			want: Head{Model: "gpt-4o", Stream: true, IncludeUsage: true, Workload: "triage", HasSystem: true,
				system: Content{IsParts: true, Parts: []ContentPart{{Type: "text", Text: "Be brief."}}}, ToolNames: []string{"a", "b"}, ResponseType: "json_object", Messages: 3}},
		{name: "nulls", body: `{"model":"m","messages":[{"role":"system","content":null},{"role":"user","content":"x"}],"stream":null,"stream_options":null,"tools":null,"metadata":null,"response_format":null}`,
			want: Head{Model: "m", HasSystem: true, system: Content{IsNull: true}, Messages: 2}},
		{name: "escaped strings", body: `{"model":"m\u00e9","messages":[{"role":"system","content":"line\none \"quoted\""}]}`,
			want: Head{Model: "mé", HasSystem: true, system: Content{Text: "line\none \"quoted\""}, Messages: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ScanChatRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := headString(h), headString(&tc.want); got != want {
				t.Errorf("head\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestScanChatRequestErrorsAreDecodes(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","messages":[`, `[1]`, `{"messages":[{"role":"user","content":"x"}]}`, `{"model":"","messages":[{"role":"user"}]}`,
		`{"model":"m"}`, `{"model":"m","messages":[]}`, `{"model":"m","messages":[{"role":"wizard"}]}`, `{"model":"m","messages":[1]}`,
		`{"model":"m","messages":[{"role":"user"}],"stream":"yes"}`, `{"model":"m","messages":[{"role":"user"}],"tools":{}}`,
		`{"model":5,"messages":[{"role":"user"}]}`,
	} {
		_, serr := ScanChatRequest([]byte(body))
		_, derr := DecodeChatRequest([]byte(body))
		if serr == nil || derr == nil || serr.Error() != derr.Error() {
			t.Errorf("%s: scan error %v, decode error %v", body, serr, derr)
		}
	}
}

func TestForward(t *testing.T) {
	cases := []struct {
		name, body   string
		model        string
		includeUsage bool
		want         string
	}{
		{"unchanged", `{"model":"m","messages":[{"role":"user"}]}`, "m", false, `{"model":"m","messages":[{"role":"user"}]}`},
		{"model only", `{"model":"m", "messages":[{"role":"user"}]}`, "up/m", false, `{"model":"up/m", "messages":[{"role":"user"}]}`},
		{"add stream_options", `{"model":"m","messages":[{"role":"user"}],"stream":true }`, "m", true,
			`{"model":"m","messages":[{"role":"user"}],"stream":true ,"stream_options":{"include_usage":true}}`},
		{"merge stream_options before model", `{"stream_options":{"x":1},"messages":[{"role":"user"}],"model":"m"}`, "big", true,
			`{"stream_options":{"x":1,"include_usage":true},"messages":[{"role":"user"}],"model":"big"}`},
		{"null stream_options", `{"model":"m","stream_options":null,"messages":[{"role":"user"}]}`, "n", true,
			`{"model":"n","stream_options":{"include_usage":true},"messages":[{"role":"user"}]}`},
		{"already asked", `{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user"}]}`, "m", true,
			`{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ScanChatRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Forward([]byte(tc.body), tc.model, tc.includeUsage)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func headString(h *Head) string {
	return fmt.Sprintf("model=%q stream=%v usage=%v workload=%q system=%v/%q/%v tools=%q rf=%q n=%d",
		h.Model, h.Stream, h.IncludeUsage, h.Workload, h.HasSystem, h.System().String(), h.System().IsNull, h.ToolNames, h.ResponseType, h.Messages)
}

// FuzzScanMatchesDecode checks the fast scan against the full decoder: whatever the
// decoder accepts, the scan accepts with the same head, and Forward keeps every other
// top-level member's bytes.
func FuzzScanMatchesDecode(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}],"stream":true,"tools":[{"type":"function","function":{"name":"a"}}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":false,"y":2},"metadata":{"workload":"w"}}`))
	f.Add([]byte(`{"model":"m","model":"n","messages":[{"role":"user"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, serr := ScanChatRequest(body)
		req, derr := DecodeChatRequest(body)
		if serr == nil && !json.Valid(body) {
			t.Fatalf("scan accepts invalid JSON: %q", body)
		}
		if derr != nil {
			if serr == nil {
				return // the scan checks less deeply; see ScanChatRequest
			}
			if serr.Error() != derr.Error() {
				t.Fatalf("scan error %q, decode error %q", serr, derr)
			}
			return
		}
		if serr != nil {
			t.Fatalf("decode accepts, scan says %v", serr)
		}
		if got, want := headString(h), headString(headOf(req)); got != want {
			t.Fatalf("head differs\n scan %s\ndecode %s", got, want)
		}
		out, err := h.Forward(body, "other/model", true)
		if err != nil {
			t.Fatal(err)
		}
		fwd, err := DecodeChatRequest(out)
		if err != nil {
			t.Fatalf("forwarded body does not decode: %v\n%s", err, out)
		}
		if fwd.Model != "other/model" || fwd.StreamOptions == nil || !fwd.StreamOptions.IncludeUsage {
			t.Fatalf("forwarded model %q stream_options %+v", fwd.Model, fwd.StreamOptions)
		}
		var in, got map[string]json.RawMessage
		_ = json.Unmarshal(body, &in)
		_ = json.Unmarshal(out, &got)
		for k, v := range in {
			if k == "model" || k == "stream_options" {
				continue
			}
			if !bytes.Equal(got[k], v) {
				t.Fatalf("member %q changed: %s -> %s", k, v, got[k])
			}
		}
		if !slices.Equal(h.ToolNames, headOf(fwd).ToolNames) {
			t.Fatal("tools changed")
		}
	})
}

func BenchmarkScanChatRequest(b *testing.B) {
	body := tauBenchRequest()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		h, err := ScanChatRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Forward(body, "meta/llama-3.3-70b-instruct", true); err != nil {
			b.Fatal(err)
		}
	}
}

func TestChunkPeeks(t *testing.T) {
	cases := []struct {
		data            string
		usageOnly, more bool
	}{
		{`{"id":"c","choices":[],"usage":{"prompt_tokens":1}}`, true, false},
		{`{"id":"c","usage":{"prompt_tokens":1}}`, true, false},
		{`{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":{"prompt_tokens":1}}`, false, true},
		{`{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`, false, false},
		{`{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"x"}]}}]}`, false, true},
		{`{"id":"c","choices":[{"index":0,"delta":{"refusal":"no"}}]}`, false, true},
		{`{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`, false, false},
		{`not json`, false, false},
	}
	for _, tc := range cases {
		if got := ChunkIsUsageOnly([]byte(tc.data)); got != tc.usageOnly {
			t.Errorf("ChunkIsUsageOnly(%s) = %v", tc.data, got)
		}
		if got := ChunkCarriesAnswer([]byte(tc.data)); got != tc.more {
			t.Errorf("ChunkCarriesAnswer(%s) = %v", tc.data, got)
		}
		var c ChatCompletionChunk
		if json.Unmarshal([]byte(tc.data), &c) == nil {
			if IsUsageOnly(&c) != tc.usageOnly {
				t.Errorf("IsUsageOnly disagrees on %s", tc.data)
			}
		}
	}
}

func TestUnescapeMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{`plain`, `a\nb\tc\"d\\e\/f\b\f\r`, `\u00e9\u4e2d`, `\ud83d\ude00 smile`, `\ud83d alone`, `\ude00 low`, `x\ud83dy`} {
		var want string
		if err := json.Unmarshal([]byte(`"`+in+`"`), &want); err != nil {
			t.Fatal(err)
		}
		got, ok := unescape([]byte(in))
		if !ok || got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSpecialIn(t *testing.T) {
	plain := []byte("abcdefgh")
	if specialIn(binary.LittleEndian.Uint64(plain)) {
		t.Fatal("plain ASCII flagged")
	}
	for pos := range 8 {
		for _, c := range []byte{'"', '\\', 0x00, 0x1f, '\n', 0x80, 0xff} {
			b := []byte("abcdefgh")
			b[pos] = c
			if !specialIn(binary.LittleEndian.Uint64(b)) {
				t.Errorf("byte %#x at %d not flagged", c, pos)
			}
		}
	}
	for c := 0x20; c < 0x80; c++ {
		if c == '"' || c == '\\' {
			continue
		}
		b := bytes.Repeat([]byte{byte(c)}, 8)
		if specialIn(binary.LittleEndian.Uint64(b)) {
			t.Errorf("byte %#x flagged", c)
		}
	}
}
