// Package main (bench/overhead) measures the latency the downshift gateway adds to a chat
// completion: the same real agent requests (the bundled tau-bench airline calls, 5-20
// KB each, cycled) are sent straight to a local upstream and through the gateway with
// recording on, in alternating blocks so that machine noise falls on both alike. For
// non-streaming and streaming requests at each concurrency it reports p50/p90/p99 of the
// total time (streaming also of the time to the first content or tool-call token), the
// gateway's added latency and requests per second, then checks that every request sent
// through the gateway was recorded.
//
// The upstream is `downshift sim` in replay mode with no latency and no faults: it
// answers each call with GPT-4o's recorded answer, so both paths do the same upstream
// work and the difference is the gateway's own time (its parsing, fingerprinting,
// proxying, metrics and enqueue, plus one more loopback hop). The gateway runs as a
// separate process, built with `go build ./cmd/downshift` and started with
// `downshift serve -c` on a generated config (SQLite store in a temporary directory,
// log level warn), as it would be deployed.
//
// With -shift it measures shift policies instead, through one gateway: observe (no
// policy), shadow, the candidate model asked directly, and serve (the candidate behind
// every guard), each a target in the same alternating blocks; see shift.go.
//
// It is a benchmark, not a test: run it on a quiet machine with
//
//	go run ./bench/overhead [-n 2000] [-warmup 200] [-concurrency 1,32] [-out bench/out/overhead.json]
//	go run ./bench/overhead -shift [-concurrency 1,8] [-verify 0.0001] [-pause 0] [-out bench/out/shift.json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

type options struct {
	n           int
	warmup      int
	blockSize   int
	concurrency []int
	modes       []string
	out         string
	perf        string
	floor       bool
	relay       bool
	transport   string // the gateway's backends[].transport; empty: the default
	keep        bool
	proxyCPU    int // pin the gateway, the floor proxy and the relay to this CPU; -1: no pinning
	shift       bool
	verify      float64 // serve policy's verification share, in shift mode
	pause       time.Duration
}

func main() {
	var o options
	var conc, modes, proxyUpstream, relayUpstream string
	flag.IntVar(&o.n, "n", 2000, "measured requests per cell and target")
	flag.IntVar(&o.warmup, "warmup", 200, "unmeasured requests per cell and target before measuring")
	flag.IntVar(&o.blockSize, "block", 0, "requests per alternating block (0: max(200, 20 x concurrency))")
	flag.StringVar(&conc, "concurrency", "1,32", "comma-separated concurrency levels")
	flag.StringVar(&modes, "modes", "nonstream,stream", "comma-separated modes: nonstream, stream")
	flag.StringVar(&o.out, "out", "bench/out/overhead.json", "JSON results file (empty: none; with -shift the default is bench/out/shift.json)")
	flag.StringVar(&o.perf, "perf", "", "record the gateway process with `perf record -g` into this file")
	flag.BoolVar(&o.floor, "floor", true, "also measure a plain Go reverse proxy (httputil.ReverseProxy, separate process) as the floor any proxy pays")
	flag.StringVar(&proxyUpstream, "serve-proxy", "", "internal: run as the floor proxy to this upstream URL")
	flag.BoolVar(&o.relay, "relay", true, "also measure a bare TCP relay (separate process, no HTTP parsing) as the floor of one more loopback hop")
	flag.StringVar(&relayUpstream, "serve-relay", "", "internal: run as the relay to this upstream `HOST:PORT`")
	flag.IntVar(&o.proxyCPU, "proxy-cpu", -1, "run the gateway, the floor proxy and the relay pinned to this CPU with taskset (run the harness itself pinned to another: taskset -c 0 go run ./bench/overhead -proxy-cpu 1)")
	flag.StringVar(&o.transport, "transport", "", "the gateway's backend transport setting (auto or net/http; empty: the default, auto)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binary, config, SQLite store, gateway log)")
	flag.BoolVar(&o.shift, "shift", false, "measure shift policies instead: observe, shadow, the candidate asked directly and serve (guards), through one gateway (see shift.go)")
	flag.Float64Var(&o.verify, "verify", 0.0001, "with -shift: the serve policy's verification share (above 0)")
	flag.DurationVar(&o.pause, "pause", 0, "with -shift: each worker waits this long after an answer before its next request (not timed)")
	flag.Parse()
	if proxyUpstream != "" {
		if err := serveProxy(proxyUpstream); err != nil {
			fmt.Fprintln(os.Stderr, "overhead -serve-proxy:", err)
			os.Exit(1)
		}
		return
	}
	if relayUpstream != "" {
		if err := serveRelay(relayUpstream); err != nil {
			fmt.Fprintln(os.Stderr, "overhead -serve-relay:", err)
			os.Exit(1)
		}
		return
	}
	for _, s := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			fatalf("-concurrency %q: want positive integers", conc)
		}
		o.concurrency = append(o.concurrency, c)
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		if m != "nonstream" && m != "stream" {
			fatalf("-modes %q: want nonstream and/or stream", modes)
		}
		o.modes = append(o.modes, m)
	}
	if o.n < 1 || o.warmup < 0 {
		fatalf("-n must be positive and -warmup not negative")
	}
	runner := run
	if o.shift {
		runner = runShift
		outSet := false
		flag.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
		if !outSet {
			o.out = "bench/out/shift.json"
		}
		if o.verify <= 0 || o.verify > 1 {
			fatalf("-verify must be above 0 and at most 1")
		}
	}
	if err := runner(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "overhead: "+format+"\n", args...)
	os.Exit(2)
}

// report is what -out receives.
type report struct {
	header
	Cells   []cell      `json:"cells"`
	Record  recordCheck `json:"record_check"`
	LoadEnd string      `json:"loadavg_end"`
}

type machine struct {
	NumCPU    int    `json:"num_cpu"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	LoadStart string `json:"loadavg_start"`
}

type cell struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Block       int     `json:"block"`
	LoadAvg     string  `json:"loadavg_before"`
	Direct      side    `json:"direct"`
	Gateway     side    `json:"gateway"`
	Floor       *side   `json:"floor,omitempty"`
	Relay       *side   `json:"relay,omitempty"`
	AddedP50    float64 `json:"added_p50_us"`
	AddedP99    float64 `json:"added_p99_us"`
	AddedTTFT50 float64 `json:"added_ttft_p50_us,omitempty"`
	AddedTTFT99 float64 `json:"added_ttft_p99_us,omitempty"`
	// PairedP50 is the median over block pairs of the difference of block p50s (of
	// the total, or of TTFT when streaming).
	PairedP50 float64 `json:"paired_block_added_p50_us"`
}

type side struct {
	// CPU is the CPU time per request (µs) each metered process (gateway, simulator)
	// used during this target's blocks; shift mode only.
	CPU      map[string]float64 `json:"cpu_us_per_request,omitempty"`
	Total    *dist              `json:"total"`
	TTFT     *dist              `json:"ttft,omitempty"`
	RPS      float64            `json:"requests_per_second"`
	Errors   int                `json:"errors"`
	FirstErr string             `json:"first_error,omitempty"`
}

type recordCheck struct {
	SentThroughGateway int64   `json:"sent_through_gateway"`
	MetricsWritten     float64 `json:"metrics_records_written_total"`
	MetricsDropped     float64 `json:"metrics_records_dropped_total"`
	StoredAfterSIGTERM int     `json:"stored_after_sigterm"`
	// AssignedOnline counts the stored gateway calls the recorder put in a workload.
	AssignedOnline int `json:"assigned_online"`
	// Metrics are the series of the metrics asked for, read with the counters above.
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	ShutdownError string             `json:"shutdown_error,omitempty"`
	OK            bool               `json:"ok"`
}

// rig is what a run sets up: the binary, the simulator and the gateway as separate
// processes, the requests, and the report's header.
type rig struct {
	o       options
	started time.Time
	dir     string
	bin     string
	reqs    *bodies
	logf    *os.File
	sim     *proc
	gw      *proc // nil once stopped
	perf    *proc
	// upstream and gwBase are base URLs; db is the gateway's SQLite store; key its
	// gateway key, which every target sends.
	upstream, gwBase, db, key string
	maxConc                   int
	header                    header
}

// header is what every report starts with.
type header struct {
	Command   string  `json:"command"`
	Revision  string  `json:"revision"`
	Date      string  `json:"date"`
	Machine   machine `json:"machine"`
	Upstream  string  `json:"upstream"`
	Requests  int     `json:"distinct_requests"`
	MeanBytes int     `json:"mean_request_bytes"`
}

// setUp builds the binary and starts the simulator (with simArgs) and the gateway,
// printing what it does under title. Close the rig whatever it returns.
func setUp(o options, w io.Writer, title string, simArgs []string, gwo gatewayOptions) (*rig, error) {
	r := &rig{o: o, started: time.Now(), maxConc: 1}
	for _, c := range o.concurrency {
		r.maxConc = max(r.maxConc, c)
	}
	root, err := moduleRoot()
	if err != nil {
		return r, err
	}
	if r.dir, err = os.MkdirTemp("", "downshift-overhead-"); err != nil {
		return r, err
	}
	r.header = header{
		Command:  strings.TrimSpace("go run ./bench/overhead " + strings.Join(os.Args[1:], " ")),
		Revision: revision(root),
		Date:     r.started.UTC().Format(time.RFC3339),
		Machine: machine{
			NumCPU: runtime.NumCPU(), CPU: cpuModel(), GoVersion: goVersion(),
			OS: runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadAvg(),
		},
		Upstream: "downshift sim, replay mode (GPT-4o's recorded tau-bench answers), no latency, no faults, separate process",
	}
	h := r.header
	fmt.Fprintf(w, "%s  %s\n", title, h.Date)
	fmt.Fprintf(w, "revision: %s\n", h.Revision)
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, %s; loadavg %s\n", h.Machine.NumCPU, h.Machine.CPU, h.Machine.GoVersion, h.Machine.OS, h.Machine.LoadStart)
	if gwo.CPU >= 0 {
		fmt.Fprintf(w, "pinning: gateway, floor proxy and relay on CPU %d (taskset); harness and simulator where the harness runs\n", gwo.CPU)
	}

	if r.reqs, err = loadBodies(); err != nil {
		return r, err
	}
	r.header.Requests, r.header.MeanBytes = len(r.reqs.plain), r.reqs.bytes/len(r.reqs.plain)
	fmt.Fprintf(w, "requests: %d bundled tau-bench calls (mean %d bytes), cycled; the same sequence to every target\n", r.header.Requests, r.header.MeanBytes)

	fmt.Fprintf(w, "building ./cmd/downshift into %s\n", r.dir)
	if r.bin, err = buildDownshift(root, r.dir); err != nil {
		return r, err
	}
	if r.logf, err = os.Create(filepath.Join(r.dir, "processes.log")); err != nil {
		return r, err
	}
	if r.sim, r.upstream, err = startSim(r.bin, r.logf, simArgs...); err != nil {
		return r, err
	}
	if r.gw, r.gwBase, r.db, r.key, err = startGateway(r.bin, r.dir, r.upstream, gwo, r.logf); err != nil {
		return r, err
	}
	fmt.Fprintf(w, "upstream: %s (sim pid %d); gateway: %s (pid %d), recording to %s\n\n", r.upstream, r.sim.cmd.Process.Pid, r.gwBase, r.gw.cmd.Process.Pid, r.db)
	return r, nil
}

// measure attaches perf to the gateway when -perf asks for it, primes the upstream,
// then calls cell for each mode and concurrency in turn, and stops perf.
//
// Priming sends every distinct request to the simulator once: it counts a recording's
// tokens the first time it replays it, which would otherwise land on whichever target
// saw the request first.
func (r *rig) measure(w io.Writer, cell func(stream bool, conc int)) error {
	if r.o.perf != "" {
		var err error
		if r.perf, err = startPerf(r.o.perf, r.gw.cmd.Process.Pid, r.logf); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond) // let perf attach
	}
	fmt.Fprintf(w, "priming the upstream with each of the %d requests once\n\n", len(r.reqs.plain))
	direct := newTarget("prime", r.upstream, r.key, r.reqs, 4)
	if samples, _ := block(direct, false, 0, len(r.reqs.plain), 4); errorsIn(samples) > 0 {
		return fmt.Errorf("priming the upstream: %d of %d requests failed", errorsIn(samples), len(samples))
	}
	for _, mode := range r.o.modes {
		for _, conc := range r.o.concurrency {
			cell(mode == "stream", conc)
		}
	}
	r.stopPerf(w)
	return nil
}

// modeName names a cell's mode.
func modeName(stream bool) string {
	if stream {
		return "stream"
	}
	return "nonstream"
}

func (r *rig) stopPerf(w io.Writer) {
	if r.perf == nil {
		return
	}
	if err := r.perf.stop(syscall.SIGINT, 30*time.Second); err != nil {
		fmt.Fprintln(w, "perf:", err)
	}
	r.perf = nil
	fmt.Fprintf(w, "perf profile of the gateway: %s (perf report -i %s --no-children)\n\n", r.o.perf, r.o.perf)
}

// checkRecords stops the gateway gracefully and checks its store (see checkRecords).
func (r *rig) checkRecords(sent int64, metrics ...string) recordCheck {
	rc := checkRecords(r.gw, r.gwBase, r.db, sent, metrics...)
	r.gw = nil
	return rc
}

// close stops what is still running and removes the temporary directory unless -keep.
func (r *rig) close(w io.Writer) {
	if r.perf != nil {
		_ = r.perf.stop(syscall.SIGINT, 30*time.Second)
	}
	if r.gw != nil {
		_ = r.gw.stop(syscall.SIGKILL, 5*time.Second)
	}
	if r.sim != nil {
		_ = r.sim.stop(syscall.SIGTERM, 5*time.Second)
	}
	if r.logf != nil {
		r.logf.Close()
	}
	if r.dir == "" {
		return
	}
	if r.o.keep {
		fmt.Fprintf(w, "kept %s\n", r.dir)
		return
	}
	os.RemoveAll(r.dir)
}

// writeJSON writes v to path (nothing when path is empty).
func writeJSON(w io.Writer, path string, v any) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s\n", path)
	return nil
}

func run(o options, w io.Writer) error {
	r, err := setUp(o, w, "downshift gateway overhead", nil, gatewayOptions{CPU: o.proxyCPU, Transport: o.transport})
	defer r.close(w)
	if err != nil {
		return err
	}
	rep := report{header: r.header}
	// Every target gets the same gateway key header, so requests are identical.
	direct := newTarget("direct", r.upstream, r.key, r.reqs, r.maxConc)
	gw := newTarget("gateway", r.gwBase, r.key, r.reqs, r.maxConc)
	targets := []*target{direct, gw}
	floors := []struct {
		on    bool
		name  string
		what  string
		start func(upstream string, cpu int, logw io.Writer) (*proc, string, error)
	}{
		{o.floor, "floor", "plain httputil.ReverseProxy", startFloor},
		{o.relay, "relay", "bare TCP relay", startRelay},
	}
	for _, f := range floors {
		if !f.on {
			continue
		}
		p, base, err := f.start(r.upstream, o.proxyCPU, r.logf)
		if err != nil {
			return err
		}
		defer p.stop(syscall.SIGTERM, 5*time.Second)
		targets = append(targets, newTarget(f.name, base, r.key, r.reqs, r.maxConc))
		fmt.Fprintf(w, "%s: %s at %s (pid %d)\n", f.name, f.what, base, p.cmd.Process.Pid)
	}
	if o.floor || o.relay {
		fmt.Fprintln(w)
	}
	failed := false
	err = r.measure(w, func(stream bool, conc int) {
		c := runCell(o, targets, stream, conc)
		printCell(w, c)
		rep.Cells = append(rep.Cells, c)
		for _, s := range c.sides() {
			failed = failed || s.Errors > 0
		}
	})
	if err != nil {
		return err
	}

	rep.Record = r.checkRecords(gw.sent.Load())
	printRecord(w, rep.Record)
	rep.LoadEnd = loadAvg()
	fmt.Fprintf(w, "loadavg at end: %s; took %s\n\n", rep.LoadEnd, time.Since(r.started).Round(time.Second))
	printMarkdown(w, rep.Cells)

	if err := writeJSON(w, o.out, rep); err != nil {
		return err
	}
	switch {
	case !rep.Record.OK:
		return errors.New("record check failed")
	case failed:
		return errors.New("some requests failed (see first_error in the cells)")
	}
	return nil
}

// alternate warms each target up, then sends o.n requests to each in alternating
// blocks, rotating which target goes first: block k of every target holds the same
// requests. It returns each target's series and the block size.
// meter, when not nil, reads the processes' CPU time around every block.
func alternate(o options, targets []*target, meter *cpuMeter, stream bool, conc int) ([]series, int) {
	bs := o.blockSize
	if bs <= 0 {
		bs = max(200, 20*conc)
	}
	if o.warmup > 0 {
		for _, t := range targets {
			block(t, stream, 0, o.warmup, conc)
		}
	}
	ser := make([]series, len(targets))
	for k, first := 0, o.warmup; first < o.warmup+o.n; k, first = k+1, first+bs {
		n := min(bs, o.warmup+o.n-first)
		for j := range targets {
			i := (j + k) % len(targets)
			before := meter.read()
			samples, wall := block(targets[i], stream, first, n, conc)
			ser[i].add(samples, wall, stream)
			if meter != nil {
				ser[i].addCPU(before, meter.read())
			}
		}
	}
	return ser, bs
}

// runCell measures targets (direct, gateway, then maybe floor and relay, by name) at
// one mode and concurrency.
func runCell(o options, targets []*target, stream bool, conc int) cell {
	c := cell{Mode: modeName(stream), Concurrency: conc, LoadAvg: loadAvg()}
	ser, bs := alternate(o, targets, nil, stream, conc)
	c.Block = bs
	c.Direct, c.Gateway = toSide(&ser[0]), toSide(&ser[1])
	for i, t := range targets[2:] {
		s := toSide(&ser[2+i])
		switch t.name {
		case "floor":
			c.Floor = &s
		case "relay":
			c.Relay = &s
		}
	}
	if c.Direct.Total != nil && c.Gateway.Total != nil {
		c.AddedP50 = c.Gateway.Total.P50 - c.Direct.Total.P50
		c.AddedP99 = c.Gateway.Total.P99 - c.Direct.Total.P99
	}
	if c.Direct.TTFT != nil && c.Gateway.TTFT != nil {
		c.AddedTTFT50 = c.Gateway.TTFT.P50 - c.Direct.TTFT.P50
		c.AddedTTFT99 = c.Gateway.TTFT.P99 - c.Direct.TTFT.P99
	}
	c.PairedP50 = pairedP50(ser[0].blockP50(), ser[1].blockP50())
	return c
}

// sides returns the cell's measured sides: direct, gateway, then floor and relay where
// measured.
func (c cell) sides() []side {
	sides := []side{c.Direct, c.Gateway}
	for _, s := range []*side{c.Floor, c.Relay} {
		if s != nil {
			sides = append(sides, *s)
		}
	}
	return sides
}

func errorsIn(samples []sample) int {
	n := 0
	for _, s := range samples {
		if s.err != nil {
			n++
		}
	}
	return n
}

func toSide(s *series) side {
	out := side{Total: summarize(s.total), TTFT: summarize(s.ttft), Errors: s.errors}
	if s.wall > 0 {
		out.RPS = float64(len(s.total)+s.errors) / s.wall.Seconds()
	}
	if s.firstErr != nil {
		out.FirstErr = s.firstErr.Error()
	}
	return out
}

// checkRecords waits for the recorder to catch up, reads its counters (and the series
// of metrics) from /metrics, stops the gateway with SIGTERM (a graceful drain) and
// counts the calls in its store.
func checkRecords(gwP *proc, base, db string, sent int64, metrics ...string) recordCheck {
	rc := recordCheck{SentThroughGateway: sent}
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; {
		m, err := metricSums(ctx, base+"/metrics", "downshift_records_written_total", "downshift_records_dropped_total")
		if err == nil && len(metrics) > 0 {
			rc.Metrics, err = metricValues(ctx, base+"/metrics", metrics...)
		}
		if err != nil {
			rc.ShutdownError = "metrics: " + err.Error()
			break
		}
		rc.MetricsWritten, rc.MetricsDropped = m["downshift_records_written_total"], m["downshift_records_dropped_total"]
		if int64(rc.MetricsWritten+rc.MetricsDropped) >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := gwP.stop(syscall.SIGTERM, 90*time.Second); err != nil {
		rc.ShutdownError = strings.TrimPrefix(rc.ShutdownError+"; "+err.Error(), "; ")
	}
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		rc.ShutdownError = strings.TrimPrefix(rc.ShutdownError+"; "+err.Error(), "; ")
		return rc
	}
	defer st.Close()
	// The store also holds the imported calls the workload model was fitted on.
	all, err := st.CountCalls(ctx, store.Filter{})
	if err == nil {
		var imported int
		imported, err = st.CountCalls(ctx, store.Filter{Source: store.SourceTauBench})
		all -= imported
	}
	if err != nil {
		rc.ShutdownError = strings.TrimPrefix(rc.ShutdownError+"; "+err.Error(), "; ")
		return rc
	}
	n := all
	rc.StoredAfterSIGTERM = n
	if calls, err := st.ListCalls(ctx, store.Filter{Limit: 1 << 30}); err == nil {
		for _, c := range calls {
			if c.Source == store.SourceGateway && c.WorkloadID != "" {
				rc.AssignedOnline++
			}
		}
	}
	rc.OK = rc.ShutdownError == "" && rc.MetricsDropped == 0 && int64(n) == sent
	return rc
}

func us(v float64) string {
	switch {
	case v >= 10000 || v <= -10000:
		return fmt.Sprintf("%.1fms", v/1000)
	default:
		return fmt.Sprintf("%.0fµs", v)
	}
}

func signedUS(v float64) string {
	if v >= 0 {
		return "+" + us(v)
	}
	return us(v)
}

func printCell(w io.Writer, c cell) {
	fmt.Fprintf(w, "%s, concurrency %d (n=%d per target, blocks of %d; loadavg %s)\n",
		c.Mode, c.Concurrency, sideN(c.Direct), c.Block, c.LoadAvg)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t\tp50\tp90\tp99\tmean\treq/s\terrors\t")
	row := func(label string, d *dist, s side) {
		if d == nil {
			fmt.Fprintf(tw, "%s\t\t-\t-\t-\t-\t%.0f\t%d\t\n", label, s.RPS, s.Errors)
			return
		}
		fmt.Fprintf(tw, "%s\t\t%s\t%s\t%s\t%s\t%.0f\t%d\t\n", label, us(d.P50), us(d.P90), us(d.P99), us(d.Mean), s.RPS, s.Errors)
	}
	added := func(label string, d, g *dist) {
		if d == nil || g == nil {
			return
		}
		fmt.Fprintf(tw, "%s\t\t%s\t%s\t%s\t%s\t\t\t\n", label, signedUS(g.P50-d.P50), signedUS(g.P90-d.P90), signedUS(g.P99-d.P99), signedUS(g.Mean-d.Mean))
	}
	if c.Mode == "stream" {
		row("direct ttft", c.Direct.TTFT, c.Direct)
		row("gateway ttft", c.Gateway.TTFT, c.Gateway)
		added("added ttft", c.Direct.TTFT, c.Gateway.TTFT)
		if c.Floor != nil {
			row("floor ttft", c.Floor.TTFT, *c.Floor)
			added("floor added ttft", c.Direct.TTFT, c.Floor.TTFT)
		}
		if c.Relay != nil {
			row("relay ttft", c.Relay.TTFT, *c.Relay)
			added("relay added ttft", c.Direct.TTFT, c.Relay.TTFT)
		}
	}
	row("direct total", c.Direct.Total, c.Direct)
	row("gateway total", c.Gateway.Total, c.Gateway)
	added("added total", c.Direct.Total, c.Gateway.Total)
	if c.Floor != nil {
		row("floor total", c.Floor.Total, *c.Floor)
		added("floor added total", c.Direct.Total, c.Floor.Total)
	}
	if c.Relay != nil {
		row("relay total", c.Relay.Total, *c.Relay)
		added("relay added total", c.Direct.Total, c.Relay.Total)
	}
	tw.Flush()
	what := "total"
	if c.Mode == "stream" {
		what = "ttft"
	}
	fmt.Fprintf(w, "  added p50 of %s, median of per-block paired differences: %s\n", what, signedUS(c.PairedP50))
	for _, s := range c.sides() {
		if s.FirstErr != "" {
			fmt.Fprintf(w, "  first error: %s\n", s.FirstErr)
		}
	}
	fmt.Fprintln(w)
}

func sideN(s side) int {
	if s.Total == nil {
		return s.Errors
	}
	return s.Total.N + s.Errors
}

func printRecord(w io.Writer, rc recordCheck) {
	verdict := "OK"
	if !rc.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "record check: %s: %d requests sent through the gateway (warm-up included); /metrics before shutdown: written %.0f, dropped %.0f; after SIGTERM the store holds %d calls\n",
		verdict, rc.SentThroughGateway, rc.MetricsWritten, rc.MetricsDropped, rc.StoredAfterSIGTERM)
	fmt.Fprintf(w, "online workload assignment: %d of the %d stored gateway calls were put in a workload as they were recorded\n", rc.AssignedOnline, rc.StoredAfterSIGTERM)
	if rc.ShutdownError != "" {
		fmt.Fprintf(w, "  error: %s\n", rc.ShutdownError)
	}
}

// printMarkdown prints the summary table RESULTS.md carries.
func printMarkdown(w io.Writer, cells []cell) {
	fmt.Fprintln(w, "| mode | conc. | metric | direct p50 | gateway p50 | added p50 | floor added p50 | relay added p50 | direct p99 | gateway p99 | added p99 | floor added p99 | direct req/s | gateway req/s |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	line := func(c cell, metric string, d, g, f, r *dist) {
		if d == nil || g == nil {
			return
		}
		f50, f99, r50 := "-", "-", "-"
		if f != nil {
			f50, f99 = signedUS(f.P50-d.P50), signedUS(f.P99-d.P99)
		}
		if r != nil {
			r50 = signedUS(r.P50 - d.P50)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s | %.0f | %.0f |\n", c.Mode, c.Concurrency, metric,
			us(d.P50), us(g.P50), signedUS(g.P50-d.P50), f50, r50, us(d.P99), us(g.P99), signedUS(g.P99-d.P99), f99, c.Direct.RPS, c.Gateway.RPS)
	}
	for _, c := range cells {
		var ft, fl, rt, rl *dist
		if c.Floor != nil {
			ft, fl = c.Floor.TTFT, c.Floor.Total
		}
		if c.Relay != nil {
			rt, rl = c.Relay.TTFT, c.Relay.Total
		}
		if c.Mode == "stream" {
			line(c, "TTFT", c.Direct.TTFT, c.Gateway.TTFT, ft, rt)
		}
		line(c, "total", c.Direct.Total, c.Gateway.Total, fl, rl)
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), "go version "))
}

// revision names the commit measured, with "+dirty" when the tree has changes.
func revision(root string) string {
	cmd := exec.Command("git", "rev-parse", "--short=12", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	rev := strings.TrimSpace(string(out))
	cmd = exec.Command("git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = root
	if st, err := cmd.Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "+dirty"
	}
	return rev
}
