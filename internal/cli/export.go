package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/textfmt"
	"github.com/downshift-dev/downshift/internal/tune"
)

type exportOptions struct {
	workload  string
	format    string
	out       string
	maxTokens int
	size      int
	seed      uint64
}

func newExportCmd() *cobra.Command {
	sf := storeFlags{}
	o := exportOptions{}
	cmd := &cobra.Command{
		Use:   "export --workload W --format openai|sharegpt|nemo --out DIR",
		Short: "Write a workload's calls as fine-tuning files (train, validation, eval) with a manifest (audited)",
		Long: `export writes one workload's calls as chat fine-tuning files in DIR: train.jsonl,
validation.jsonl, eval.jsonl and manifest.json. The targets are the reference model's
recorded answers (distillation), with the tools offered; payloads are written as stored,
redacted, after opening sealed ones with --config's encryption keys.

The split is the workload's eval set, the one downshift eval replays: train and validation
come from its train and validation splits, eval.jsonl is its test split in the same format,
for evaluation elsewhere. A workload without an eval set gets one, drawn and saved exactly as
downshift eval draws it (--size, --seed). Calls recorded after the set was drawn were never
test calls: they go to train (to validation when their conversation is there, and nowhere
when it is held out for test). Failed calls, escalations, truncated answers, copies, calls
over --max-tokens and calls the format cannot carry are left out and counted.

Formats: openai (OpenAI chat fine-tuning), sharegpt (LLaMA-Factory's ShareGPT with
function_call and observation turns), nemo (NVIDIA NeMo Customizer's messages and tools).
The export is written to the audit trail; the manifest lists each file's call ids, lines,
SHA-256 and token totals, and every filter with its count.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExport(cmd.Context(), &sf, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&sf.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db)")
	f.StringVarP(&sf.config, "config", "c", "", "YAML config: the store and the encryption keys that open sealed calls")
	f.StringVar(&o.workload, "workload", "", "workload id (see downshift analyze), or a unique prefix of its label")
	f.StringVar(&o.format, "format", string(tune.FormatOpenAI), "openai, sharegpt or nemo")
	f.StringVar(&o.out, "out", "", "directory for the files (created; files of the same names are replaced)")
	f.IntVar(&o.maxTokens, "max-tokens", tune.DefaultMaxTokens, "most tokens of one example, prompt and answer together (o200k_base); 0: no limit")
	f.IntVar(&o.size, "size", 200, "test calls in a new eval set, when the workload has none (as downshift eval --size)")
	f.Uint64Var(&o.seed, "seed", 1, "seed of a new eval set's draw (as downshift eval --seed)")
	_ = cmd.MarkFlagRequired("workload")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func runExport(ctx context.Context, sf *storeFlags, o exportOptions, out, errOut io.Writer) error {
	format, err := tune.ParseFormat(o.format)
	if err != nil {
		return fmt.Errorf("--%w", err)
	}
	if o.maxTokens < 0 {
		return fmt.Errorf("--max-tokens %d: must not be negative (0: no limit)", o.maxTokens)
	}
	budget := o.maxTokens
	if budget == 0 {
		budget = -1 // tune.Options: negative is no budget
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	kr, err := sf.keyring()
	if err != nil {
		return err
	}
	w, err := findWorkload(ctx, st, o.workload)
	if err != nil {
		return err
	}
	actor, osUser := cliActor()
	var prog *progress
	last := 0
	m, err := tune.Export(ctx, tune.Options{
		Store: st, Keyring: kr, WorkloadID: w.ID, WorkloadLabel: w.Label, Format: format, Dir: o.out,
		MaxTokens: budget, Set: eval.SetOptions{Seed: o.seed, TestSize: o.size}, Actor: actor, ActorName: osUser,
		Progress: func(done, total int) {
			if prog == nil {
				prog = newProgress(errOut, "exporting", total)
			}
			prog.add(done - last)
			last = done
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) },
	})
	if prog != nil {
		prog.finish()
	}
	if errors.Is(err, seal.ErrUnknownKey) {
		return fmt.Errorf("%w (pass --config with the privacy.encryption keys that sealed it)", err)
	}
	if err != nil {
		return err
	}
	return writeExportSummary(out, m, o.out)
}

// writeExportSummary prints the files written and what was left out.
func writeExportSummary(w io.Writer, m *tune.Manifest, dir string) error {
	n := func(i int) string { return textfmt.Thousands(strconv.Itoa(i)) }
	label := m.Workload
	if m.WorkloadLabel != "" {
		label += " (" + m.WorkloadLabel + ")"
	}
	fmt.Fprintf(w, "\nworkload %s as %s, to %s:\n\n", label, m.Format, dir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSPLIT\tLINES\tPROMPT TOKENS\tCOMPLETION TOKENS")
	for _, f := range m.Files {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Path, f.Split, n(f.Lines), n(f.PromptTokens), n(f.CompletionTokens))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nleft out: %s of %s calls\n", n(m.LeftOut()), n(m.Calls))
	if m.LeftOut() > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, f := range m.Filters {
			if f.Calls > 0 {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, n(f.Calls), f.Rule)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nmanifest: %s\n", filepath.Join(dir, tune.FileManifest))
	return err
}
