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
// It is a benchmark, not a test: run it on a quiet machine with
//
//	go run ./bench/overhead [-n 2000] [-warmup 200] [-concurrency 1,32] [-out bench/out/overhead.json]
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
	keep        bool
	proxyCPU    int // pin the gateway and the floor proxy to this CPU; -1: no pinning
}

func main() {
	var o options
	var conc, modes, proxyUpstream string
	flag.IntVar(&o.n, "n", 2000, "measured requests per cell and target")
	flag.IntVar(&o.warmup, "warmup", 200, "unmeasured requests per cell and target before measuring")
	flag.IntVar(&o.blockSize, "block", 0, "requests per alternating block (0: max(200, 20 x concurrency))")
	flag.StringVar(&conc, "concurrency", "1,32", "comma-separated concurrency levels")
	flag.StringVar(&modes, "modes", "nonstream,stream", "comma-separated modes: nonstream, stream")
	flag.StringVar(&o.out, "out", "bench/out/overhead.json", "JSON results file (empty: none)")
	flag.StringVar(&o.perf, "perf", "", "record the gateway process with `perf record -g` into this file")
	flag.BoolVar(&o.floor, "floor", true, "also measure a plain Go reverse proxy (httputil.ReverseProxy, separate process) as the floor any proxy pays")
	flag.StringVar(&proxyUpstream, "serve-proxy", "", "internal: run as the floor proxy to this upstream URL")
	flag.IntVar(&o.proxyCPU, "proxy-cpu", -1, "run the gateway and the floor proxy pinned to this CPU with taskset (run the harness itself pinned to another: taskset -c 0 go run ./bench/overhead -proxy-cpu 1)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binary, config, SQLite store, gateway log)")
	flag.Parse()
	if proxyUpstream != "" {
		if err := serveProxy(proxyUpstream); err != nil {
			fmt.Fprintln(os.Stderr, "overhead -serve-proxy:", err)
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
	if err := run(o, os.Stdout); err != nil {
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
	Command   string      `json:"command"`
	Revision  string      `json:"revision"`
	Date      string      `json:"date"`
	Machine   machine     `json:"machine"`
	Upstream  string      `json:"upstream"`
	Requests  int         `json:"distinct_requests"`
	MeanBytes int         `json:"mean_request_bytes"`
	Cells     []cell      `json:"cells"`
	Record    recordCheck `json:"record_check"`
	LoadEnd   string      `json:"loadavg_end"`
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
	AddedP50    float64 `json:"added_p50_us"`
	AddedP99    float64 `json:"added_p99_us"`
	AddedTTFT50 float64 `json:"added_ttft_p50_us,omitempty"`
	AddedTTFT99 float64 `json:"added_ttft_p99_us,omitempty"`
	// PairedP50 is the median over block pairs of the difference of block p50s (of
	// the total, or of TTFT when streaming).
	PairedP50 float64 `json:"paired_block_added_p50_us"`
}

type side struct {
	Total    *dist   `json:"total"`
	TTFT     *dist   `json:"ttft,omitempty"`
	RPS      float64 `json:"requests_per_second"`
	Errors   int     `json:"errors"`
	FirstErr string  `json:"first_error,omitempty"`
}

type recordCheck struct {
	SentThroughGateway int64   `json:"sent_through_gateway"`
	MetricsWritten     float64 `json:"metrics_records_written_total"`
	MetricsDropped     float64 `json:"metrics_records_dropped_total"`
	StoredAfterSIGTERM int     `json:"stored_after_sigterm"`
	// AssignedOnline counts the stored gateway calls the recorder put in a workload.
	AssignedOnline int    `json:"assigned_online"`
	ShutdownError  string `json:"shutdown_error,omitempty"`
	OK             bool   `json:"ok"`
}

func run(o options, w io.Writer) error {
	started := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "downshift-overhead-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	rep := report{
		Command:  strings.TrimSpace("go run ./bench/overhead " + strings.Join(os.Args[1:], " ")),
		Revision: revision(root),
		Date:     started.UTC().Format(time.RFC3339),
		Machine: machine{
			NumCPU: runtime.NumCPU(), CPU: cpuModel(), GoVersion: goVersion(),
			OS: runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadAvg(),
		},
		Upstream: "downshift sim, replay mode (GPT-4o's recorded tau-bench answers), no latency, no faults, separate process",
	}
	fmt.Fprintf(w, "downshift gateway overhead  %s\n", rep.Date)
	fmt.Fprintf(w, "revision: %s\n", rep.Revision)
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, %s; loadavg %s\n", rep.Machine.NumCPU, rep.Machine.CPU, rep.Machine.GoVersion, rep.Machine.OS, rep.Machine.LoadStart)
	if o.proxyCPU >= 0 {
		fmt.Fprintf(w, "pinning: gateway and floor proxy on CPU %d (taskset); harness and simulator where the harness runs\n", o.proxyCPU)
	}

	b, err := loadBodies()
	if err != nil {
		return err
	}
	rep.Requests, rep.MeanBytes = len(b.plain), b.bytes/len(b.plain)
	fmt.Fprintf(w, "requests: %d bundled tau-bench calls (mean %d bytes), cycled; same sequence to both targets\n", rep.Requests, rep.MeanBytes)

	fmt.Fprintf(w, "building ./cmd/downshift into %s\n", dir)
	bin, err := buildDownshift(root, dir)
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "processes.log"))
	if err != nil {
		return err
	}
	defer logf.Close()

	simP, upstream, err := startSim(bin, logf)
	if err != nil {
		return err
	}
	defer simP.stop(syscall.SIGTERM, 5*time.Second)
	gwP, gwBase, db, key, err := startGateway(bin, dir, upstream, o.proxyCPU, logf)
	if err != nil {
		return err
	}
	gwStopped := false
	defer func() {
		if !gwStopped {
			_ = gwP.stop(syscall.SIGKILL, 5*time.Second)
		}
	}()
	fmt.Fprintf(w, "upstream: %s (sim pid %d); gateway: %s (pid %d), recording to %s\n\n", upstream, simP.cmd.Process.Pid, gwBase, gwP.cmd.Process.Pid, db)

	maxConc := 1
	for _, c := range o.concurrency {
		maxConc = max(maxConc, c)
	}
	// Every target gets the same gateway key header, so requests are identical.
	direct := newTarget("direct", upstream, key, maxConc)
	gw := newTarget("gateway", gwBase, key, maxConc)
	var floor *target
	if o.floor {
		floorP, floorBase, err := startFloor(upstream, o.proxyCPU, logf)
		if err != nil {
			return err
		}
		defer floorP.stop(syscall.SIGTERM, 5*time.Second)
		floor = newTarget("floor", floorBase, key, maxConc)
		fmt.Fprintf(w, "floor: plain httputil.ReverseProxy at %s (pid %d)\n\n", floorBase, floorP.cmd.Process.Pid)
	}

	var perfP *proc
	if o.perf != "" {
		if perfP, err = startPerf(o.perf, gwP.cmd.Process.Pid, logf); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond) // let perf attach
	}

	// The simulator counts a recording's tokens the first time it replays it; send
	// every distinct request once so that neither target pays for that in a cell.
	fmt.Fprintf(w, "priming the upstream with each of the %d requests once\n\n", len(b.plain))
	if samples, _ := block(direct, b, false, 0, len(b.plain), 4); errorsIn(samples) > 0 {
		return fmt.Errorf("priming the upstream: %d of %d requests failed", errorsIn(samples), len(samples))
	}

	failed := false
	for _, mode := range o.modes {
		for _, conc := range o.concurrency {
			c := runCell(o, direct, gw, floor, b, mode == "stream", conc)
			printCell(w, c)
			rep.Cells = append(rep.Cells, c)
			if c.Direct.Errors+c.Gateway.Errors > 0 || (c.Floor != nil && c.Floor.Errors > 0) {
				failed = true
			}
		}
	}

	if perfP != nil {
		if err := perfP.stop(syscall.SIGINT, 30*time.Second); err != nil {
			fmt.Fprintln(w, "perf:", err)
		}
		fmt.Fprintf(w, "perf profile of the gateway: %s (perf report -i %s --no-children)\n\n", o.perf, o.perf)
	}

	rep.Record = checkRecords(gwP, gwBase, db, gw.sent.Load())
	gwStopped = true
	printRecord(w, rep.Record)
	rep.LoadEnd = loadAvg()
	fmt.Fprintf(w, "loadavg at end: %s; took %s\n\n", rep.LoadEnd, time.Since(started).Round(time.Second))
	printMarkdown(w, rep.Cells)

	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		js, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.out, append(js, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nwrote %s\n", o.out)
	}
	if o.keep {
		fmt.Fprintf(w, "kept %s\n", dir)
	}
	switch {
	case !rep.Record.OK:
		return errors.New("record check failed")
	case failed:
		return errors.New("some requests failed (see first_error in the cells)")
	}
	return nil
}

// runCell warms the targets up, then sends n requests to each in alternating blocks,
// rotating which target goes first: block k of every target holds the same requests.
// floor may be nil.
func runCell(o options, direct, gw, floor *target, b *bodies, stream bool, conc int) cell {
	bs := o.blockSize
	if bs <= 0 {
		bs = max(200, 20*conc)
	}
	mode := "nonstream"
	if stream {
		mode = "stream"
	}
	c := cell{Mode: mode, Concurrency: conc, Block: bs, LoadAvg: loadAvg()}
	targets := []*target{direct, gw}
	if floor != nil {
		targets = append(targets, floor)
	}
	if o.warmup > 0 {
		for _, t := range targets {
			block(t, b, stream, 0, o.warmup, conc)
		}
	}
	ser := make([]series, len(targets))
	for k, first := 0, o.warmup; first < o.warmup+o.n; k, first = k+1, first+bs {
		n := min(bs, o.warmup+o.n-first)
		for j := range targets {
			i := (j + k) % len(targets)
			samples, wall := block(targets[i], b, stream, first, n, conc)
			ser[i].add(samples, wall, stream)
		}
	}
	c.Direct, c.Gateway = toSide(&ser[0]), toSide(&ser[1])
	if floor != nil {
		f := toSide(&ser[2])
		c.Floor = &f
	}
	if c.Direct.Total != nil && c.Gateway.Total != nil {
		c.AddedP50 = c.Gateway.Total.P50 - c.Direct.Total.P50
		c.AddedP99 = c.Gateway.Total.P99 - c.Direct.Total.P99
	}
	if c.Direct.TTFT != nil && c.Gateway.TTFT != nil {
		c.AddedTTFT50 = c.Gateway.TTFT.P50 - c.Direct.TTFT.P50
		c.AddedTTFT99 = c.Gateway.TTFT.P99 - c.Direct.TTFT.P99
	}
	c.PairedP50 = pairedP50(ser[0].blockP50, ser[1].blockP50)
	return c
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

// checkRecords waits for the recorder to catch up, reads its counters from /metrics,
// stops the gateway with SIGTERM (a graceful drain) and counts the calls in its store.
func checkRecords(gwP *proc, base, db string, sent int64) recordCheck {
	rc := recordCheck{SentThroughGateway: sent}
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; {
		m, err := metricSums(ctx, base+"/metrics", "downshift_records_written_total", "downshift_records_dropped_total")
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
	}
	row("direct total", c.Direct.Total, c.Direct)
	row("gateway total", c.Gateway.Total, c.Gateway)
	added("added total", c.Direct.Total, c.Gateway.Total)
	if c.Floor != nil {
		row("floor total", c.Floor.Total, *c.Floor)
		added("floor added total", c.Direct.Total, c.Floor.Total)
	}
	tw.Flush()
	what := "total"
	if c.Mode == "stream" {
		what = "ttft"
	}
	fmt.Fprintf(w, "  added p50 of %s, median of per-block paired differences: %s\n", what, signedUS(c.PairedP50))
	sides := []side{c.Direct, c.Gateway}
	if c.Floor != nil {
		sides = append(sides, *c.Floor)
	}
	for _, s := range sides {
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
	fmt.Fprintln(w, "| mode | conc. | metric | direct p50 | gateway p50 | added p50 | floor added p50 | direct p99 | gateway p99 | added p99 | floor added p99 | direct req/s | gateway req/s |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	line := func(c cell, metric string, d, g, f *dist) {
		if d == nil || g == nil {
			return
		}
		f50, f99 := "-", "-"
		if f != nil {
			f50, f99 = signedUS(f.P50-d.P50), signedUS(f.P99-d.P99)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %.0f | %.0f |\n", c.Mode, c.Concurrency, metric,
			us(d.P50), us(g.P50), signedUS(g.P50-d.P50), f50, us(d.P99), us(g.P99), signedUS(g.P99-d.P99), f99, c.Direct.RPS, c.Gateway.RPS)
	}
	for _, c := range cells {
		var ft, fl *dist
		if c.Floor != nil {
			ft, fl = c.Floor.TTFT, c.Floor.Total
		}
		if c.Mode == "stream" {
			line(c, "TTFT", c.Direct.TTFT, c.Gateway.TTFT, ft)
		}
		line(c, "total", c.Direct.Total, c.Gateway.Total, fl)
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
