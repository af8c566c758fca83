package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/backend"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tune"
)

type tuneOptions struct {
	workload, base, trainer string
	dir                     string
	hyper                   config.Hyperparameters
	maxSteps, seed          int
	qlora, detach, noEval   bool
	dryRun                  bool
	evalCandidates          []string
	evalVariants            []string
}

func newTuneCmd() *cobra.Command {
	sf := storeFlags{}
	o := tuneOptions{}
	cmd := &cobra.Command{
		Use:   "tune --workload W --base MODEL --trainer NAME",
		Short: "Fine-tune a small model on a workload's calls (LoRA), register the result as a candidate and evaluate it",
		Long: `tune exports the workload's train and validation calls (the reference model's answers as
targets; the eval set's test calls never), hands them to a configured trainer (tune.trainers:
peft runs the bundled trainers/peft/train.py on this host; nemo and openai-ft are NeMo
Customizer and OpenAI-compatible fine-tuning services), follows the job to its end with its
progress and logs stored, and, when it succeeds and the trainer names a serve_backend (or
is openai-ft), registers the result as a candidate model and runs downshift eval on it at
once, beside --eval-candidates. Ctrl-C cancels the job (--detach leaves a remote job
running; tune status and tune logs follow it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTune(cmd.Context(), &sf, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&sf.config, "config", "c", "", "YAML config: the store, keys, models and tune.trainers (required)")
	f.StringVar(&o.workload, "workload", "", "workload id, or a unique prefix of its label")
	f.StringVar(&o.base, "base", "", "base model: a Hugging Face id or path (peft; tiny-random-llama builds a tiny random model), a customization config (nemo), a model (openai-ft)")
	f.StringVar(&o.trainer, "trainer", "", "trainer name (tune.trainers[].name)")
	f.StringVar(&o.dir, "dir", "", "directory for the exported data and a local trainer's output (default tune-JOB)")
	f.IntVar(&o.hyper.Rank, "rank", 0, "LoRA rank (0: the trainer's)")
	f.IntVar(&o.hyper.Alpha, "alpha", 0, "LoRA alpha (0: the trainer's)")
	f.IntVar(&o.hyper.Epochs, "epochs", 0, "epochs (0: the trainer's)")
	f.Float64Var(&o.hyper.LearningRate, "learning-rate", 0, "learning rate (0: the trainer's)")
	f.IntVar(&o.hyper.BatchSize, "batch-size", 0, "batch size (0: the trainer's)")
	f.IntVar(&o.hyper.MaxLength, "max-length", 0, "maximum tokens of an example (0: the trainer's)")
	f.IntVar(&o.maxSteps, "max-steps", 0, "stop after this many optimiser steps (peft; 0: epochs decide)")
	f.IntVar(&o.seed, "seed", 0, "training seed (0: the trainer's)")
	f.BoolVar(&o.qlora, "qlora", false, "train on a 4-bit quantised base (peft, with bitsandbytes)")
	f.BoolVar(&o.detach, "detach", false, "on Ctrl-C leave a remote job running instead of cancelling it")
	f.BoolVar(&o.noEval, "no-eval", false, "do not evaluate the result")
	f.BoolVar(&o.dryRun, "dry-run", false, "export and validate the data and hyperparameters with the trainer's dry run (peft; imports no ML library), then stop")
	f.StringSliceVar(&o.evalCandidates, "eval-candidates", nil, "other candidates to evaluate beside the result")
	f.StringSliceVar(&o.evalVariants, "eval-variants", []string{eval.VariantZeroShot}, "variants to evaluate the result in")
	for _, name := range []string{"config", "workload", "base", "trainer"} {
		_ = cmd.MarkFlagRequired(name)
	}
	cmd.AddCommand(newTuneStatusCmd(), newTuneLogsCmd(), newTuneCancelCmd())
	return cmd
}

func runTune(ctx context.Context, sf *storeFlags, o tuneOptions, out, errOut io.Writer) error {
	cfg, err := config.Load(sf.config, os.Environ())
	if err != nil {
		return err
	}
	tc, ok := cfg.TrainerByName(o.trainer)
	if !ok {
		return fmt.Errorf("no trainer %q in tune.trainers%s", o.trainer, trainerNames(cfg))
	}
	tr, err := tune.NewTrainer(tc, tune.TrainerOptions{})
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
	w, err := findWorkload(ctx, st, o.workload)
	if err != nil {
		return err
	}
	id := "tj_" + ulid.Make().String()
	dir := o.dir
	if dir == "" {
		dir = "tune-" + id
	}
	format := tune.FormatOpenAI
	if tc.Kind == config.TrainerNeMo {
		format = tune.FormatNeMo
	}
	actor, osUser := cliActor()
	fmt.Fprintf(out, "tune job %s: workload %s (%s), base %s, trainer %s (%s)\n", id, w.ID, w.Label, o.base, tc.Name, tc.Kind)
	manifest, err := tune.Export(ctx, tune.Options{Store: st, Keyring: kr, WorkloadID: w.ID, WorkloadLabel: w.Label,
		Format: format, Dir: filepath.Join(dir, "data"), Actor: actor, ActorName: osUser,
		Logf: func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }})
	if errors.Is(err, seal.ErrUnknownKey) {
		return fmt.Errorf("%w (pass --config with the privacy.encryption keys that sealed it)", err)
	}
	if err != nil {
		return err
	}
	if f := manifest.File(store.SplitTrain); f == nil || f.Lines == 0 {
		return fmt.Errorf("workload %s has no train calls to tune on", w.ID)
	}
	if err := writeExportSummary(out, manifest, filepath.Join(dir, "data")); err != nil {
		return err
	}

	job := tune.Job{ID: id, Workload: w.ID, Base: o.base, DataDir: filepath.Join(dir, "data"), OutDir: filepath.Join(dir, "out"),
		Hyperparameters: o.hyper, Seed: o.seed, MaxSteps: o.maxSteps, QLoRA: o.qlora}
	if o.dryRun {
		return tuneDryRun(ctx, tr, job, out)
	}
	params, err := json.Marshal(map[string]any{"hyperparameters": tune.Hyperparameters(tr, o.hyper),
		"max_steps": o.maxSteps, "seed": o.seed, "qlora": o.qlora, "format": format, "eval_set": manifest.EvalSetID})
	if err != nil {
		return err
	}
	now := time.Now()
	dataset, _ := json.Marshal(map[string]string{"dir": job.DataDir})
	if err := st.CreateTuneJob(ctx, store.TuneJob{ID: id, Workload: w.ID, Base: o.base, Trainer: tc.Name,
		Status: store.TuneSubmitted, Dataset: dataset, Params: params, CreatedAt: now, UpdatedAt: now}); err != nil {
		return err
	}
	lastLine := ""
	final, err := tune.Run(ctx, st, tr, job, tune.RunOptions{Detach: o.detach, OnUpdate: func(j store.TuneJob) {
		line := describeProgress(j)
		if line != lastLine {
			fmt.Fprintln(errOut, line)
			lastLine = line
		}
	}})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(out, "interrupted: job %s is %s (downshift tune status %s)\n", id, final.Status, id)
		}
		return err
	}
	fmt.Fprintf(out, "\njob %s %s", id, final.Status)
	if final.Status != store.TuneSucceeded {
		fmt.Fprintf(out, ": %s\n", final.Error)
		return fmt.Errorf("tune job %s %s", id, final.Status)
	}
	fmt.Fprintf(out, ": adapter %s\n", final.Adapter)

	entry, ok, err := candidateFor(tc, final, o.base, cfg)
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(out, "trainer %s names no serve_backend: serve the adapter and add it with downshift models add, then downshift eval\n", tc.Name)
		return nil
	}
	if tc.LoadAdapter {
		b, ok := cfg.BackendByName(tc.ServeBackend)
		if !ok {
			return fmt.Errorf("serve_backend %q is not configured", tc.ServeBackend)
		}
		if err := loadAdapter(ctx, b, entry.Model.Upstream(), final.Adapter); err != nil {
			return err
		}
		fmt.Fprintf(out, "backend %s loaded the adapter as %s\n", b.Name, entry.Model.Upstream())
	}
	if err := runModelsAdd(ctx, cfg, st, entry, time.Now(), out); err != nil {
		return err
	}
	if o.noEval {
		return nil
	}
	cat, err := catalogFrom(ctx, cfg, st, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	_, _, err = evaluate(ctx, st, kr, cat, evalOptions{workload: w.ID, candidates: append(o.evalCandidates, entry.Model.Name),
		variants: o.evalVariants, k: 3, size: 200, seed: 1, concurrency: 8, attempts: 4, threshold: 0.95, out: dir}, out, errOut)
	return err
}

// tuneDryRun runs the trainer's dry run on an exported job and prints its verdict.
func tuneDryRun(ctx context.Context, tr tune.Trainer, job tune.Job, out io.Writer) error {
	p, ok := tr.(*tune.PEFT)
	if !ok {
		return fmt.Errorf("trainer %s has no dry run (only peft trainers do); the data was exported to %s", tr.Name(), job.DataDir)
	}
	res, err := p.DryRun(ctx, job)
	if err != nil {
		return err
	}
	var sum struct {
		Plan     map[string]any `json:"plan"`
		Errors   []string       `json:"errors"`
		Warnings []struct {
			Message string `json:"message"`
			Count   int    `json:"count"`
		} `json:"warnings"`
	}
	_ = json.Unmarshal(res.Summary, &sum)
	for _, w := range sum.Warnings {
		fmt.Fprintf(out, "warning: %s (%dx)\n", w.Message, w.Count)
	}
	if !res.OK {
		for _, e := range sum.Errors {
			fmt.Fprintf(out, "error: %s\n", e)
		}
		return fmt.Errorf("dry run: the data or hyperparameters would not train (%d errors)", len(sum.Errors))
	}
	fmt.Fprintf(out, "dry run: ok; plan %v; no job was started\n", sum.Plan)
	return nil
}

// unsafeName matches what may not be in a model name made from a job.
var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// candidateFor is the catalog entry that serves a succeeded job's result, and whether
// the trainer says where it is served: an openai-ft model on the trainer's own API, or
// an adapter, by name, on serve_backend.
func candidateFor(tc config.Trainer, job store.TuneJob, base string, cfg config.Config) (config.CatalogEntry, bool, error) {
	m := config.Model{Role: config.RoleCandidate}
	switch {
	case tc.Kind == config.TrainerOpenAIFT && tc.ServeBackend == "":
		m.Name, m.Backend = job.Adapter, "ft-"+tc.Name
		b := config.DefaultBackend()
		b.Name, b.URL, b.APIKeyEnv, b.APIKeyFile = m.Backend, tc.BaseURL, tc.APIKeyEnv, tc.APIKeyFile
		return config.CatalogEntry{Model: m, Backend: &b}, true, nil
	case tc.ServeBackend == "":
		return config.CatalogEntry{}, false, nil
	}
	name := job.Adapter
	if tc.Kind == config.TrainerPEFT {
		// A local adapter is a directory: the server knows it by the name it is
		// loaded under, made from the workload and the end of the job's id.
		suffix := strings.ToLower(job.ID[max(0, len(job.ID)-8):])
		name = unsafeName.ReplaceAllString(job.Workload+"-lora-"+suffix, "-")
	}
	m.Name, m.Backend = name, tc.ServeBackend
	// An adapter costs what its base costs to serve: take the base's catalog entry
	// (by name or upstream name) for size, context, licence and price.
	for _, bm := range cfg.Models {
		if base != "" && (bm.Name == base || bm.Upstream() == base) {
			m.ParamsB, m.ContextTokens, m.Licence, m.MemoryGB, m.Price = bm.ParamsB, bm.ContextTokens, bm.Licence, bm.MemoryGB, bm.Price
			break
		}
	}
	return config.CatalogEntry{Model: m}, true, nil
}

// loadAdapter asks a vLLM server to load a LoRA adapter at run time
// (POST /v1/load_lora_adapter; the server needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).
func loadAdapter(ctx context.Context, b config.Backend, name, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	cl, err := backend.New(b, nil)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"lora_name": name, "lora_path": abs})
	resp, err := cl.Post(ctx, "/load_lora_adapter", body, "")
	if err != nil {
		var be *backend.Error
		if errors.As(err, &be) && be.Status != 0 {
			return fmt.Errorf("backend %s refused to load the adapter (status %d: %s); is it vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True?",
				b.Name, be.Status, strings.TrimSpace(string(bytes.TrimSpace(be.Body))))
		}
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// describeProgress is one line about a job's state, for the terminal.
func describeProgress(j store.TuneJob) string {
	r, _ := tune.ParseReport(j.Metrics)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", j.ID, j.Status)
	if r.Progress > 0 {
		fmt.Fprintf(&b, " %3.0f%%", 100*r.Progress)
	}
	for _, k := range []string{"step", "loss", "val_loss"} {
		if v, ok := r.Metrics[k]; ok {
			fmt.Fprintf(&b, " %s=%.4g", k, v)
		}
	}
	return b.String()
}

func trainerNames(cfg config.Config) string {
	var names []string
	for _, t := range cfg.Tune.Trainers {
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return " (there are none: add one to the config)"
	}
	return "; configured: " + strings.Join(names, ", ")
}

func newTuneStatusCmd() *cobra.Command {
	sf := storeFlags{}
	var workload string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [JOB]",
		Short: "List tune jobs, or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			var jobs []store.TuneJob
			if len(args) == 1 {
				j, err := st.GetTuneJob(ctx, args[0])
				if err != nil {
					return fmt.Errorf("job %s: %w", args[0], err)
				}
				jobs = []store.TuneJob{j}
			} else if jobs, err = st.ListTuneJobs(ctx, workload); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeIndentedJSON(w, jobs)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tWORKLOAD\tBASE\tTRAINER\tSTATUS\tPROGRESS\tCREATED\tADAPTER / ERROR")
			for _, j := range jobs {
				r, _ := tune.ParseReport(j.Metrics)
				result := j.Adapter
				if j.Error != "" {
					result = j.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\n", j.ID, j.Workload, j.Base, j.Trainer, j.Status,
					100*r.Progress, j.CreatedAt.Local().Format(time.DateTime), orDash(result))
			}
			return tw.Flush()
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&workload, "workload", "", "only this workload's jobs")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTuneLogsCmd() *cobra.Command {
	sf := storeFlags{}
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a tune job's log (--follow: until it ends)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			return runTuneLogs(ctx, st, args[0], follow, time.Second, cmd.OutOrStdout())
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until the job ends")
	return cmd
}

func runTuneLogs(ctx context.Context, st store.Store, id string, follow bool, every time.Duration, w io.Writer) error {
	var after int64
	for {
		job, err := st.GetTuneJob(ctx, id)
		if err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		lines, err := st.TuneLog(ctx, id, after)
		if err != nil {
			return err
		}
		for _, l := range lines {
			fmt.Fprintf(w, "%s %s\n", l.At.Local().Format(time.TimeOnly), l.Text)
			after = l.Seq
		}
		if !follow || store.TuneTerminal(job.Status) {
			if follow {
				fmt.Fprintf(w, "job %s %s\n", id, job.Status)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ignoreCanceled(ctx, ctx.Err())
		case <-time.After(every):
		}
	}
}

func newTuneCancelCmd() *cobra.Command {
	sf := storeFlags{}
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a tune job (at the trainer, then in the store)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := config.Load(sf.config, os.Environ())
			if err != nil {
				return err
			}
			st, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			job, err := st.GetTuneJob(ctx, args[0])
			if err != nil {
				return fmt.Errorf("job %s: %w", args[0], err)
			}
			tc, ok := cfg.TrainerByName(job.Trainer)
			if !ok {
				return fmt.Errorf("job %s ran on trainer %q, which the config no longer has", job.ID, job.Trainer)
			}
			tr, err := tune.NewTrainer(tc, tune.TrainerOptions{})
			if err != nil {
				return err
			}
			j, err := tune.CancelJob(ctx, st, tr, job.ID, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s %s\n", j.ID, j.Status)
			return nil
		},
	}
	cmd.Flags().StringVarP(&sf.config, "config", "c", "", "YAML config: the store and the trainer (required)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
