package sim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
)

func newServer(t testing.TB, s *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts
}

func TestFaults(t *testing.T) {
	plain := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Oslo?"}]}`)
	streamed := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"weather in Paris and Oslo?"}],"stream":true}`)
	for _, tc := range []struct {
		name   string
		faults Faults
		body   []byte
		check  func(t *testing.T, resp *http.Response, err error)
	}{
		{"error", Faults{Error: 1}, plain, func(t *testing.T, resp *http.Response, err error) {
			e := errorBody(t, resp, err, http.StatusInternalServerError)
			if e.Type != openai.TypeServer {
				t.Errorf("type %q", e.Type)
			}
		}},
		{"rate limit", Faults{RateLimit: 1, RetryAfter: 1500 * time.Millisecond}, plain, func(t *testing.T, resp *http.Response, err error) {
			e := errorBody(t, resp, err, http.StatusTooManyRequests)
			if e.Type != openai.TypeRateLimit || resp.Header.Get("Retry-After") != "2" || resp.Header.Get("Retry-After-Ms") != "1500" {
				t.Errorf("type %q, Retry-After %q", e.Type, resp.Header.Get("Retry-After"))
			}
		}},
		{"timeout", Faults{Timeout: 1}, plain, func(t *testing.T, resp *http.Response, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err %v, want the client's deadline", err)
			}
		}},
		{"reset", Faults{Reset: 1}, plain, func(t *testing.T, resp *http.Response, err error) {
			if err == nil {
				t.Errorf("got a response (%d) from a reset connection", resp.StatusCode)
			}
		}},
		{"cut stream", Faults{Cut: 1}, streamed, func(t *testing.T, resp *http.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			res := readStream(t, resp)
			if res.done || len(res.chunks) == 0 || res.err == nil {
				t.Errorf("stream: done %v after %d chunks, err %v; want cut after some chunks", res.done, len(res.chunks), res.err)
			}
			if resp.Header.Get(HeaderFault) != "cut" {
				t.Errorf("fault header %q", resp.Header.Get(HeaderFault))
			}
		}},
		{"cut body", Faults{Cut: 1}, plain, func(t *testing.T, resp *http.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(resp.Body); err == nil {
				t.Error("read a whole body that was cut")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{Calls: []dataset.Call{parallelCall()}, Faults: tc.faults, Sleep: noSleep})
			if err != nil {
				t.Fatal(err)
			}
			ts := newServer(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(string(tc.body)))
			resp, err := ts.Client().Do(req)
			if resp != nil {
				defer resp.Body.Close()
			}
			tc.check(t, resp, err)
		})
	}
}

func errorBody(t *testing.T, resp *http.Response, err error, status int) openai.APIError {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, raw)
	}
	if resp.Header.Get(HeaderSimulated) != "true" || resp.Header.Get(HeaderFault) == "" {
		t.Errorf("injected fault not marked: %v", resp.Header)
	}
	var e openai.ErrorResponse
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return e.Error
}

func TestFaultRatesAreSeededAndProportional(t *testing.T) {
	draws := func(seed uint64) []fault {
		s, err := New(Options{Seed: seed, Faults: Faults{Error: 0.1, RateLimit: 0.2, Timeout: 0.05, Reset: 0.05, Cut: 0.1}})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]fault, 10000)
		for i := range out {
			out[i] = s.drawFault()
		}
		return out
	}
	a, b := draws(42), draws(42)
	counts := map[fault]int{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d differs under the same seed", i)
		}
		counts[a[i]]++
	}
	for f, want := range map[fault]float64{faultNone: 0.5, faultError: 0.1, faultRateLimit: 0.2, faultTimeout: 0.05, faultReset: 0.05, faultCut: 0.1} {
		got := float64(counts[f]) / float64(len(a))
		if got < want-0.02 || got > want+0.02 {
			t.Errorf("%s: share %.3f, want %.2f", f, got, want)
		}
	}
}
