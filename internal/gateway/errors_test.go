package gateway

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestErrorResponses checks every error the gateway answers against a golden file
// (status line and OpenAI error body), and that each failed chat call is recorded.
func TestErrorResponses(t *testing.T) {
	closedURL := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}
	const chat = "/v1/chat/completions"
	okBody := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	cases := []struct {
		name     string
		method   string
		path     string
		body     string
		upstream func(w http.ResponseWriter, r *http.Request) // nil: the scripted fake
		url      string                                       // upstream URL override
		timeout  time.Duration
		recorded bool
	}{
		{name: "malformed_json", path: chat, body: `{"model":"gpt-4o","messages":[`, recorded: true},
		{name: "body_not_object", path: chat, body: `[1,2,3]`, recorded: true},
		{name: "missing_model", path: chat, body: `{"messages":[{"role":"user","content":"hi"}]}`, recorded: true},
		{name: "missing_messages", path: chat, body: `{"model":"gpt-4o"}`, recorded: true},
		{name: "empty_messages", path: chat, body: `{"model":"gpt-4o","messages":[]}`, recorded: true},
		{name: "bad_role", path: chat, body: `{"model":"gpt-4o","messages":[{"role":"wizard","content":"hi"}]}`, recorded: true},
		{name: "unknown_model", path: chat, body: `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, recorded: true},
		{name: "body_too_large", path: chat, body: `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 2048) + `"}]}`, recorded: true},
		{name: "upstream_unreachable", path: chat, body: okBody, url: closedURL(), recorded: true},
		{name: "upstream_500", path: chat, body: okBody, recorded: true, upstream: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}},
		{name: "upstream_timeout", path: chat, body: okBody, timeout: 100 * time.Millisecond, recorded: true, upstream: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
		{name: "upstream_429", path: chat, body: okBody, recorded: true, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
		}},
		{name: "upstream_400_passthrough", path: chat, body: okBody, recorded: true, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"message":"'temperature' must be at most 2","type":"invalid_request_error","param":"temperature","code":null}}`)
		}},
		{name: "upstream_400_not_openai", path: chat, body: okBody, recorded: true, upstream: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", http.StatusBadRequest)
		}},
		{name: "method_not_allowed", method: http.MethodGet, path: chat},
		{name: "unknown_path", method: http.MethodPost, path: "/v1/completions", body: okBody},
		{name: "embeddings_missing_input", path: "/v1/embeddings", body: `{"model":"gpt-4o"}`},
		{name: "embeddings_unknown_model", path: "/v1/embeddings", body: `{"model":"nope","input":"hi"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t)
			if tc.upstream != nil {
				up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) bool { tc.upstream(w, r); return true }
			}
			cfg := testConfig(up.URL)
			if tc.url != "" {
				cfg.Backends[0].URL = tc.url + "/v1"
			}
			cfg.Backends[0].ResponseTimeout = tc.timeout
			rec := &memRecorder{}
			gw, _ := startGateway(t, gwOptions{cfg: cfg, recorder: rec, maxBody: 1024})
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, gw.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var e struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Errorf("body is not an OpenAI error: %s", body)
			}
			got := fmt.Sprintf("%d\n%s\n", resp.StatusCode, bytes.TrimSpace(body))
			golden(t, filepath.Join("testdata", "errors", tc.name+".golden"), got)

			if !tc.recorded {
				return
			}
			c := waitCalls(t, rec, 1)[0]
			if c.Status != resp.StatusCode || c.ErrorType == "" || c.ErrorMessage == "" || !bytes.Equal(c.Response, bytes.TrimSpace(body)) && !bytes.Equal(c.Response, body) {
				t.Errorf("recorded status=%d type=%q message=%q response=%s", c.Status, c.ErrorType, c.ErrorMessage, c.Response)
			}
			if strings.Contains(c.ErrorMessage, "sk-") {
				t.Errorf("error message leaks a key: %q", c.ErrorMessage)
			}
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", path, got, want)
	}
}

// TestBackendKeyNeverLeaks makes a backend with a key fail in every way and checks the
// key appears in no client answer and no record.
func TestBackendKeyNeverLeaks(t *testing.T) {
	const key = "sk-live-SECRET-abcdef0123456789"
	for _, status := range []int{401, 429, 500} {
		up := newFakeUpstream(t)
		up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if r.Header.Get("Authorization") != "Bearer "+key {
				t.Errorf("upstream got Authorization %q", r.Header.Get("Authorization"))
			}
			http.Error(w, "upstream says no", status)
			return true
		}
		cfg := testConfig(up.URL)
		cfg.Backends[0].APIKeyEnv = "TEST_KEY"
		rec := &memRecorder{}
		gw, _ := startGatewayEnv(t, cfg, rec, map[string]string{"TEST_KEY": key})
		resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"big","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c := waitCalls(t, rec, 1)[0]
		all := string(body) + fmt.Sprint(resp.Header) + fmt.Sprintf("%+v", c) + string(c.Request) + string(c.Response)
		if strings.Contains(all, key) {
			t.Fatalf("status %d: key leaked: %s", status, all)
		}
	}
}

func TestUnknownFieldsPassThrough(t *testing.T) {
	up := newFakeUpstream(t)
	rec := &memRecorder{}
	gw, _ := startGateway(t, gwOptions{cfg: testConfig(up.URL), recorder: rec})
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]}],` +
		`"seed":42,"logit_bias":{"50256":-100},"temperature":0.25,"x_vendor":{"nested":[1,2.50,"a"]},"tool_choice":"none","metadata":{"workload":"vision"}}`
	resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var sent, orig map[string]json.RawMessage
	_ = json.Unmarshal(up.received()[0], &sent)
	_ = json.Unmarshal([]byte(body), &orig)
	for k, v := range orig {
		if k == "model" {
			continue
		}
		if !bytes.Equal(sent[k], v) {
			t.Errorf("field %q: upstream got %s, want %s", k, sent[k], v)
		}
	}
	if c := waitCalls(t, rec, 1)[0]; c.Workload != "vision" || string(c.Request) != body {
		t.Errorf("recorded workload %q, request %s", c.Workload, c.Request)
	}
}

func startGatewayEnv(t *testing.T, cfg config.Config, rec Recorder, env map[string]string) (*httptest.Server, *Gateway) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	return startGateway(t, gwOptions{cfg: cfg, recorder: rec})
}
