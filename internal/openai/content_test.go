package openai

import (
	"bytes"
	"encoding/json"
	"testing"
)

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}

func TestContentRoundTripsInTheFormItCameIn(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		text    string // String()
		isNull  bool
		isParts bool
	}{
		{"string", `"hello <b>&"`, "hello <b>&", false, false},
		{"empty string", `""`, "", false, false},
		{"null", `null`, "", true, false},
		{"empty array", `[]`, "", false, true},
		{"text parts", `[{"type":"text","text":"a"},{"type":"text","text":"b"}]`, "a\nb", false, true},
		{"image part kept whole", `[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA=","detail":"high"}}]`, "what is this?", false, true},
		{"audio part", `[{"type":"input_audio","input_audio":{"data":"UklGR","format":"wav"}}]`, "", false, true},
		{"file part", `[{"type":"file","file":{"file_id":"file-abc","filename":"a.pdf"}}]`, "", false, true},
		{"text part with extra field", `[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]`, "x", false, true},
		{"text part without text", `[{"type":"text"}]`, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Content
			if err := json.Unmarshal([]byte(tt.in), &c); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if c.IsNull != tt.isNull || c.IsParts != tt.isParts {
				t.Errorf("IsNull=%v IsParts=%v, want %v %v", c.IsNull, c.IsParts, tt.isNull, tt.isParts)
			}
			if got := c.String(); got != tt.text {
				t.Errorf("String() = %q, want %q", got, tt.text)
			}
			out, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			want := tt.in
			if tt.name == "text part without text" {
				want = `[{"type":"text","text":""}]`
			}
			if !jsonEqual(t, out, []byte(want)) {
				t.Errorf("re-encoded %s, want %s", out, want)
			}
		})
	}
}

func TestContentRejectsOtherKinds(t *testing.T) {
	for _, in := range []string{`1`, `true`, `{"type":"text"}`, `[1]`, `["a"]`, `[{"text":"no type"}]`, `[{"type":1}]`, `[{"type":"text","text":2}]`} {
		var c Content
		if err := json.Unmarshal([]byte(in), &c); err == nil {
			t.Errorf("Unmarshal(%s) succeeded, want error", in)
		}
	}
}

func TestContentPartChangesAreWrittenOverKeptObject(t *testing.T) {
	var c Content
	in := `[{"type":"text","text":"my card is 4111","cache_control":{"type":"ephemeral"}},{"type":"image_url","image_url":{"url":"u"}}]`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	c.Parts[0].Text = "my card is [REDACTED]"
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"type":"text","text":"my card is [REDACTED]","cache_control":{"type":"ephemeral"}},{"type":"image_url","image_url":{"url":"u"}}]`
	if !jsonEqual(t, out, []byte(want)) {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestContentPartBuiltByHandWithOther(t *testing.T) {
	p := ContentPart{Type: "image_url", Other: json.RawMessage(`{"image_url":{"url":"u"}}`)}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"image_url","image_url":{"url":"u"}}`; !jsonEqual(t, out, []byte(want)) {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestMessageWithoutContentDecodesAsNull(t *testing.T) {
	var m Message
	in := `{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}`
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if !m.Content.IsNull {
		t.Errorf("absent content: IsNull = false")
	}
	out, _ := json.Marshal(m)
	if !bytes.Contains(out, []byte(`"content":null`)) {
		t.Errorf("re-encoded %s, want content null", out)
	}
	// Content present as a string must not be turned into null.
	if err := json.Unmarshal([]byte(`{"role":"user","content":"hi"}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.Content.IsNull || m.Content.Text != "hi" {
		t.Errorf("got %+v", m.Content)
	}
}
