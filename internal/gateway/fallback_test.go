package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	oa "github.com/openai/openai-go/v3"

	"github.com/downshift-dev/downshift/internal/config"
)

// fallbackConfig serves "big" from primary with "spare" (on secondary) as its fallback.
func fallbackConfig(primary, secondary string) config.Config {
	return config.Config{
		Backends: []config.Backend{{Name: "primary", URL: primary + "/v1"}, {Name: "secondary", URL: secondary + "/v1"}},
		Models: []config.Model{
			{Name: "big", Backend: "primary", Role: "reference", Fallbacks: []string{"spare"}},
			{Name: "spare", Backend: "secondary", Role: "reference"},
		},
	}
}

func TestFallbacks(t *testing.T) {
	failWith := func(status int) func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		return func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			http.Error(w, "failing", status)
			return true
		}
	}
	// cutBeforeFirstEvent answers 200 for a stream and hangs up before any event.
	cutBeforeFirstEvent := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		return true
	}
	cases := []struct {
		name      string
		primary   func(w http.ResponseWriter, r *http.Request, _ []byte) bool
		stream    bool
		wantModel string
		wantCode  int
	}{
		{name: "503 falls back", primary: failWith(503), wantModel: "spare", wantCode: 200},
		{name: "429 falls back", primary: failWith(429), wantModel: "spare", wantCode: 200},
		{name: "500 falls back when streaming", primary: failWith(500), stream: true, wantModel: "spare", wantCode: 200},
		{name: "stream cut before the first event falls back", primary: cutBeforeFirstEvent, stream: true, wantModel: "spare", wantCode: 200},
		{name: "400 does not fall back", primary: failWith(400), wantModel: "", wantCode: 400},
		{name: "healthy primary is used", primary: nil, wantModel: "big", wantCode: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newFakeUpstream(t), newFakeUpstream(t)
			p.handle = tc.primary
			rec := &memRecorder{}
			gw, g := startGateway(t, gwOptions{cfg: fallbackConfig(p.URL, s.URL), recorder: rec})
			body := fmt.Sprintf(`{"model":"big","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, tc.stream)
			resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantCode, got)
			}
			if resp.Header.Get(HeaderModel) != tc.wantModel && tc.wantCode == 200 {
				t.Errorf("served by %q, want %q", resp.Header.Get(HeaderModel), tc.wantModel)
			}
			c := waitCalls(t, rec, 1)[0]
			if c.ServedModel != tc.wantModel || c.Status != tc.wantCode {
				t.Errorf("recorded served=%q status=%d", c.ServedModel, c.Status)
			}
			wantSecondary := 0
			if tc.wantModel == "spare" {
				wantSecondary = 1
			}
			if n := len(s.received()); n != wantSecondary {
				t.Errorf("secondary got %d requests, want %d", n, wantSecondary)
			}
			if tc.wantModel == "spare" {
				if v := counterValue(t, g, "downshift_fallbacks_total"); v != 1 {
					t.Errorf("downshift_fallbacks_total = %v", v)
				}
			}
		})
	}
}

// TestNoFallbackAfterFirstByte cuts a stream after some content has reached the
// client: the gateway must not switch models mid-answer; it aborts the connection so
// the client sees a failure, and records the call as a 502.
func TestNoFallbackAfterFirstByte(t *testing.T) {
	p, s := newFakeUpstream(t), newFakeUpstream(t)
	p.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"big","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}`+"\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the upstream's connection breaks
	}
	rec := &memRecorder{}
	gw, _ := startGateway(t, gwOptions{cfg: fallbackConfig(p.URL, s.URL), recorder: rec})
	client := newClient(gw.URL)
	stream := client.Chat.Completions.NewStreaming(context.Background(), oa.ChatCompletionNewParams{
		Model: "big", Messages: []oa.ChatCompletionMessageParamUnion{oa.UserMessage("hi")}})
	var content string
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			content += ch.Choices[0].Delta.Content
		}
	}
	if stream.Err() == nil {
		t.Fatal("client saw a complete stream; want an error")
	}
	if content != "Hel" {
		t.Errorf("client content = %q", content)
	}
	if n := len(s.received()); n != 0 {
		t.Errorf("fallback got %d requests after bytes reached the client", n)
	}
	c := waitCalls(t, rec, 1)[0]
	if c.Status != 502 || c.ServedModel != "big" || !strings.Contains(c.ErrorMessage, "ended the stream") {
		t.Errorf("recorded status=%d served=%q message=%q", c.Status, c.ServedModel, c.ErrorMessage)
	}
	if cc := recordedCompletion(t, c); cc.Choices[0].Message.Content.String() != "Hel" {
		t.Errorf("recorded partial content = %q", cc.Choices[0].Message.Content.String())
	}
}
