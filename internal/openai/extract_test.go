package openai_test

import (
	"reflect"
	"testing"

	"github.com/downshift-dev/downshift/internal/dataset"
	. "github.com/downshift-dev/downshift/internal/openai"
)

func TestReadRequestFormatAgreesWithDecode(t *testing.T) {
	bodies := [][]byte{
		[]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`),
		[]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}`),
		[]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":null,"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object"}}}]}`),
		[]byte(`{"tools":[{"type":"function","function":{"name":"first"}}],"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"second"}}]}`),
	}
	if calls, err := dataset.BundledCalls(dataset.NameTauBench); err == nil {
		for _, c := range calls[:50] {
			b, err := c.RequestJSON()
			if err != nil {
				t.Fatal(err)
			}
			bodies = append(bodies, b)
		}
	}
	var formats FormatReader
	for i, b := range append(bodies, bodies...) { // the second time from the cache
		want, err := DecodeChatRequest(b)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		got, err := formats.Read(b)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		if !reflect.DeepEqual(got.Tools, want.Tools) || !reflect.DeepEqual(got.ResponseFormat, want.ResponseFormat) {
			t.Errorf("body %d: got %+v / %+v, want %+v / %+v", i, got.Tools, got.ResponseFormat, want.Tools, want.ResponseFormat)
		}
	}
	if _, err := formats.Read([]byte(`[1]`)); err == nil {
		t.Error("an array was read as a request")
	}
}

func TestPatchScannedMatchesPatchRequest(t *testing.T) {
	body := []byte(`{"model":"a","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`)
	set := map[string]any{"model": "b", "stream": nil, "stream_options": nil}
	want, err := PatchRequest(body, set)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PatchScanned(body, set)
	if err != nil || string(got) != string(want) {
		t.Errorf("PatchScanned = %s, %v; want %s", got, err, want)
	}
	if string(got) != `{"model":"b","messages":[{"role":"user","content":"x"}]}` {
		t.Errorf("patched %s", got)
	}
}

func BenchmarkSecondAnswerPrep(b *testing.B) {
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		b.Skip(err)
	}
	var bodies [][]byte
	for _, c := range calls[:200] {
		body, _ := c.RequestJSON()
		bodies = append(bodies, body)
	}
	set := map[string]any{"model": "small", "stream": nil, "stream_options": nil}
	b.Run("DecodeChatRequest", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := DecodeChatRequest(bodies[i%len(bodies)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	var formats FormatReader
	b.Run("FormatReader", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := formats.Read(bodies[i%len(bodies)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PatchRequest", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := PatchRequest(bodies[i%len(bodies)], set); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PatchScanned", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := PatchScanned(bodies[i%len(bodies)], set); err != nil {
				b.Fatal(err)
			}
		}
	})
}
