package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

func TestSimServesBundledReplayUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outW := io.Pipe()
	cmd := newSimCmd()
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0", "--data", "taubench,gsm8k", "--ttft", "1ms", "--candidate", "always-wrong=1:truncate_text"})
	cmd.SetOut(outW)
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		outW.Close()
	}()

	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("no output: %v", <-done)
	}
	first := lines.Text()
	const prefix = "downshift sim: serving http://"
	if !strings.HasPrefix(first, prefix) || !strings.HasSuffix(first, "/v1 (replay mode)") {
		t.Fatalf("first line %q", first)
	}
	base := strings.TrimSuffix(strings.TrimPrefix(first, "downshift sim: serving "), " (replay mode)")
	lines.Scan()
	if got := lines.Text(); got != "  recorded: taubench: 2454 calls, gsm8k: 300 calls" {
		t.Errorf("second line %q", got)
	}
	go func() { // keep the pipe drained
		for lines.Scan() {
		}
	}()

	rows, err := dataset.BundledGSM8K()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"model": "mixtral", "messages": []map[string]string{{"role": "user", "content": rows[0].Prompt}}})
	resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var cc openai.ChatCompletion
	err = json.NewDecoder(resp.Body).Decode(&cc)
	resp.Body.Close()
	if err != nil || resp.Header.Get(sim.HeaderReplayed) != "true" || cc.Choices[0].Message.Content.String() != rows[0].MixtralAnswer {
		t.Fatalf("replay through the command: %v %+v", err, cc)
	}
	body, _ = json.Marshal(map[string]any{"model": "always-wrong", "messages": []map[string]string{{"role": "user", "content": rows[0].Prompt}}})
	resp, err = http.Post(base+"/chat/completions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(sim.HeaderDegraded); got != "truncate_text" {
		t.Errorf("candidate through the command: degraded %q, want truncate_text", got)
	}
	http.DefaultClient.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after cancel")
	}
}

func TestSimRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "127.0.0.1:0", "--mode", "live"},
		{"--listen", "127.0.0.1:0", "--data", "bfcl"},
		{"--listen", "127.0.0.1:0", "--unknown", "guess"},
		{"--listen", "127.0.0.1:0", "--error-rate", "0.7", "--429-rate", "0.7"},
		{"--listen", "not-an-address"},
		{"--listen", "127.0.0.1:0", "--candidate", "small"},
		{"--listen", "127.0.0.1:0", "--candidate", "small=lots"},
		{"--listen", "127.0.0.1:0", "--candidate", "small=1.5"},
		{"--listen", "127.0.0.1:0", "--candidate", "small=0.1:hallucinate"},
		{"--listen", "127.0.0.1:0", "--candidate", "small=0.1", "--candidate", "small=0.2"},
	} {
		t.Run(strings.Join(args[2:], " "), func(t *testing.T) {
			cmd := newSimCmd()
			cmd.SetArgs(args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := cmd.ExecuteContext(ctx); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestSimParsesCandidates(t *testing.T) {
	got, err := parseCandidates([]string{"small-20=0.2", "small-5 = 0.05:wrong_tool, drop_call"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sim.Degrade{
		"small-20": {Rate: 0.2},
		"small-5":  {Rate: 0.05, Kinds: []string{"wrong_tool", "drop_call"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// startSimCmd runs downshift sim with args until the test ends and returns its base
// URL.
func startSimCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, outW := io.Pipe()
	cmd := newSimCmd()
	cmd.SetArgs(append([]string{"--listen", "127.0.0.1:0"}, args...))
	cmd.SetOut(outW)
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		outW.Close()
	}()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sim returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("sim did not stop after cancel")
		}
	})
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("no output: %v", <-done)
	}
	base, ok := strings.CutPrefix(lines.Text(), "downshift sim: serving ")
	if !ok {
		t.Fatalf("first line %q", lines.Text())
	}
	base, _, _ = strings.Cut(base, " ")
	go func() { // keep the pipe drained
		for lines.Scan() {
		}
	}()
	return base
}

// postChat posts body and returns the answer, reassembled when streamed, with the
// response headers.
func postChat(t *testing.T, base string, body []byte) ([]byte, http.Header) {
	t.Helper()
	resp, err := http.Post(base+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return raw, resp.Header
	}
	acc := openai.NewAccumulator()
	rd := openai.NewSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) || (err == nil && openai.IsDone(ev)) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := acc.AddData(ev.Data); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(acc.Completion())
	if err != nil {
		t.Fatal(err)
	}
	return raw, resp.Header
}

// TestSimRedactAnswersStoredCalls records tau-bench calls as serve does with the
// default privacy settings (the simulator's answer as the upstream's, redacted by the
// recorder's privacy step) and evaluates candidates on them as eval does: a simulator
// run with --redact answers every stored request with the stored answer.
func TestSimRedactAnswersStoredCalls(t *testing.T) {
	base := startSimCmd(t, "--data", "taubench", "--redact", "--candidate", "cand=0")
	priv, err := newPrivacy(config.Default().Privacy, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	redacted := 0
	for i := 0; i < len(calls); i += 23 {
		c := &calls[i]
		body, err := c.RequestJSON()
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := postChat(t, base, body)
		stored := store.Call{ID: c.ID, Status: http.StatusOK, Request: body, Response: answer}
		if err := priv.prepare(&stored); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(stored.Request, body) {
			continue
		}
		redacted++
		ec, err := eval.FromStoreCall(&stored)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct{ examples, match string }{
			{"", sim.MatchRedacted},
			{"Examples:\nUser: my e-mail is <EMAIL_1>\nAssistant: Thank you.", sim.MatchRedactedWithoutSystem},
		} {
			req, err := eval.BuildRequest(ec, "cand", v.examples)
			if err != nil {
				t.Fatal(err)
			}
			raw, h := postChat(t, base, req)
			var cc openai.ChatCompletion
			if err := json.Unmarshal(raw, &cc); err != nil {
				t.Fatal(err)
			}
			if got := cc.Choices[0].Message; !reflect.DeepEqual(got, ec.Answer) {
				t.Fatalf("%s (%s): answer %+v, want the stored %+v", c.ID, v.match, got, ec.Answer)
			}
			if m := h.Get(sim.HeaderReplayedMatch); m != v.match || h.Get(sim.HeaderSimulated) != "true" {
				t.Fatalf("%s: matched %q (simulated %q), want %q", c.ID, m, h.Get(sim.HeaderSimulated), v.match)
			}
		}
	}
	if redacted < 30 {
		t.Errorf("%d of the calls checked were redacted: the test checks too little", redacted)
	}
}
