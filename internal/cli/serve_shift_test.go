package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

// TestServeShiftsWorkloadsAndShutdownLosesNoRecord runs the whole server against the
// simulator replaying tau-bench, with one workload in shadow and one served by a
// candidate that spoils half its answers (malformed ones among them), shuts it down
// under load, and checks that every answered call is in the store exactly once, with
// what the policy did to it.
func TestServeShiftsWorkloadsAndShutdownLosesNoRecord(t *testing.T) {
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	upstream := startSim(t, sim.Options{Mode: sim.ModeReplay, Calls: calls, Unknown: sim.UnknownError, Seed: 1,
		Candidates: map[string]sim.Degrade{"small": {Rate: 0.5, Kinds: []string{sim.DegradeBrokenArguments, sim.DegradeUnknownTool}}},
		Latency:    sim.Latency{TTFT: 2 * time.Millisecond, TokensPerSecond: 4000}})
	cfg := config.Default()
	cfg.Store.DSN = filepath.Join(t.TempDir(), "downshift.db")
	cfg.Backends = []config.Backend{{Name: "sim", URL: upstream}}
	cfg.Models = []config.Model{
		{Name: "gpt-4o", Backend: "sim", Role: "reference", Price: gpt4oPrice},
		{Name: "small", Backend: "sim", Role: "candidate", Price: config.Price{InputPerMTok: 0.02, OutputPerMTok: 0.05}},
	}
	key := createKey(t, cfg.Store.DSN, store.Key{Kind: store.KeyGateway, Name: "test-agent"})
	st, err := openStore(context.Background(), "sqlite", cfg.Store.DSN)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []store.Policy{
		{Workload: "shadowed", Mode: store.ModeShadow, Candidate: "small", ShadowShare: 1},
		{Workload: "served", Mode: store.ModeServe, Candidate: "small", VerifyShare: 1},
	} {
		p.At, p.Actor, p.ActorName, p.Reason = time.Now(), "cli", "test", "test"
		if _, err := st.SavePolicy(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(context.Background(), cfg, ln, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.addr + "/v1/chat/completions"

	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for i := w; ; i += 8 {
				select {
				case <-stop:
					return
				default:
				}
				c := calls[i%len(calls)]
				body, err := c.RequestJSON()
				if err != nil {
					t.Error(err)
					return
				}
				stream := i%3 == 0
				if stream {
					body = append(bytes.TrimSuffix(body, []byte("}")), `,"stream":true}`...)
				}
				req, _ := http.NewRequest(http.MethodPost, base, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("X-Downshift-Workload", []string{"shadowed", "served", "observed"}[i%3])
				resp, err := client.Do(req)
				if err != nil {
					continue // refused: the server is shutting down
				}
				if complete(resp, stream) {
					answered.Add(1)
				}
			}
		})
	}
	// Shut down under load, once enough calls were answered to cover every route.
	for deadline := time.Now().Add(60 * time.Second); answered.Load() < 60 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	st, err = openStore(ctx, "sqlite", cfg.Store.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored, err := st.ListCalls(ctx, store.Filter{Limit: 1 << 20, WithPayloads: true})
	if err != nil {
		t.Fatal(err)
	}
	if answered.Load() < 30 {
		t.Fatalf("only %d calls answered before shutdown; the test did not load the server", answered.Load())
	}
	if int64(len(stored)) != answered.Load() {
		t.Fatalf("answered %d calls, stored %d", answered.Load(), len(stored))
	}
	seen := map[string]bool{}
	byRoute := map[store.Route]int{}
	secondBodies := map[string]int{} // by kind
	for _, c := range stored {
		if seen[c.ID] {
			t.Fatalf("call %s stored twice", c.ID)
		}
		seen[c.ID] = true
		if c.Status != 200 {
			t.Errorf("call %s: status %d", c.ID, c.Status)
		}
		byRoute[c.Route]++
		switch c.Workload {
		case "shadowed":
			if c.Mode != store.ModeShadow || c.Route != store.RouteReference || c.Second == nil || c.Second.Kind != store.SecondShadow {
				t.Errorf("shadowed call: mode %q route %q second %+v", c.Mode, c.Route, c.Second)
			}
		case "served":
			if c.Mode != store.ModeServe || c.Route == store.RouteReference || c.Second == nil {
				t.Errorf("served call: mode %q route %q second %+v", c.Mode, c.Route, c.Second)
			}
			if c.Route == store.RouteEscalated && (c.Guard == store.GuardPass || c.Second.Kind != store.SecondRejected) {
				t.Errorf("escalated call: guard %q second %+v", c.Guard, c.Second)
			}
		case "observed":
			if c.Mode != "" || c.Second != nil || c.Route != store.RouteReference {
				t.Errorf("observed call: mode %q route %q second %+v", c.Mode, c.Route, c.Second)
			}
		}
		if c.WorkloadID != c.Workload {
			t.Errorf("call tagged %q has workload id %q", c.Workload, c.WorkloadID)
		}
		// A shadow or verification answer that came is recorded, redacted, as the
		// chat.completion it was; one that did not come (canceled at shutdown) has none.
		if s := c.Second; s != nil && s.Kind != store.SecondRejected {
			var cc openai.ChatCompletion
			switch {
			case s.Compared && (json.Unmarshal(s.Response, &cc) != nil || cc.Object != "chat.completion" || len(cc.Choices) == 0):
				t.Errorf("call %s: compared %s answer without its body: %q", c.ID, s.Kind, s.Response)
			case s.Status == 0 && s.Response != nil:
				t.Errorf("call %s: %s answer that never came (%s) has a body", c.ID, s.Kind, s.Error)
			case s.Compared:
				secondBodies[s.Kind]++
			}
		}
	}
	if secondBodies[store.SecondShadow] == 0 || secondBodies[store.SecondVerify] == 0 {
		t.Errorf("second answers' bodies recorded by kind: %v; want shadows and verifications", secondBodies)
	}
	if byRoute[store.RouteCandidate] == 0 || byRoute[store.RouteEscalated] == 0 {
		t.Errorf("routes %v: want both candidate-answered and escalated calls", byRoute)
	}
	t.Logf("answered and stored %d calls; routes %v", len(stored), byRoute)
}
