package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/sim"
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
