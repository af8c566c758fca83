package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// Shift mode (-shift) measures what a workload's shift policy costs the client. One
// gateway serves five targets, each the same request sequence in alternating blocks,
// told apart by their X-Downshift-Workload tag and the model they ask for:
//
//   - observe, observe-b: tags without a policy, asking gpt-4o: the reference answers.
//     Two identical targets, so that their difference (an A/A comparison) shows the
//     run's noise.
//   - shadow: a tag whose policy shadows every call on the candidate: the reference
//     answers, then the candidate is asked in the background and the two compared.
//   - candidate: asks the candidate model by name; no policy applies to a candidate,
//     so it answers unguarded.
//   - serve: a tag whose policy serves the candidate: it answers, checked by every
//     guard first, with the smallest verification share (-verify) so that the
//     reference's background answers do not load the machine.
//
// The candidate is the simulator's `--candidate small=0`: GPT-4o's recorded answer,
// never degraded (marked simulated), so every guard passes and shadow comparisons
// agree, as with a candidate ready to be shifted to.
//
// Each comparison is reported as the difference of the pooled quantiles and as the
// per-block differences of block p50s (median, quartiles, and a sign test of how many
// blocks went which way); the A/A row is the yardstick for "measurable". Each target's
// CPU time per request in the gateway and the simulator is read from /proc around its
// blocks: in 10 ms ticks, with the recorder's work lagging into the next block, so
// read it over whole cells only. -pause makes every worker wait after each answer, so
// that what a call leaves running in the background (a shadow's second answer) is
// done before the next call: a difference that remains is on the call's own path;
// without a pause, at concurrency 1 on a small machine, the next call competes with
// it for the CPU.

// shiftModel is the candidate model, as the simulator and the gateway's catalog name it.
const shiftModel = "small"

// shiftTarget is one target of a shift run.
type shiftTarget struct {
	name     string
	workload string // X-Downshift-Workload
	model    string // the model asked for
	mode     string // the tag's policy mode; "" for none
}

var shiftTargets = []shiftTarget{
	{name: "observe", workload: "bench-observe", model: "gpt-4o"},
	{name: "shadow", workload: "bench-shadow", model: "gpt-4o", mode: store.ModeShadow},
	{name: "observe-b", workload: "bench-observe-b", model: "gpt-4o"},
	{name: "candidate", workload: "bench-candidate", model: shiftModel},
	{name: "serve", workload: "bench-serve", model: "gpt-4o", mode: store.ModeServe},
}

// shiftComparisons are the differences reported, each "of - against".
var shiftComparisons = []struct{ name, of, against string }{
	{"A/A: observe-b - observe", "observe-b", "observe"},
	{"shadow - observe", "shadow", "observe"},
	{"candidate - observe", "candidate", "observe"},
	{"guards: serve - candidate", "serve", "candidate"},
}

// shiftReport is what -out receives in shift mode.
type shiftReport struct {
	header
	Candidate   string        `json:"candidate"`
	VerifyShare float64       `json:"verify_share"`
	Cells       []shiftCell   `json:"cells"`
	Record      recordCheck   `json:"record_check"`
	Tags        []tagCheck    `json:"stored_by_target"`
	Policies    []policyCheck `json:"policies_after"`
	LoadEnd     string        `json:"loadavg_end"`
}

type shiftCell struct {
	Mode        string       `json:"mode"`
	Concurrency int          `json:"concurrency"`
	Block       int          `json:"block"`
	LoadAvg     string       `json:"loadavg_before"`
	Targets     []namedSide  `json:"targets"`
	Comparisons []comparison `json:"comparisons"`
}

type namedSide struct {
	Name string `json:"name"`
	side
}

// comparison is one target's latency against another's in one cell, in µs.
type comparison struct {
	Name   string  `json:"name"`
	Metric string  `json:"metric"` // total or ttft
	P50    float64 `json:"p50_us"` // difference of the pooled p50s
	P99    float64 `json:"p99_us"`
	// Paired* summarise the per-block differences of block p50s (block k of both
	// targets holds the same requests): median and quartiles.
	PairedP50 float64 `json:"paired_block_p50_us"`
	PairedQ1  float64 `json:"paired_block_q1_us"`
	PairedQ3  float64 `json:"paired_block_q3_us"`
	// Above counts the blocks in which "of" had the higher p50, of Blocks; SignP is the
	// two-sided sign test's p-value of that count (ties left out).
	Above  int     `json:"blocks_above"`
	Blocks int     `json:"blocks"`
	SignP  float64 `json:"sign_test_p"`
}

// tagCheck is what the store holds of one target's calls after shutdown.
type tagCheck struct {
	Target         string `json:"target"`
	Stored         int    `json:"stored"`
	Sent           int64  `json:"sent"`
	ByCandidate    int    `json:"answered_by_candidate"`
	GuardPass      int    `json:"guard_pass"`
	GuardFailed    int    `json:"guard_failed"`
	ShadowCompared int    `json:"shadow_compared"`
	ShadowAgreed   int    `json:"shadow_pass"`
	Verified       int    `json:"verified"`
	Skipped        int    `json:"second_skipped_or_failed"`
}

type policyCheck struct {
	Workload string `json:"workload"`
	Version  int    `json:"version"`
	Mode     string `json:"mode"`
}

func runShift(o options, w io.Writer) error {
	prepare := func(db string) error { return savePolicies(db, o.verify) }
	r, err := setUp(o, w, "downshift shift on the serve path", []string{"--candidate", shiftModel + "=0"},
		gatewayOptions{CPU: o.proxyCPU, Candidates: []string{shiftModel}, Prepare: prepare, Transport: o.transport})
	defer r.close(w)
	if err != nil {
		return err
	}
	rep := shiftReport{header: r.header, Candidate: shiftModel + " (downshift sim --candidate small=0: GPT-4o's recorded answer, marked simulated)", VerifyShare: o.verify}
	candReqs, err := r.reqs.withModel(shiftModel)
	if err != nil {
		return err
	}
	targets := make([]*target, len(shiftTargets))
	for i, st := range shiftTargets {
		reqs := r.reqs
		if st.model == shiftModel {
			reqs = candReqs
		}
		targets[i] = newTarget(st.name, r.gwBase, r.key, reqs, r.maxConc)
		targets[i].workload = st.workload
		targets[i].pause = o.pause
		desc := "no policy"
		if st.mode != "" {
			desc = st.mode + " " + shiftModel
		}
		fmt.Fprintf(w, "target %-9s  X-Downshift-Workload: %-15s  model %-6s  %s\n", st.name, st.workload, st.model, desc)
	}
	fmt.Fprintf(w, "serve's verification share: %g\n", o.verify)
	if o.pause > 0 {
		fmt.Fprintf(w, "each worker pauses %v after every answer\n", o.pause)
	}
	fmt.Fprintln(w)
	meter := &cpuMeter{names: []string{"gateway", "sim"}, pids: []int{r.gw.cmd.Process.Pid, r.sim.cmd.Process.Pid}}
	failed := false
	err = r.measure(w, func(stream bool, conc int) {
		c := runShiftCell(o, targets, meter, stream, conc)
		printShiftCell(w, c)
		rep.Cells = append(rep.Cells, c)
		for _, t := range c.Targets {
			failed = failed || t.Errors > 0
		}
	})
	if err != nil {
		return err
	}

	var sent int64
	for _, t := range targets {
		sent += t.sent.Load()
	}
	rep.Record = r.checkRecords(sent, "downshift_second_answers_total", "downshift_escalations_total", "downshift_guard_failures_unescalated_total")
	printRecord(w, rep.Record)
	for _, k := range slices.Sorted(maps.Keys(rep.Record.Metrics)) {
		fmt.Fprintf(w, "  /metrics %s %.0f\n", k, rep.Record.Metrics[k])
	}
	var cerr error
	rep.Tags, rep.Policies, cerr = checkShift(r.db, targets)
	printShiftRecords(w, rep.Tags, rep.Policies)
	rep.LoadEnd = loadAvg()
	fmt.Fprintf(w, "loadavg at end: %s; took %s\n\n", rep.LoadEnd, time.Since(r.started).Round(time.Second))
	printShiftMarkdown(w, rep.Cells)

	if err := writeJSON(w, o.out, rep); err != nil {
		return err
	}
	switch {
	case !rep.Record.OK:
		return errors.New("record check failed")
	case cerr != nil:
		return cerr
	case failed:
		return errors.New("some requests failed (see first_error in the cells)")
	}
	return nil
}

// savePolicies saves the shadow and serve targets' policies in the store before the
// gateway starts, as `downshift shift TAG --to small --mode shadow|serve` would
// (whose CLI accepts a tag only once recorded calls carry it), with that command's
// default thresholds.
func savePolicies(db string, verify float64) error {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, t := range shiftTargets {
		if t.mode == "" {
			continue
		}
		p := store.Policy{Workload: t.workload, Mode: t.mode, Candidate: shiftModel,
			ShadowShare: 1, MinAgreement: 0.9, MinGuardPass: 0.95,
			At: time.Now(), Actor: "cli", ActorName: "bench/overhead", Reason: "benchmark"}
		if t.mode == store.ModeServe {
			p.VerifyShare = verify
		}
		if _, err := st.SavePolicy(ctx, p); err != nil {
			return fmt.Errorf("policy of %s: %w", t.workload, err)
		}
	}
	return nil
}

// runShiftCell measures every target at one mode and concurrency.
func runShiftCell(o options, targets []*target, meter *cpuMeter, stream bool, conc int) shiftCell {
	c := shiftCell{Mode: modeName(stream), Concurrency: conc, LoadAvg: loadAvg()}
	ser, bs := alternate(o, targets, meter, stream, conc)
	c.Block = bs
	byName := map[string]int{}
	for i, t := range targets {
		s := toSide(&ser[i])
		if n := s.Errors + len(ser[i].total); n > 0 && ser[i].cpu != nil {
			s.CPU = map[string]float64{}
			for j, name := range meter.names {
				s.CPU[name] = float64(ser[i].cpu[j]) / float64(time.Microsecond) / float64(n)
			}
		}
		c.Targets = append(c.Targets, namedSide{Name: t.name, side: s})
		byName[t.name] = i
	}
	for _, cmp := range shiftComparisons {
		of, against := byName[cmp.of], byName[cmp.against]
		if stream {
			c.Comparisons = append(c.Comparisons, compare(cmp.name, "ttft",
				c.Targets[of].TTFT, c.Targets[against].TTFT, ser[of].blockTTFT, ser[against].blockTTFT))
		}
		c.Comparisons = append(c.Comparisons, compare(cmp.name, "total",
			c.Targets[of].Total, c.Targets[against].Total, ser[of].blockTotal, ser[against].blockTotal))
	}
	return c
}

func compare(name, metric string, of, against *dist, ofBlocks, againstBlocks []time.Duration) comparison {
	c := comparison{Name: name, Metric: metric}
	if of != nil && against != nil {
		c.P50, c.P99 = of.P50-against.P50, of.P99-against.P99
	}
	d := blockDiffs(againstBlocks, ofBlocks)
	if len(d) == 0 {
		return c
	}
	c.PairedP50 = median(d)
	c.PairedQ1, c.PairedQ3 = quantile(d, 0.25), quantile(d, 0.75)
	below := 0
	for _, x := range d {
		switch {
		case x > 0:
			c.Above++
		case x < 0:
			below++
		}
	}
	c.Blocks = len(d)
	c.SignP = signTest(c.Above, below)
	return c
}

// signTest is the two-sided sign test's p-value for k of n pairs one way and n-k the
// other: the chance of a split at least this uneven if either way were equally likely.
func signTest(k, rest int) float64 {
	n := k + rest
	if n == 0 {
		return 1
	}
	hi := max(k, rest)
	// P(X >= hi) for X ~ Binomial(n, 1/2), from log-factorials.
	lf := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
	var tail float64
	for i := hi; i <= n; i++ {
		tail += math.Exp(lf(n) - lf(i) - lf(n-i) - float64(n)*math.Ln2)
	}
	return min(1, 2*tail)
}

// checkShift reads the stopped gateway's store: what each target's calls say the
// gateway did with them, and whether a policy was stepped (back or forward) meanwhile.
func checkShift(db string, targets []*target) ([]tagCheck, []policyCheck, error) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	var tags []tagCheck
	var problems []string
	for i, t := range targets {
		calls, err := st.ListCalls(ctx, store.Filter{Workload: t.workload, Limit: 1 << 30})
		if err != nil {
			return nil, nil, err
		}
		tc := tagCheck{Target: t.name, Stored: len(calls), Sent: t.sent.Load()}
		for _, c := range calls {
			if c.Route == store.RouteCandidate {
				tc.ByCandidate++
			}
			switch c.Guard {
			case "":
			case store.GuardPass:
				tc.GuardPass++
			default:
				tc.GuardFailed++
			}
			if s := c.Second; s != nil {
				switch {
				case s.Kind == store.SecondShadow && s.Compared:
					tc.ShadowCompared++
					if s.Pass {
						tc.ShadowAgreed++
					}
				case s.Kind == store.SecondVerify && s.Compared:
					tc.Verified++
				default:
					tc.Skipped++
				}
			}
		}
		tags = append(tags, tc)
		want := ""
		switch shiftTargets[i].mode {
		case store.ModeShadow:
			if tc.ShadowCompared != tc.Stored {
				want = "every call shadowed and compared"
			}
		case store.ModeServe:
			if tc.ByCandidate != tc.Stored || tc.GuardPass != tc.Stored {
				want = "every call answered by the candidate, guards passed"
			}
		default:
			if tc.ByCandidate+tc.GuardPass+tc.GuardFailed+tc.ShadowCompared+tc.Verified+tc.Skipped > 0 {
				want = "no policy applied"
			}
		}
		if want != "" {
			problems = append(problems, fmt.Sprintf("%s: want %s", t.name, want))
		}
	}
	current, err := st.CurrentPolicies(ctx)
	if err != nil {
		return tags, nil, err
	}
	var pols []policyCheck
	for _, p := range current {
		pols = append(pols, policyCheck{Workload: p.Workload, Version: p.Version, Mode: p.Mode})
		if p.Version != 1 {
			problems = append(problems, fmt.Sprintf("policy of %s stepped to version %d (%s) during the run", p.Workload, p.Version, p.Mode))
		}
	}
	if len(problems) > 0 {
		return tags, pols, errors.New("shift check: " + strings.Join(problems, "; "))
	}
	return tags, pols, nil
}

func printShiftCell(w io.Writer, c shiftCell) {
	fmt.Fprintf(w, "%s, concurrency %d (blocks of %d; loadavg %s)\n", c.Mode, c.Concurrency, c.Block, c.LoadAvg)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t\tn\tp50\tp90\tp99\tmean\treq/s\terrors\tgateway CPU/req\tsim CPU/req\t")
	row := func(label string, d *dist, s side) {
		cpu := "-\t-"
		if s.CPU != nil {
			cpu = us(s.CPU["gateway"]) + "\t" + us(s.CPU["sim"])
		}
		if d == nil {
			fmt.Fprintf(tw, "%s\t\t-\t-\t-\t-\t-\t%.0f\t%d\t%s\t\n", label, s.RPS, s.Errors, cpu)
			return
		}
		fmt.Fprintf(tw, "%s\t\t%d\t%s\t%s\t%s\t%s\t%.0f\t%d\t%s\t\n", label, d.N, us(d.P50), us(d.P90), us(d.P99), us(d.Mean), s.RPS, s.Errors, cpu)
	}
	for _, t := range c.Targets {
		if c.Mode == "stream" {
			s := t.side
			s.CPU = nil // shown on the total's row
			row(t.Name+" ttft", t.TTFT, s)
		}
		row(t.Name+" total", t.Total, t.side)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t\tΔp50\tΔp99\tpaired block Δp50 [q1, q3]\tblocks above\tsign test p\t")
	for _, d := range c.Comparisons {
		fmt.Fprintf(tw, "%s (%s)\t\t%s\t%s\t%s [%s, %s]\t%d/%d\t%.2g\t\n", d.Name, d.Metric, signedUS(d.P50), signedUS(d.P99),
			signedUS(d.PairedP50), signedUS(d.PairedQ1), signedUS(d.PairedQ3), d.Above, d.Blocks, d.SignP)
	}
	tw.Flush()
	for _, t := range c.Targets {
		if t.FirstErr != "" {
			fmt.Fprintf(w, "  first error (%s): %s\n", t.Name, t.FirstErr)
		}
	}
	fmt.Fprintln(w)
}

func printShiftRecords(w io.Writer, tags []tagCheck, pols []policyCheck) {
	fmt.Fprintln(w, "stored after shutdown, by target:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t\tsent\tstored\tby candidate\tguard pass\tguard failed\tshadow compared\tshadow pass\tverified\tsecond skipped/failed\t")
	for _, t := range tags {
		fmt.Fprintf(tw, "%s\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", t.Target, t.Sent, t.Stored, t.ByCandidate, t.GuardPass,
			t.GuardFailed, t.ShadowCompared, t.ShadowAgreed, t.Verified, t.Skipped)
	}
	tw.Flush()
	for _, p := range pols {
		fmt.Fprintf(w, "policy after the run: %s version %d, %s\n", p.Workload, p.Version, p.Mode)
	}
	fmt.Fprintln(w)
}

// printShiftMarkdown prints the table RESULTS.md carries: every target's p50/p99, then
// the comparisons.
func printShiftMarkdown(w io.Writer, cells []shiftCell) {
	fmt.Fprintln(w, "| mode | conc. | metric | observe p50 | observe-b p50 | shadow p50 | candidate p50 | serve p50 | observe p99 | observe-b p99 | shadow p99 | candidate p99 | serve p99 |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cells {
		metrics := []string{"total"}
		if c.Mode == "stream" {
			metrics = []string{"TTFT", "total"}
		}
		for _, m := range metrics {
			p50s, p99s := make([]string, len(c.Targets)), make([]string, len(c.Targets))
			for i, t := range c.Targets {
				d := t.Total
				if m == "TTFT" {
					d = t.TTFT
				}
				p50s[i], p99s[i] = "-", "-"
				if d != nil {
					p50s[i], p99s[i] = us(d.P50), us(d.P99)
				}
			}
			ordered := func(vals []string) string {
				out := make([]string, 0, len(vals))
				for _, name := range []string{"observe", "observe-b", "shadow", "candidate", "serve"} {
					for i, t := range c.Targets {
						if t.Name == name {
							out = append(out, vals[i])
						}
					}
				}
				return strings.Join(out, " | ")
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", c.Mode, c.Concurrency, m, ordered(p50s), ordered(p99s))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | conc. | comparison | metric | Δp50 | paired block Δp50 [q1, q3] | blocks above | sign test p | Δp99 |")
	fmt.Fprintln(w, "|---|---:|---|---|---:|---:|---:|---:|---:|")
	for _, c := range cells {
		for _, d := range c.Comparisons {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s [%s, %s] | %d/%d | %.2g | %s |\n", c.Mode, c.Concurrency, d.Name, d.Metric,
				signedUS(d.P50), signedUS(d.PairedP50), signedUS(d.PairedQ1), signedUS(d.PairedQ3), d.Above, d.Blocks, d.SignP, signedUS(d.P99))
		}
	}
}
