package openai

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// streamChunks returns the data of every event of the golden streams.
func streamChunks(t testing.TB) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("testdata/stream/*.sse")
	var out [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		r := NewSSEReader(fh)
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			if !IsDone(ev) {
				out = append(out, ev.Data)
			}
		}
		fh.Close()
	}
	if len(out) < 20 {
		t.Fatalf("only %d chunks in the golden streams", len(out))
	}
	return out
}

func TestDecodeChunkMatchesEncodingJSON(t *testing.T) {
	cases := append(streamChunks(t),
		[]byte(`{"id":"x","choices":[{"index":0,"delta":{"content":null,"role":null},"finish_reason":null,"logprobs":null}],"usage":null,"created":null}`),
		[]byte(`{"ID":"case","choices":[]}`),
		[]byte(`{"id":"x","choices":[{"index":1.5}]}`),
		[]byte(`{"error":{"message":"overloaded","type":"server_error"}}`),
		[]byte(`{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":\"\\u00e9\"}"}}]}}]}`),
		[]byte(`{"id":"x","choices":null,"extra":{"nested":[1,2,{"k":"v"}]}}`),
	)
	fast := 0
	for _, data := range cases {
		var got, want ChatCompletionChunk
		werr := json.Unmarshal(data, &want)
		gerr := decodeChunk(data, &got)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: encoding/json error %v, decodeChunk error %v", data, werr, gerr)
			continue
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", data, got, want)
		}
		var c ChatCompletionChunk
		if decodeChunkFast(data, &c) {
			fast++
		}
	}
	if fast < len(cases)-4 {
		t.Errorf("the fast path took only %d of %d chunks", fast, len(cases))
	}
}

// FuzzChunkDecode holds the fast chunk decoder to encoding/json's result.
func FuzzChunkDecode(f *testing.F) {
	for _, c := range streamChunks(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast ChatCompletionChunk
		if !decodeChunkFast(data, &fast) {
			return
		}
		var want ChatCompletionChunk
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("fast path accepted what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q:\n fast %+v\n json %+v", data, fast, want)
		}
	})
}

func BenchmarkDecodeChunk(b *testing.B) {
	chunks := streamChunks(b)
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			for _, c := range chunks {
				var ch ChatCompletionChunk
				_ = decodeChunk(c, &ch)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			for _, c := range chunks {
				var ch ChatCompletionChunk
				_ = json.Unmarshal(c, &ch)
			}
		}
	})
}
