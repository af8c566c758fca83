// Package main (bench/evalthroughput) measures how fast `downshift eval` replays calls:
// 1,000 real tau-bench calls (the bundled airline conversations, imported into a fresh
// SQLite store as one workload) are evaluated against a candidate served by the
// simulator, which holds every answer for a fixed latency (20 ms by default) before
// sending it. With the runner keeping c calls in flight, the ideal throughput is
// c / latency; the table sets the measured figure beside it, so that any shortfall is
// the runner's own cost (building requests, reading streams, scoring, saving) or the
// machine's.
//
// The simulator runs in this process on a real socket; the runner talks to it over
// HTTP exactly as it talks to a remote model.
//
//	go run ./bench/evalthroughput [-n 1000] [-latency 20ms] [-concurrency 1,8,32,64]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

func main() {
	n := flag.Int("n", 1000, "calls to replay per run")
	latency := flag.Duration("latency", 20*time.Millisecond, "the simulator's fixed time to answer")
	concs := flag.String("concurrency", "1,8,32,64", "concurrencies to measure, comma-separated")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "evalthroughput:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*n, *latency, *concs); err != nil {
		fmt.Fprintln(os.Stderr, "evalthroughput:", err)
		os.Exit(1)
	}
}

func run(n int, latency time.Duration, concs string) error {
	ctx := context.Background()
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		return err
	}
	// The simulator answers as "candidate" with the recorded answer, after latency:
	// the whole delay before the first byte, and the answer at once. A second one
	// answers at once, to measure the ceiling this machine puts on the rate.
	slow, err := startSim(ctx, calls, latency)
	if err != nil {
		return err
	}
	fast, err := startSim(ctx, calls, 0)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "evalthroughput-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "eval.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := importWorkload(ctx, st, calls); err != nil {
		return err
	}
	candidate := func(url string) (*backend.Model, error) {
		b, err := backend.New(config.Backend{Name: "sim", URL: url, ConnectTimeout: 5 * time.Second,
			ResponseTimeout: time.Minute, MaxIdleConns: 256}, nil)
		if err != nil {
			return nil, err
		}
		return &backend.Model{Name: "candidate", UpstreamName: "candidate", Backend: b}, nil
	}
	cand, err := candidate(slow)
	if err != nil {
		return err
	}
	ceilingCand, err := candidate(fast)
	if err != nil {
		return err
	}
	measure := func(m *backend.Model, c int) (eval.Stats, error) {
		out, err := eval.Evaluate(ctx, eval.Options{Store: st, WorkloadID: "all", Candidates: []*backend.Model{m},
			Variants: []string{eval.VariantZeroShot}, Set: eval.SetOptions{TestSize: n, MaxTestShare: 0.9}, NewRun: true,
			Concurrency: c})
		if err != nil {
			return eval.Stats{}, err
		}
		return out.Stats, nil
	}

	// A warm-up pass, not measured: the simulators count each recording's tokens on
	// first use, which would otherwise fall on whichever run came first.
	for _, m := range []*backend.Model{ceilingCand, cand} {
		if _, err := measure(m, 32); err != nil {
			return err
		}
	}
	ceiling, err := measure(ceilingCand, 64)
	if err != nil {
		return err
	}
	maxRate := float64(ceiling.Done) / ceiling.Elapsed.Seconds()
	fmt.Printf("replaying %d tau-bench calls; GOMAXPROCS=%d\n", n, runtime.GOMAXPROCS(0))
	fmt.Printf("ceiling: %.0f calls/s with a simulator that answers at once (concurrency 64): the CPU cost of runner and simulator together\n\n", maxRate)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CONCURRENCY\tCALLS\tELAPSED\tCALLS/S\tIDEAL (C/%s)\tEXPECTED min(IDEAL, CEILING)\tOF EXPECTED\tFAILED\n", latency)
	for _, f := range strings.Split(concs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("concurrency %q", f)
		}
		s, err := measure(cand, c)
		if err != nil {
			return err
		}
		rate := float64(s.Done) / s.Elapsed.Seconds()
		ideal := float64(c) / latency.Seconds()
		expected := min(ideal, maxRate)
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.0f\t%.0f\t%.0f\t%.0f%%\t%d\n", c, s.Done, s.Elapsed.Round(time.Millisecond), rate, ideal,
			expected, 100*rate/expected, s.Failed)
	}
	return tw.Flush()
}

// startSim serves the simulator on a local socket, answering as "candidate" after
// latency, and returns its base URL.
func startSim(ctx context.Context, calls []dataset.Call, latency time.Duration) (string, error) {
	srv, err := sim.New(sim.Options{Mode: sim.ModeReplay, Calls: calls, Seed: 1,
		Candidates: map[string]sim.Degrade{"candidate": {}},
		Latency:    sim.Latency{TTFT: latency}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	return "http://" + ln.Addr().String() + "/v1", nil
}

// importWorkload imports the calls and puts every one in workload "all".
func importWorkload(ctx context.Context, st store.Store, calls []dataset.Call) error {
	var imported []store.Call
	im := dataset.Importer{Call: func(c store.Call) error { imported = append(imported, c); return nil }}
	if err := im.TauBench(calls); err != nil {
		return err
	}
	if _, err := st.ImportCalls(ctx, imported); err != nil {
		return err
	}
	assign := make(map[string]string, len(imported))
	for _, c := range imported {
		assign[c.ID] = "all"
	}
	if err := st.SaveWorkloads(ctx, store.WorkloadRun{ID: "bench", At: time.Now()}, []store.Workload{{ID: "all", Label: "all calls"}}); err != nil {
		return err
	}
	return st.AssignWorkloads(ctx, assign)
}
