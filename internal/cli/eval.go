package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
)

type evalOptions struct {
	workload    string
	candidates  []string
	variants    []string
	k           int
	size        int
	seed        uint64
	newSet      bool
	newRun      bool
	concurrency int
	attempts    int
	judge       bool
	judgeModel  string
	threshold   float64
	out         string
}

func newEvalCmd() *cobra.Command {
	sf := storeFlags{}
	o := evalOptions{}
	cmd := &cobra.Command{
		Use:   "eval --workload W --candidates a,b,c",
		Short: "Replay a workload's held-out calls against candidate models, rank them and recommend one",
		Long: `eval measures candidate models on one workload's own calls. It draws the workload's eval
set the first time (held-out test calls, deduplicated, stratified by what the reference model
did, whole conversations kept in one split, fixed seed) and reuses it after, so that reruns
compare like with like; dataset export never sees the test calls. Every test call is replayed
against every candidate in every variant (zero-shot: the recorded request; in-context: with k
worked examples from the train split in the system prompt), with bounded concurrency and
retries; answers are scored against the reference's (tool calls, JSON, text; optionally an
LLM judge) and ranked on a leaderboard with a recommendation: the cheapest candidate whose
quality reaches --threshold of the reference's with 95% confidence, or keep the reference.

An interrupted eval (Ctrl-C, a crash) resumes where it stopped when run again with the same
options. The leaderboard is stored, printed, and written to --out as JSON and HTML.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd.Context(), &sf, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&sf.config, "config", "c", "", "YAML config: the store, the encryption keys, the models and their backends (required)")
	f.StringVar(&o.workload, "workload", "", "workload id (see downshift analyze), or a unique prefix of its label")
	f.StringSliceVar(&o.candidates, "candidates", nil, "candidate models to evaluate, by catalog name (comma-separated)")
	f.StringSliceVar(&o.variants, "variants", []string{eval.VariantZeroShot, eval.VariantInContext}, "variants to try: zero-shot, in-context")
	f.IntVar(&o.k, "k", 3, "in-context examples per call")
	f.IntVar(&o.size, "size", 200, "test calls in a new eval set (at most half the workload's calls)")
	f.Uint64Var(&o.seed, "seed", 1, "seed of a new eval set's draw")
	f.BoolVar(&o.newSet, "new-set", false, "draw a new eval set even if the workload has one")
	f.BoolVar(&o.newRun, "new-run", false, "start a new run even if an interrupted one could be resumed")
	f.IntVar(&o.concurrency, "concurrency", 8, "calls in flight at once")
	f.IntVar(&o.attempts, "attempts", 4, "tries per call on connection errors, timeouts, 429 and 5xx")
	f.BoolVar(&o.judge, "judge", false, "grade text answers with an LLM judge (the reference model, or --judge-model)")
	f.StringVar(&o.judgeModel, "judge-model", "", "the judge's model (default: the workload's reference model)")
	f.Float64Var(&o.threshold, "threshold", 0.95, "share of the reference's quality a candidate must reach, with 95% confidence")
	f.StringVar(&o.out, "out", ".", "directory for eval-WORKLOAD.json and .html (empty: write none)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("workload")
	_ = cmd.MarkFlagRequired("candidates")
	cmd.AddCommand(newEvalShowCmd())
	return cmd
}

func runEval(ctx context.Context, sf *storeFlags, o evalOptions, out, errOut io.Writer) error {
	cfg, err := config.Load(sf.config, os.Environ())
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	kr, err := seal.NewKeyring(cfg.Privacy.Encryption, os.Getenv)
	if err != nil {
		return err
	}
	cat, err := catalogFrom(ctx, cfg, st, nil)
	if err != nil {
		return err
	}
	_, _, err = evaluate(ctx, st, kr, cat, o, out, errOut)
	return err
}

// evaluate runs one evaluation and prints and writes its leaderboard.
func evaluate(ctx context.Context, st store.Store, kr *seal.Keyring, cat *backend.Catalog, o evalOptions,
	out, errOut io.Writer) (*eval.Leaderboard, []string, error) {
	w, err := findWorkload(ctx, st, o.workload)
	if err != nil {
		return nil, nil, err
	}
	var cands []*backend.Model
	for _, name := range o.candidates {
		m, ok := cat.Resolve(strings.TrimSpace(name))
		if !ok {
			return nil, nil, fmt.Errorf("candidate %q is not in the catalog (configured models and downshift models add); known: %s",
				name, strings.Join(modelNames(cat), ", "))
		}
		cands = append(cands, m)
	}
	var judge *eval.Judge
	if o.judge || o.judgeModel != "" {
		name := o.judgeModel
		if name == "" {
			if name, err = referenceModel(ctx, st, w.ID); err != nil {
				return nil, nil, err
			}
		}
		m, ok := cat.Resolve(name)
		if !ok {
			return nil, nil, fmt.Errorf("judge model %q is not in the catalog", name)
		}
		judge = &eval.Judge{Model: m}
	}
	fmt.Fprintf(out, "evaluating workload %s (%s) against %s\n", w.ID, w.Label, strings.Join(o.candidates, ", "))
	for _, m := range cands {
		if m.Price == (config.Price{}) {
			fmt.Fprintf(out, "warning: %s has no price in the catalog: it is costed at $0, so any saving shown for it is not real\n", m.Name)
		}
	}
	var prog *progress
	last := 0
	res, err := eval.Evaluate(ctx, eval.Options{
		Store: st, Keyring: kr, Catalog: cat, WorkloadID: w.ID, WorkloadLabel: w.Label, Candidates: cands, Variants: o.variants,
		K: o.k, Set: eval.SetOptions{Seed: o.seed, TestSize: o.size}, NewSet: o.newSet, NewRun: o.newRun,
		Concurrency: o.concurrency, MaxAttempts: o.attempts, Judge: judge, Threshold: o.threshold,
		Progress: func(done, total int) {
			if prog == nil {
				prog = newProgress(errOut, "replaying", total)
			}
			prog.add(done - last)
			last = done
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) },
	})
	if prog != nil {
		prog.finish()
	}
	if err != nil {
		if res != nil && errors.Is(err, context.Canceled) {
			fmt.Fprintf(out, "interrupted: %d answers of run %s are stored; run the same command again to resume\n",
				res.Resumed+res.Stats.Done, res.Run.ID)
		}
		return nil, nil, err
	}
	s := res.Stats
	fmt.Fprintf(out, "run %s: %d answers in %s (%d failed after retries, %d retries)\n\n",
		res.Run.ID, s.Done, s.Elapsed.Round(time.Millisecond), s.Failed, s.Retries)
	if err := eval.WriteTable(out, res.Leaderboard); err != nil {
		return nil, nil, err
	}
	for _, r := range res.Leaderboard.Rows {
		if r.MeasuredTPS > 0 && r.Variant == o.variants[0] {
			m, _ := cat.Resolve(r.Candidate)
			fmt.Fprintf(out, "%s is priced per GPU-hour ($%.2f) with no throughput configured: costed at the %.0f tokens/s "+
				"measured in this run; put a load test's figure in the catalog (--throughput-tps) for a firmer price\n",
				r.Candidate, m.Price.GPUHourUSD, r.MeasuredTPS)
		}
	}
	paths, err := writeLeaderboardFiles(o.out, w.ID, res.Leaderboard)
	if err != nil {
		return nil, nil, err
	}
	if len(paths) > 0 {
		fmt.Fprintf(out, "\nleaderboard: %s (open in a browser), %s\n", paths[1], paths[0])
	}
	return &res.Leaderboard, paths, nil
}

// writeLeaderboardFiles writes eval-WORKLOAD.json and .html into dir ("" writes none).
func writeLeaderboardFiles(dir, workloadID string, lb eval.Leaderboard) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "eval-"+workloadID)
	paths := []string{base + ".json", base + ".html"}
	for i, write := range []func(io.Writer, eval.Leaderboard) error{eval.WriteJSON, eval.WriteHTML} {
		f, err := os.Create(paths[i])
		if err != nil {
			return nil, err
		}
		err = write(f, lb)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// findWorkload returns the current workload whose id is s, or whose label starts with s
// when only one does.
func findWorkload(ctx context.Context, st store.Store, s string) (store.Workload, error) {
	ws, err := st.ListWorkloads(ctx)
	if err != nil {
		return store.Workload{}, err
	}
	if len(ws) == 0 {
		return store.Workload{}, errors.New("no workloads yet: run downshift analyze first")
	}
	var byLabel []store.Workload
	for _, w := range ws {
		if w.ID == s {
			return w, nil
		}
		if strings.HasPrefix(w.Label, s) {
			byLabel = append(byLabel, w)
		}
	}
	if len(byLabel) == 1 {
		return byLabel[0], nil
	}
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID+" ("+w.Label+")")
	}
	if len(byLabel) > 1 {
		return store.Workload{}, fmt.Errorf("workload %q matches %d labels; use an id: %s", s, len(byLabel), strings.Join(ids, ", "))
	}
	return store.Workload{}, fmt.Errorf("no workload %q; the current ones: %s", s, strings.Join(ids, ", "))
}

// referenceModel is the model that served most of the workload's calls.
func referenceModel(ctx context.Context, st store.Store, workloadID string) (string, error) {
	calls, err := st.ListCalls(ctx, store.Filter{WorkloadID: workloadID, Status: store.StatusOK, Limit: 1000})
	if err != nil {
		return "", err
	}
	count := map[string]int{}
	best := ""
	for _, c := range calls {
		count[c.ServedModel]++
		if best == "" || count[c.ServedModel] > count[best] || (count[c.ServedModel] == count[best] && c.ServedModel < best) {
			best = c.ServedModel
		}
	}
	if best == "" {
		return "", fmt.Errorf("workload %s has no answered calls to take the reference model from; pass --judge-model", workloadID)
	}
	return best, nil
}

func modelNames(cat *backend.Catalog) []string {
	var names []string
	for _, m := range cat.Models() {
		names = append(names, m.Name)
	}
	return names
}

func newEvalShowCmd() *cobra.Command {
	sf := storeFlags{}
	var asJSON bool
	var workload string
	cmd := &cobra.Command{
		Use:   "show [RUN]",
		Short: "Print a stored leaderboard (a run id, or the latest finished run; --workload to choose)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			var run store.EvalRun
			if len(args) == 1 {
				if run, err = st.GetEvalRun(ctx, args[0]); err != nil {
					return fmt.Errorf("run %s: %w", args[0], err)
				}
			} else {
				runs, err := st.ListEvalRuns(ctx, workload)
				if err != nil {
					return err
				}
				if len(runs) == 0 {
					return errors.New("no eval runs yet: run downshift eval")
				}
				if !asJSON {
					printRuns(cmd.OutOrStdout(), runs)
					fmt.Fprintln(cmd.OutOrStdout())
				}
				for _, r := range runs {
					if r.Status == store.EvalFinished {
						run = r
						break
					}
				}
				if run.ID == "" {
					return errors.New("no finished eval run yet; run downshift eval again to resume")
				}
			}
			if run.Status != store.EvalFinished {
				return fmt.Errorf("run %s has not finished; run downshift eval again with the same options to resume it", run.ID)
			}
			var lb eval.Leaderboard
			if err := json.Unmarshal(run.Leaderboard, &lb); err != nil {
				return fmt.Errorf("run %s: leaderboard: %w", run.ID, err)
			}
			if asJSON {
				return eval.WriteJSON(cmd.OutOrStdout(), lb)
			}
			return eval.WriteTable(cmd.OutOrStdout(), lb)
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&workload, "workload", "", "only this workload's runs")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the leaderboard as JSON")
	return cmd
}

func printRuns(w io.Writer, runs []store.EvalRun) {
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].StartedAt.After(runs[j].StartedAt) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tWORKLOAD\tSET\tSTARTED\tSTATUS")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.WorkloadID, r.SetID, r.StartedAt.Local().Format(time.DateTime), r.Status)
	}
	tw.Flush()
}
