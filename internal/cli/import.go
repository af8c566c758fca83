package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tokens"
)

// Formats `downshift import` reads, and the source each gives its calls.
var importFormats = map[string]string{
	"openai":   store.SourceOpenAI,
	"flywheel": store.SourceFlywheel,
	"taubench": store.SourceTauBench,
	"bfcl":     store.SourceBFCL,
}

// importOptions are the arguments and flags of `downshift import`.
type importOptions struct {
	format, file string
	tools        string // taubench: the tools file
	answers      string // bfcl: the possible-answer file
	category     string // bfcl category, or tau-bench domain
	model        string // openai fine-tuning lines: the model that gave the answers
	strict       bool
	batch        int
	store        storeFlags
}

func newImportCmd() *cobra.Command {
	var o importOptions
	cmd := &cobra.Command{
		Use:   "import FORMAT FILE",
		Short: "Import calls from a log or dataset file (openai, flywheel, taubench, bfcl) into the store",
		Long: `import reads calls from a file and stores them like recorded ones, with their source
(import:FORMAT), after the same redaction and encryption as recorded calls: those of
--config's privacy section, or, with only --db, redaction with the default rules and no
encryption. Imported calls get ids derived from the data, so importing the same file
twice adds nothing.

Formats:
  openai    OpenAI chat JSON Lines: {"request": {...}, "response": {chat.completion}} a line,
            or the fine-tuning format {"messages": [...], "tools": [...]}, whose last
            message is the assistant's answer (its model is --model, else "unknown")
  flywheel  Data Flywheel log JSON Lines: {timestamp, workload_id, client_id, request, response}
  taubench  tau-bench trajectories (historical_trajectories/gpt-4o-DOMAIN.json): each
            assistant turn is one call; the tools come from --tools, by default
            envs/DOMAIN/tools_openai.json beside historical_trajectories
  bfcl      a BFCL_v4_CATEGORY.json questions file: each question is one call whose
            response is BFCL's ground truth (possible_answer/ beside it, or --answers);
            multi-turn, memory, web-search and live_relevance categories are refused

Records that cannot be read are skipped and reported by line; --strict refuses the
whole file instead, before anything is written.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.format, o.file = args[0], args[1]
			return runImport(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.store.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db); created if missing")
	fl.StringVarP(&o.store.config, "config", "c", "", "YAML config file: its store section names the database, its privacy section how calls are redacted and sealed")
	fl.StringVar(&o.tools, "tools", "", "taubench: the OpenAI tools file (default: envs/DOMAIN/tools_openai.json beside the trajectories' folder)")
	fl.StringVar(&o.answers, "answers", "", "bfcl: the possible-answer file (default: possible_answer/ beside FILE)")
	fl.StringVar(&o.category, "category", "", "bfcl: the category (default: from FILE's name); taubench: the domain (default: from FILE's name)")
	fl.StringVar(&o.model, "model", "", "openai: the model that gave the answers of fine-tuning lines, which name none")
	fl.BoolVar(&o.strict, "strict", false, "refuse the whole file if any record is bad (checked before anything is written)")
	fl.IntVar(&o.batch, "batch", 500, "calls written per transaction")
	return cmd
}

// importStats counts what happened to the records of one source.
type importStats struct {
	read, imported, present, skipped int
}

// maxBadShown is how many skipped records are described one by one.
const maxBadShown = 20

func runImport(ctx context.Context, o importOptions, stdout, stderr io.Writer) error {
	source, ok := importFormats[o.format]
	if !ok {
		return fmt.Errorf("unknown format %q (want openai, flywheel, taubench or bfcl)", o.format)
	}
	if o.batch < 1 {
		return fmt.Errorf("--batch %d: must be at least 1", o.batch)
	}
	plan, err := planImport(o)
	if err != nil {
		return err
	}
	counter, err := tokens.New()
	if err != nil {
		return err
	}

	if o.strict {
		var bad []dataset.BadRecord
		im := &dataset.Importer{Tokens: counter, Model: o.model,
			Call: func(store.Call) error { return nil },
			Bad:  func(b dataset.BadRecord) error { bad = append(bad, b); return nil }}
		if err := plan.run(im); err != nil {
			return err
		}
		if len(bad) > 0 {
			reportBad(stderr, bad, len(bad))
			return fmt.Errorf("%s: %d bad records; nothing imported (--strict)", o.file, len(bad))
		}
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	priv, err := importPrivacy(o.store.config, log)
	if err != nil {
		return err
	}
	st, err := o.store.create(ctx)
	if err != nil {
		return err
	}
	defer st.Close()

	var stats importStats
	var bad []dataset.BadRecord
	prog := newProgress(stderr, "importing "+filepath.Base(o.file), plan.total)
	batch := make([]store.Call, 0, o.batch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := len(batch)
		added, err := st.ImportCalls(ctx, batch)
		if err != nil {
			return err
		}
		stats.imported += added
		stats.present += n - added
		batch = batch[:0]
		prog.add(n)
		return nil
	}
	im := &dataset.Importer{Tokens: counter, Model: o.model,
		Call: func(c store.Call) error {
			stats.read++
			if err := priv.prepare(&c); err != nil {
				stats.skipped++
				bad = append(bad, dataset.BadRecord{Key: c.ID, Err: err})
				prog.add(1)
				return nil
			}
			batch = append(batch, c)
			if len(batch) == o.batch {
				return flush()
			}
			return nil
		},
		Bad: func(b dataset.BadRecord) error {
			stats.read++
			stats.skipped++
			bad = append(bad, b)
			prog.add(1)
			return nil
		},
	}
	err = plan.run(im)
	if err == nil {
		err = flush()
	}
	prog.finish()
	reportBad(stderr, bad, stats.skipped)
	if err != nil {
		if stats.imported > 0 {
			return fmt.Errorf("%s: %w (%d calls were imported before it)", o.file, err, stats.imported)
		}
		return fmt.Errorf("%s: %w", o.file, err)
	}
	inStore, err := st.CountCalls(ctx, store.Filter{Source: source})
	if err != nil {
		return err
	}
	return writeImportTable(stdout, source, stats, inStore)
}

// importPlan is how to read one file: run reads it into an Importer, and can be
// called again (--strict reads the file twice); total is how many records to expect,
// for the progress line.
type importPlan struct {
	run   func(im *dataset.Importer) error
	total int
}

func planImport(o importOptions) (importPlan, error) {
	if _, err := os.Stat(o.file); err != nil {
		return importPlan{}, err
	}
	withFile := func(path string, fn func(io.Reader) error) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return fn(bufio.NewReaderSize(f, 1<<16))
	}
	switch o.format {
	case "openai", "flywheel":
		n, err := countLines(o.file)
		if err != nil {
			return importPlan{}, err
		}
		read := (*dataset.Importer).OpenAI
		if o.format == "flywheel" {
			read = (*dataset.Importer).Flywheel
		}
		return importPlan{total: n, run: func(im *dataset.Importer) error {
			return withFile(o.file, func(r io.Reader) error { return read(im, r) })
		}}, nil

	case "taubench":
		domain := o.category
		if domain == "" {
			domain = tauDomain(o.file)
		}
		if domain == "" {
			return importPlan{}, fmt.Errorf("cannot tell the tau-bench domain from %s (want gpt-4o-DOMAIN.json): pass --category", filepath.Base(o.file))
		}
		tools := o.tools
		if tools == "" {
			tools = filepath.Join(filepath.Dir(filepath.Dir(o.file)), "envs", domain, "tools_openai.json")
			if _, err := os.Stat(tools); err != nil {
				return importPlan{}, fmt.Errorf("no tools file at %s: pass --tools", tools)
			}
		}
		var calls []dataset.Call
		err := withFile(o.file, func(tr io.Reader) error {
			return withFile(tools, func(tl io.Reader) error {
				tau, err := dataset.ReadTau(domain, tr, tl)
				if err != nil {
					return err
				}
				calls, err = dataset.TauCalls(tau)
				return err
			})
		})
		if err != nil {
			return importPlan{}, err
		}
		return importPlan{total: len(calls), run: func(im *dataset.Importer) error { return im.TauBench(calls) }}, nil

	case "bfcl":
		category := o.category
		if category == "" {
			category = dataset.BFCLCategory(o.file)
		}
		if category == "" {
			return importPlan{}, fmt.Errorf("cannot tell the BFCL category from %s (want BFCL_v4_CATEGORY.json): pass --category", filepath.Base(o.file))
		}
		if err := dataset.CheckBFCLCategory(category); err != nil {
			return importPlan{}, err
		}
		answers := o.answers
		if answers == "" && dataset.BFCLNeedsAnswers(category) {
			answers = dataset.BFCLAnswersPath(o.file)
		}
		n, err := countLines(o.file)
		if err != nil {
			return importPlan{}, err
		}
		return importPlan{total: n, run: func(im *dataset.Importer) error {
			return withFile(o.file, func(q io.Reader) error {
				if answers == "" {
					return im.BFCL(category, q, nil)
				}
				return withFile(answers, func(a io.Reader) error { return im.BFCL(category, q, a) })
			})
		}}, nil
	}
	return importPlan{}, fmt.Errorf("unknown format %q", o.format)
}

// tauDomain reads the domain from tau-bench's file name gpt-4o-DOMAIN.json.
func tauDomain(path string) string {
	base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".gz"), ".json")
	if d, ok := strings.CutPrefix(base, "gpt-4o-"); ok {
		return d
	}
	return ""
}

// countLines counts the non-blank lines of a file, the records of a JSON Lines file.
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	n, blank := 0, true
	for {
		k, err := f.Read(buf)
		for _, c := range buf[:k] {
			switch c {
			case '\n':
				if !blank {
					n++
				}
				blank = true
			case ' ', '\t', '\r':
			default:
				blank = false
			}
		}
		if errors.Is(err, io.EOF) {
			if !blank {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// importPrivacy is the privacy step imported calls go through: --config's, or with no
// config, redaction with the default rules and no encryption.
func importPrivacy(configPath string, log *slog.Logger) (*privacy, error) {
	if configPath != "" {
		cfg, err := config.Load(configPath, os.Environ())
		if err != nil {
			return nil, err
		}
		return newPrivacy(cfg.Privacy, log)
	}
	log.Warn("no --config: imported calls are redacted with the default rules and stored unencrypted")
	p := config.Default().Privacy
	p.Encryption = config.Encryption{}
	return newPrivacy(p, slog.New(slog.DiscardHandler))
}

func reportBad(w io.Writer, bad []dataset.BadRecord, total int) {
	for i, b := range bad {
		if i == maxBadShown {
			fmt.Fprintf(w, "skipped: ... and %d more\n", total-maxBadShown)
			break
		}
		fmt.Fprintf(w, "skipped: %v\n", b)
	}
}

func writeImportTable(w io.Writer, source string, s importStats, inStore int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tREAD\tIMPORTED\tALREADY PRESENT\tSKIPPED (BAD)\tIN STORE")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", source, s.read, s.imported, s.present, s.skipped, inStore)
	return tw.Flush()
}
