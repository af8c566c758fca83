package sim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

func TestServeUntilShutdown(t *testing.T) {
	s, err := New(Options{Calls: []dataset.Call{parallelCall()}, Faults: Faults{Timeout: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	// A request hung by a timeout fault must not hold up shutdown.
	hung := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Oslo?"}]}`))
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()
	time.Sleep(100 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v, want nil after Shutdown", err)
	}
	if err := <-hung; err == nil {
		t.Error("the hung request got a response")
	}
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestModelsList(t *testing.T) {
	_, ts := start(t, Options{Calls: bundledCalls(t)})
	resp, err := ts.Client().Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list openai.ModelList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range list.Data {
		ids[m.ID] = true
		if m.Object != "model" {
			t.Errorf("model %+v", m)
		}
	}
	for _, want := range []string{dataset.ModelGPT4o, dataset.ModelGPT4, dataset.ModelMixtral, "mixtral"} {
		if !ids[want] {
			t.Errorf("models list lacks %q", want)
		}
	}
}

func TestEmbeddings(t *testing.T) {
	_, ts := start(t, Options{})
	embed := func(body string) ([][]float32, *http.Response) {
		resp := post(t, ts, "/v1/embeddings", []byte(body))
		var out struct {
			Data []struct {
				Index     int             `json:"index"`
				Embedding json.RawMessage `json:"embedding"`
			} `json:"data"`
			Usage struct {
				PromptTokens int `json:"prompt_tokens"`
			} `json:"usage"`
			Simulated bool `json:"simulated"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		if !out.Simulated || resp.Header.Get(HeaderSimulated) != "true" || out.Usage.PromptTokens == 0 {
			t.Errorf("embeddings not marked simulated or no usage: %+v", out)
		}
		var vecs [][]float32
		for i, d := range out.Data {
			if d.Index != i {
				t.Errorf("index %d at %d", d.Index, i)
			}
			var v []float32
			if err := json.Unmarshal(d.Embedding, &v); err != nil {
				var s string
				if err := json.Unmarshal(d.Embedding, &s); err != nil {
					t.Fatal(err)
				}
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < len(b); i += 4 {
					v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
				}
			}
			vecs = append(vecs, v)
		}
		return vecs, resp
	}
	vecs, _ := embed(`{"model":"text-embedding-3-small","input":["cancel my flight please","please cancel the flight","what is 12 times 7"]}`)
	if len(vecs) != 3 || len(vecs[0]) != defaultEmbeddingDims {
		t.Fatalf("got %d vectors of %d", len(vecs), len(vecs[0]))
	}
	dot := func(a, b []float32) float64 {
		s := 0.0
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return s
	}
	if n := dot(vecs[0], vecs[0]); math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² %v, want 1", n)
	}
	if near, far := dot(vecs[0], vecs[1]), dot(vecs[0], vecs[2]); near <= far {
		t.Errorf("similar texts %.3f not closer than different ones %.3f", near, far)
	}
	again, _ := embed(`{"model":"e","input":"cancel my flight please","dimensions":64,"encoding_format":"base64"}`)
	if len(again[0]) != 64 {
		t.Fatalf("dims %d, want 64", len(again[0]))
	}
	same, _ := embed(`{"model":"e","input":"cancel my flight please","dimensions":64}`)
	if !equalFloats(again[0], same[0]) {
		t.Error("base64 and float encodings differ, or vectors are not deterministic")
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"mode":          {Mode: "live"},
		"unknown":       {Unknown: "ignore"},
		"rate above 1":  {Faults: Faults{Error: 1.5}},
		"negative rate": {Faults: Faults{Cut: -0.1}},
		"rates sum":     {Faults: Faults{Error: 0.6, RateLimit: 0.6}},
		"negative ttft": {Latency: Latency{TTFT: -time.Second}},
		"jitter":        {Latency: Latency{Jitter: 2}},
		"dims":          {EmbeddingDims: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(opts); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func BenchmarkReplayNonStreaming(b *testing.B) {
	calls := bundledCalls(b)
	_, ts := start(b, Options{Calls: calls})
	sample := sampleTau(calls)
	bodies := make([][]byte, len(sample))
	for i, c := range sample {
		var err error
		if bodies[i], err = c.RequestJSON(); err != nil {
			b.Fatal(err)
		}
	}
	client := ts.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := client.Post(ts.URL+"/v1/chat/completions", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
			if err != nil {
				b.Error(err)
				return
			}
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
