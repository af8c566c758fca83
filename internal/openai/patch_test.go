package openai

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestPatchRequest(t *testing.T) {
	tests := []struct {
		name, body string
		set        map[string]any
		want       string
	}{
		{"rewrite model keeps other bytes and order",
			`{"model": "gpt-4o", "temperature": 0.70, "messages": [ {"role":"user", "content":"<a> & \u00e9"} ], "x":1e3}`,
			map[string]any{"model": "meta/llama-3.3-70b-instruct"},
			`{"model":"meta/llama-3.3-70b-instruct","temperature":0.70,"messages":[ {"role":"user", "content":"<a> & \u00e9"} ],"x":1e3}`},
		{"new key appended, sorted",
			`{"model":"m"}`,
			map[string]any{"z": 1, "a": "<b>"},
			`{"model":"m","a":"<b>","z":1}`},
		{"nil deletes",
			`{"a":1,"model":"m","b":2}`,
			map[string]any{"model": nil},
			`{"a":1,"b":2}`},
		{"delete first and last",
			`{"a":1,"b":2,"c":3}`,
			map[string]any{"a": nil, "c": nil},
			`{"b":2}`},
		{"delete absent key is a no-op",
			`{"a":1}`,
			map[string]any{"b": nil},
			`{"a":1}`},
		{"raw message written as is",
			`{"a":1}`,
			map[string]any{"a": json.RawMessage(`{"k": [1, 2]}`)},
			`{"a":{"k": [1, 2]}}`},
		{"duplicate key: first replaced, rest dropped",
			`{"model":"a","x":0,"model":"b"}`,
			map[string]any{"model": "c"},
			`{"model":"c","x":0}`},
		{"escaped key matches",
			`{"mod\u0065l":"a"}`,
			map[string]any{"model": "c"},
			`{"mod\u0065l":"c"}`},
		{"strings with braces and escaped quotes",
			`{"a":"}\"{","b":["]",{"c":"\\"}],"model":"x"}`,
			map[string]any{"model": "y"},
			`{"a":"}\"{","b":["]",{"c":"\\"}],"model":"y"}`},
		{"empty object",
			` { } `,
			map[string]any{"model": "m"},
			`{"model":"m"}`},
		{"merge into existing stream_options",
			`{"stream":true,"stream_options":{"include_obfuscation":false, "include_usage":false}}`,
			map[string]any{"stream_options": IncludeUsage()},
			`{"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}`},
		{"merge into absent stream_options",
			`{"stream":true}`,
			map[string]any{"stream_options": IncludeUsage()},
			`{"stream":true,"stream_options":{"include_usage":true}}`},
		{"merge replaces null",
			`{"stream_options":null}`,
			map[string]any{"stream_options": IncludeUsage()},
			`{"stream_options":{"include_usage":true}}`},
		{"merge deletes a key with nil",
			`{"stream_options":{"include_usage":true,"x":1}}`,
			map[string]any{"stream_options": Merge{"x": nil}},
			`{"stream_options":{"include_usage":true}}`},
		{"model and usage together",
			`{"model":"gpt-4o","stream":true}`,
			map[string]any{"model": "up", "stream_options": IncludeUsage()},
			`{"model":"up","stream":true,"stream_options":{"include_usage":true}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.body
			got, err := PatchRequest([]byte(tt.body), tt.set)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not valid JSON")
			}
			if tt.body != before {
				t.Errorf("input modified")
			}
		})
	}
}

func TestPatchRequestRejects(t *testing.T) {
	for _, body := range []string{``, `[]`, `"s"`, `{"a":`, `null`, `{"a":1}x`} {
		if _, err := PatchRequest([]byte(body), map[string]any{"model": "m"}); !errors.Is(err, ErrNotObject) {
			t.Errorf("PatchRequest(%q) error = %v, want ErrNotObject", body, err)
		}
	}
	if _, err := PatchRequest([]byte(`{}`), map[string]any{"a": json.RawMessage(`{`)}); err == nil {
		t.Errorf("invalid raw value accepted")
	}
	if _, err := PatchRequest([]byte(`{}`), map[string]any{"a": func() {}}); err == nil {
		t.Errorf("unencodable value accepted")
	}
}
