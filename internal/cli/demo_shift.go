package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/openai"
	savings "github.com/downshift-dev/downshift/internal/report"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/textfmt"
	"github.com/downshift-dev/downshift/internal/workload"
)

// shiftPhase is one step of the demo's shift: a policy, then the workload's calls
// played through the gateway under it.
type shiftPhase struct {
	title  string
	policy store.Policy
}

// shiftSummary is what the store holds of one phase's calls.
type shiftSummary struct {
	calls, candidate, escalated, reference   int
	compared, passed, guardChecked, guardBad int
	agreement                                float64
	cost, second, referenceCost              float64
	simulated, estimated                     int
	guardFailures                            map[string]int
}

// runShiftDemo shifts the evaluated workload to the recommended candidate in steps
// (shadow, canary, serve), playing the workload's calls of the bundled conversations
// through a gateway under each step, then serves a deliberately degraded candidate to
// show the automatic rollback. It returns when the last phase's calls are recorded.
func runShiftDemo(ctx context.Context, d *demoSetup, st store.Store, calls []dataset.Call, workloadID, good, bad string,
	o demoOptions, log *slog.Logger, out, errOut io.Writer) (since time.Time, err error) {
	mine, err := workloadCallsOf(ctx, st, calls, workloadID)
	if err != nil {
		return time.Time{}, err
	}
	if len(mine) == 0 {
		return time.Time{}, fmt.Errorf("demo: no bundled call falls into workload %s", workloadID)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return time.Time{}, err
	}
	srv, err := startServer(ctx, d.cfg, ln, log)
	if err != nil {
		ln.Close()
		return time.Time{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, srv.shutdown(sctx))
	}()
	base := "http://" + srv.addr + "/v1"

	fmt.Fprintf(out, "\nshifting %s to %s (downshift shift): the gateway finds each untagged call's workload, and plays\n"+
		"the workload's %d calls of the bundled conversations under each step; the guards check every answer of the\n"+
		"candidate before the agent sees it (not_empty, not_refusal, finish_reason, tool_known, json_valid, schema_valid)\n",
		workloadID, good, len(mine))
	thresholds := store.Policy{MinAgreement: 0.9, MinGuardPass: 0.9, Window: 100, MinSamples: 50}
	with := func(p store.Policy) store.Policy {
		p.Workload, p.MinAgreement, p.MinGuardPass, p.Window, p.MinSamples =
			workloadID, thresholds.MinAgreement, thresholds.MinGuardPass, thresholds.Window, thresholds.MinSamples
		return p
	}
	phases := []shiftPhase{
		{"GPT-4o answers; the candidate is asked too, and compared (its guard failures would have been escalations)",
			with(store.Policy{Mode: store.ModeShadow, Candidate: good, ShadowShare: 1, Reason: "demo: eval recommends it"})},
		{"25%: the candidate answers a quarter of the calls, a fifth of those verified against GPT-4o",
			with(store.Policy{Mode: store.ModeCanary, Candidate: good, CanaryShare: 0.25, VerifyShare: 0.2, Reason: "demo: shadow agreement held"})},
		{"the candidate answers every call, a tenth verified against GPT-4o",
			with(store.Policy{Mode: store.ModeServe, Candidate: good, CanaryShare: 0.25, VerifyShare: 0.1, Reason: "demo: canary held"})},
	}
	since = time.Now()
	sums := make([]shiftSummary, len(phases))
	for i, ph := range phases {
		if sums[i], err = playPhase(ctx, srv, st, base, d.agentKey, mine, ph, o, errOut); err != nil {
			return since, err
		}
	}
	printPhases(out, phases, sums)

	// A candidate that gets worse: served with the same thresholds, every answer
	// verified, it is stepped back by itself once a window of results falls short.
	fmt.Fprintf(out, "\nrollback: %s (degraded: the simulator spoils %.0f%% of its answers) served with the same thresholds\n"+
		"(agreement ≥ %.2f and guard pass rate ≥ %.2f over the last %d results, from %d on), every answer verified\n",
		bad, 100*demoCandidates[bad].Rate, thresholds.MinAgreement, thresholds.MinGuardPass, thresholds.Window, thresholds.MinSamples)
	rollback := shiftPhase{"the degraded candidate answers, every answer verified against GPT-4o",
		with(store.Policy{Mode: store.ModeServe, Candidate: bad, CanaryShare: 0.25, VerifyShare: 1, Reason: "demo: a worse candidate, on purpose"})}
	sum, err := playPhase(ctx, srv, st, base, d.agentKey, mine, rollback, o, errOut)
	if err != nil {
		return since, err
	}
	printPhases(out, []shiftPhase{rollback}, []shiftSummary{sum})
	hist, err := st.PolicyHistory(ctx, workloadID)
	if err != nil {
		return since, err
	}
	fmt.Fprintf(out, "\npolicy history of %s (downshift shift history %s):\n", workloadID, workloadID)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VERSION\tMODE\tCANDIDATE\tBY\tREASON")
	for i := len(hist) - 1; i >= 0; i-- {
		p := hist[i]
		by := p.ActorName
		if p.Automatic {
			by = p.Actor + " (" + p.ActorName + ")"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", p.Version, p.Mode, p.Candidate, by, textfmt.Cell(p.Reason, 90))
	}
	if err := tw.Flush(); err != nil {
		return since, err
	}
	if len(hist) == 0 || !hist[0].Automatic {
		fmt.Fprintln(out, "  (no automatic rollback happened: the degraded candidate met the thresholds)")
	}

	rep, err := savings.Load(ctx, st, store.SavingsFilter{Since: since, Workload: workloadID})
	if err != nil {
		return since, err
	}
	rep.At = time.Now()
	fmt.Fprintf(out, "\nsavings while shifting (downshift report --since %s --workload %s):\n\n",
		since.UTC().Format(time.RFC3339), workloadID)
	if err := savings.WriteTable(out, rep); err != nil {
		return since, err
	}
	paths, err := writeSavingsReport(o.dir, rep)
	if err != nil {
		return since, err
	}
	fmt.Fprintf(out, "\nreport: %s (open in a browser), %s\n", paths[1], paths[0])
	return since, nil
}

// workloadCallsOf returns the calls the gateway will find in workload id: their
// client's tag, or the nearest workload of the latest analysis, as online assignment
// finds it.
func workloadCallsOf(ctx context.Context, st store.Store, calls []dataset.Call, id string) ([]dataset.Call, error) {
	a := &onlineAssigner{st: st, log: slog.New(slog.DiscardHandler)}
	if err := a.refresh(ctx); err != nil {
		return nil, err
	}
	var out []dataset.Call
	for i := range calls {
		body, err := calls[i].RequestJSON()
		if err != nil {
			return nil, err
		}
		head, err := openai.ScanChatRequest(body)
		if err != nil {
			return nil, err
		}
		view := head.Request()
		w := workload.Tag("", view)
		if w == "" {
			w = a.FindWorkload(workload.Fingerprint(view), body)
		}
		if w == id {
			out = append(out, calls[i])
		}
	}
	return out, nil
}

// playPhase saves ph's policy as the demo's admin would with `downshift shift`, has
// the gateway load it, plays calls, and sums up their records once all are written
// (second answers included).
func playPhase(ctx context.Context, srv *server, st store.Store, base, key string, calls []dataset.Call, ph shiftPhase,
	o demoOptions, errOut io.Writer) (shiftSummary, error) {
	p := ph.policy
	p.At, p.Actor, p.ActorName = time.Now(), "cli", "demo"
	if _, err := st.SavePolicy(ctx, p); err != nil {
		return shiftSummary{}, err
	}
	if err := srv.refreshPolicies(ctx); err != nil {
		return shiftSummary{}, err
	}
	start := time.Now()
	convs := make([][]dataset.Call, len(calls))
	for i := range calls {
		convs[i] = calls[i : i+1]
	}
	res := playConversations(ctx, base, key, convs, o, errOut)
	if n := res.failed.Load(); n > 0 {
		return shiftSummary{}, fmt.Errorf("demo: %d calls failed under %s", n, p.Mode)
	}
	f := store.Filter{Since: start, WorkloadID: p.Workload, Limit: 1 << 30}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := st.CountCalls(ctx, f)
		if err != nil {
			return shiftSummary{}, err
		}
		if int64(n) >= res.sent.Load() {
			break
		}
		if time.Now().After(deadline) {
			return shiftSummary{}, fmt.Errorf("demo: %d of %d calls recorded after 30s", n, res.sent.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	recorded, err := st.ListCalls(ctx, f)
	if err != nil {
		return shiftSummary{}, err
	}
	return summarizeShift(recorded), nil
}

func summarizeShift(calls []store.Call) shiftSummary {
	s := shiftSummary{calls: len(calls), guardFailures: map[string]int{}}
	for i := range calls {
		c := &calls[i]
		switch c.Route {
		case store.RouteCandidate:
			s.candidate++
		case store.RouteEscalated:
			s.escalated++
		default:
			s.reference++
		}
		if sec := c.Second; sec != nil {
			s.second += sec.CostUSD
			if sec.Compared {
				s.compared++
				s.agreement += sec.Agreement
				if sec.Pass {
					s.passed++
				}
			}
			if sec.Simulated && c.Route != store.RouteCandidate {
				s.simulated++
			}
		}
		if c.Simulated {
			s.simulated++
		}
		if c.ReferenceCostEstimated {
			s.estimated++
		}
		if c.Guard != "" {
			s.guardChecked++
			if c.Guard != store.GuardPass {
				s.guardBad++
				for _, g := range strings.Split(c.Guard, ",") {
					s.guardFailures[g]++
				}
			}
		}
		s.cost += c.CostUSD
		s.referenceCost += c.ReferenceCostUSD
	}
	if s.compared > 0 {
		s.agreement /= float64(s.compared)
	}
	return s
}

// printPhases prints one line per phase, then what each phase did.
func printPhases(out io.Writer, phases []shiftPhase, sums []shiftSummary) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\n  STEP\tCALLS\tBY CANDIDATE\tESCALATED\tAGREEMENT (n)\tGUARD FAILURES\tPAID\tGPT-4O ALONE\tSAVED")
	for i, ph := range phases {
		s := sums[i]
		agreement := "-"
		if s.compared > 0 {
			agreement = fmt.Sprintf("%.3f (%d)", s.agreement, s.compared)
		}
		guards := "-"
		if s.guardChecked > 0 {
			guards = fmt.Sprintf("%d of %d", s.guardBad, s.guardChecked)
			if len(s.guardFailures) > 0 {
				var names []string
				for g, n := range s.guardFailures {
					names = append(names, fmt.Sprintf("%s %d", g, n))
				}
				sort.Strings(names)
				guards += " (" + strings.Join(names, ", ") + ")"
			}
		}
		paid := s.cost + s.second
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s (%s)\n", ph.policy.Mode, s.calls, s.candidate, s.escalated,
			agreement, guards, textfmt.USD(paid), textfmt.USD(s.referenceCost), textfmt.USD(s.referenceCost-paid),
			textfmt.Pct1(savedShare(s.referenceCost, paid)))
	}
	tw.Flush()
	for i, ph := range phases {
		s := sums[i]
		fmt.Fprintf(out, "  %s: %s; %d answers simulated\n", ph.policy.Mode, ph.title, s.simulated)
		if s.estimated > 0 {
			fmt.Fprintf(out, "    GPT-4o's cost is estimated from the candidate's token counts for %d unverified calls\n", s.estimated)
		}
	}
}

func savedShare(reference, paid float64) float64 {
	if reference <= 0 {
		return 0
	}
	return (reference - paid) / reference
}
