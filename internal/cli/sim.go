package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/redact"
	"github.com/downshift-dev/downshift/internal/sim"
)

// simFlags are the flags of downshift sim.
type simFlags struct {
	listen   string
	mode     string
	data     string
	unknown  string
	ttft     time.Duration
	tps      float64
	jitter   float64
	faults   sim.Faults
	seed     uint64
	verbose  bool
	redact   bool
	shutdown time.Duration
	// candidates are --candidate NAME=RATE[:kind,kind] values, parsed by runSim.
	candidates []string
}

func newSimCmd() *cobra.Command {
	f := simFlags{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Serve an OpenAI-compatible model simulator that replays recorded real answers",
		Long: `sim serves /v1/chat/completions, /v1/models and /v1/embeddings. In replay mode it answers
each conversation with the answer a real model gave to it in the bundled datasets (tau-bench
airline: GPT-4o; GSM8K: GPT-4 or Mixtral by the requested model); in synthetic mode, and for
unrecorded conversations with --unknown synthetic, it invents answers marked "simulated".
Latency and faults (errors, 429s, timeouts, resets, cut streams) are modelled at seeded rates.

With --redact it also answers conversations as downshift's default redaction stores them
(<EMAIL_1> for an address), with the recorded answer redacted alike: serve candidates this
way to evaluate them (downshift eval) on calls recorded with privacy.redact on.`,
		Example: `  downshift sim --listen 127.0.0.1:8000 --ttft 200ms --tps 80
  downshift sim --candidate small-20=0.2 --candidate small-5=0.05:wrong_tool,drop_call
  downshift sim --redact --candidate small-5=0.05
  downshift sim --mode synthetic --error-rate 0.05 --429-rate 0.05 --cut-rate 0.02`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8000", "address to listen on (port 0 picks a free port)")
	fl.StringVar(&f.mode, "mode", string(sim.ModeReplay), "replay (recorded answers) or synthetic (invented answers)")
	fl.StringVar(&f.data, "data", dataset.NameTauBench+","+dataset.NameGSM8K, "bundled datasets to replay, comma-separated (taubench, gsm8k), or none")
	fl.StringVar(&f.unknown, "unknown", string(sim.UnknownError), "replay mode, unrecorded conversation: error (404) or synthetic")
	fl.DurationVar(&f.ttft, "ttft", 0, "time to first token")
	fl.Float64Var(&f.tps, "tps", 0, "tokens per second after the first (0: all at once)")
	fl.Float64Var(&f.jitter, "jitter", 0, "scale each delay by a random factor in [1-jitter, 1+jitter]")
	fl.Float64Var(&f.faults.Error, "error-rate", 0, "share of requests answered 500")
	fl.Float64Var(&f.faults.RateLimit, "429-rate", 0, "share of requests answered 429 with Retry-After")
	fl.DurationVar(&f.faults.RetryAfter, "retry-after", time.Second, "Retry-After of injected 429s")
	fl.Float64Var(&f.faults.Timeout, "timeout-rate", 0, "share of requests that never get an answer")
	fl.Float64Var(&f.faults.Reset, "reset-rate", 0, "share of requests whose connection is reset")
	fl.Float64Var(&f.faults.Cut, "cut-rate", 0, "share of answers cut off part way (streams end without [DONE])")
	fl.StringArrayVar(&f.candidates, "candidate", nil, "a candidate model that degrades the reference answer: NAME=RATE[:kind,kind] (kinds: wrong_tool, wrong_argument, drop_call, text_for_tool, tool_for_text, truncate_text; none: a mix); repeatable")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of every random choice")
	fl.BoolVar(&f.redact, "redact", false, "also answer conversations redacted as the default privacy settings store them")
	fl.BoolVar(&f.verbose, "verbose", false, "log every request")
	fl.DurationVar(&f.shutdown, "shutdown-timeout", 10*time.Second, "how long open streams may finish on shutdown")
	return cmd
}

// runSim serves the simulator on f.listen until ctx is done, then shuts it down.
func runSim(ctx context.Context, f simFlags, stdout, stderr io.Writer) error {
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var calls []dataset.Call
	var loaded []string
	if names := simDataNames(f.data); len(names) > 0 && !(len(names) == 1 && names[0] == "none") {
		for _, name := range names {
			c, err := dataset.BundledCalls(name)
			if err != nil {
				return err
			}
			calls = append(calls, c...)
			loaded = append(loaded, fmt.Sprintf("%s: %d calls", name, len(c)))
		}
	}
	candidates, err := parseCandidates(f.candidates)
	if err != nil {
		return err
	}
	var redactor *redact.Redactor
	if f.redact {
		if redactor, err = defaultRedactor(); err != nil {
			return err
		}
	}
	srv, err := sim.New(sim.Options{
		Candidates: candidates,
		Redactor:   redactor,
		Mode:       sim.Mode(f.mode),
		Calls:      calls,
		Unknown:    sim.Unknown(f.unknown),
		Latency:    sim.Latency{TTFT: f.ttft, TokensPerSecond: f.tps, Jitter: f.jitter},
		Faults:     f.faults,
		Seed:       f.seed,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "downshift sim: serving http://%s/v1 (%s mode)\n", ln.Addr(), f.mode)
	if len(loaded) == 0 {
		fmt.Fprintln(stdout, "  recorded: none")
	} else {
		fmt.Fprintf(stdout, "  recorded: %s\n", strings.Join(loaded, ", "))
	}
	if f.ttft > 0 || f.tps > 0 {
		fmt.Fprintf(stdout, "  latency: ttft %v, %g tokens/s, jitter %g\n", f.ttft, f.tps, f.jitter)
	}
	if fl := f.faults; fl.Error+fl.RateLimit+fl.Timeout+fl.Reset+fl.Cut > 0 {
		fmt.Fprintf(stdout, "  faults: error %g, 429 %g, timeout %g, reset %g, cut %g\n",
			fl.Error, fl.RateLimit, fl.Timeout, fl.Reset, fl.Cut)
	}

	for _, c := range f.candidates {
		fmt.Fprintf(stdout, "  candidate: %s\n", c)
	}
	if f.redact {
		fmt.Fprintln(stdout, "  redacted conversations: answered too (default privacy settings)")
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		log.Warn("sim: open requests did not finish before the shutdown timeout", "timeout", f.shutdown)
	}
	if err := <-served; err != nil {
		return err
	}
	fmt.Fprintln(stdout, "downshift sim: stopped")
	return nil
}

// defaultRedactor is the recorder's redaction as serve builds it from the default
// privacy settings, for a simulator to match conversations stored with it.
func defaultRedactor() (*redact.Redactor, error) {
	// newPrivacy's warnings (no encryption) are about a store the simulator has not.
	p, err := newPrivacy(config.Default().Privacy, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return p.redactor, nil
}

// simDataNames splits a comma-separated flag value, dropping empty items.
func simDataNames(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseCandidates parses --candidate values, NAME=RATE[:kind,kind]; sim.New checks
// the rates and kinds.
func parseCandidates(values []string) (map[string]sim.Degrade, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := make(map[string]sim.Degrade, len(values))
	for _, v := range values {
		name, spec, ok := strings.Cut(v, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("--candidate %q: want NAME=RATE[:kind,kind]", v)
		}
		rate, kinds, _ := strings.Cut(spec, ":")
		var d sim.Degrade
		var err error
		if d.Rate, err = strconv.ParseFloat(strings.TrimSpace(rate), 64); err != nil {
			return nil, fmt.Errorf("--candidate %q: rate: %w", v, err)
		}
		d.Kinds = simDataNames(kinds)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--candidate %q: %s is given twice", v, name)
		}
		out[name] = d
	}
	return out, nil
}
