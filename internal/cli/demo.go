package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

type demoOptions struct {
	db            string
	conversations int
	concurrency   int
	streamEvery   int
	ttft          time.Duration
	tps           float64
}

func newDemoCmd() *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the loop on bundled real data: tau-bench agent calls through the gateway, recorded",
		Long: `demo starts the model simulator (replaying GPT-4o's recorded answers from tau-bench)
and the gateway on free local ports, plays the bundled tau-bench airline conversations through
the gateway as the agent made them (each assistant turn is one call), then shows what was
recorded. It needs no network and no configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "SQLite file to record into (default: a new file in a temporary directory)")
	f.IntVar(&o.conversations, "conversations", 0, "play only the first N conversations (0: all 200)")
	f.IntVar(&o.concurrency, "concurrency", 8, "conversations played at once")
	f.IntVar(&o.streamEvery, "stream-every", 3, "stream every Nth conversation's calls (0: never)")
	f.DurationVar(&o.ttft, "ttft", 2*time.Millisecond, "simulated time to first token")
	f.Float64Var(&o.tps, "tps", 4000, "simulated tokens per second")
	return cmd
}

// gpt4oPrice is OpenAI's list price for gpt-4o, in dollars per million tokens.
var gpt4oPrice = config.Price{InputPerMTok: 2.50, OutputPerMTok: 10.00, CachedInputPerMTok: 1.25}

func runDemo(ctx context.Context, o demoOptions, out, errOut io.Writer) error {
	started := time.Now()
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		return err
	}
	convs := conversations(calls)
	if o.conversations > 0 && o.conversations < len(convs) {
		convs = convs[:o.conversations]
	}
	total := 0
	for _, c := range convs {
		total += len(c)
	}

	dir := ""
	if o.db == "" {
		if dir, err = os.MkdirTemp("", "downshift-demo-"); err != nil {
			return err
		}
		o.db = filepath.Join(dir, "downshift.db")
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The upstream: the simulator replaying GPT-4o's recorded answers.
	simSrv, err := sim.New(sim.Options{Mode: sim.ModeReplay, Calls: calls, Unknown: sim.UnknownError,
		Latency: sim.Latency{TTFT: o.ttft, TokensPerSecond: o.tps}, Seed: 1, Logger: log})
	if err != nil {
		return err
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = simSrv.Serve(simLn) }()
	defer simSrv.Shutdown(context.Background())

	cfg := config.Default()
	cfg.Store.DSN = o.db
	cfg.Backends = []config.Backend{{Name: "sim", URL: "http://" + simLn.Addr().String() + "/v1"}}
	cfg.Models = []config.Model{{Name: "gpt-4o", Backend: "sim", Role: "reference", Price: gpt4oPrice}}
	gwLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, cfg, gwLn, log)
	if err != nil {
		gwLn.Close()
		return err
	}
	base := "http://" + srv.addr + "/v1"
	fmt.Fprintf(out, "downshift demo: simulator (replaying recorded GPT-4o answers) at http://%s/v1, gateway at %s\n", simLn.Addr(), base)
	fmt.Fprintf(out, "playing %d tau-bench airline conversations (%d calls) through the gateway, recording into %s\n\n", len(convs), total, o.db)

	res := playConversations(ctx, base, convs, o, errOut)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.shutdown(sctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(out, "\nplayed %d calls in %s: %d answered, %d failed\n", res.sent.Load(), res.elapsed.Round(time.Millisecond), res.ok.Load(), res.failed.Load())

	st, err := openStore(ctx, "sqlite", o.db)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := printDemoReport(ctx, out, st, int(res.sent.Load())); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ndone in %s. Look around: downshift calls list --db %s\n", time.Since(started).Round(time.Millisecond), o.db)
	return nil
}

// conversations groups calls by conversation (task and trial), keeping turn order.
func conversations(calls []dataset.Call) [][]dataset.Call {
	var out [][]dataset.Call
	idx := map[string]int{}
	for _, c := range calls {
		conv := c.ID[:strings.LastIndex(c.ID, "/")]
		i, ok := idx[conv]
		if !ok {
			i = len(out)
			idx[conv] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], c)
	}
	return out
}

type playResult struct {
	sent, ok, failed atomic.Int64
	elapsed          time.Duration
}

// playConversations replays each conversation turn by turn, as the agent did, with
// several conversations at once.
func playConversations(ctx context.Context, base string, convs [][]dataset.Call, o demoOptions, errOut io.Writer) *playResult {
	total := 0
	for _, c := range convs {
		total += len(c)
	}
	prog := newProgress(errOut, "calls", total)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency}}
	res := &playResult{}
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(o.concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				stream := o.streamEvery > 0 && i%o.streamEvery == 0
				for _, c := range convs[i] {
					if ctx.Err() != nil {
						return
					}
					res.sent.Add(1)
					if err := playCall(ctx, client, base, &c, stream); err != nil {
						res.failed.Add(1)
						fmt.Fprintf(errOut, "call %s: %v\n", c.ID, err)
					} else {
						res.ok.Add(1)
					}
					prog.add(1)
				}
			}
		}()
	}
	for i := range convs {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	prog.finish()
	res.elapsed = time.Since(start)
	return res
}

func playCall(ctx context.Context, client *http.Client, base string, c *dataset.Call, stream bool) error {
	body, err := c.RequestJSON()
	if err != nil {
		return err
	}
	if stream {
		body = append(bytes.TrimSuffix(body, []byte("}")), []byte(`,"stream":true}`)...)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// printDemoReport prints what the store holds: totals, the template fingerprints the
// calls fall into, and a few calls.
func printDemoReport(ctx context.Context, out io.Writer, st store.Store, sent int) error {
	calls, err := st.ListCalls(ctx, store.Filter{Limit: 1 << 30, Ascending: true, WithPayloads: true})
	if err != nil {
		return err
	}
	s := summarize(calls)
	fmt.Fprintf(out, "\nrecorded: %d calls (sent %d", len(calls), sent)
	if len(calls) == sent {
		fmt.Fprint(out, ", none lost)\n")
	} else {
		fmt.Fprintf(out, ", %d MISSING)\n", sent-len(calls))
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  answered ok\t%d\n  errors\t%d\n  streamed\t%d\n", s.ok, s.errors, s.streamed)
	fmt.Fprintf(tw, "  replayed real answers\t%d\n  simulated (invented) answers\t%d\n", len(calls)-s.simulated, s.simulated)
	fmt.Fprintf(tw, "  tool-call answers\t%d\n  text answers\t%d\n", s.toolCalls, s.text)
	fmt.Fprintf(tw, "  prompt tokens\t%d (%d cached, %d estimated calls)\n", s.prompt, s.cached, s.estimated)
	fmt.Fprintf(tw, "  completion tokens\t%d\n", s.completion)
	fmt.Fprintf(tw, "  cost at gpt-4o prices\t$%.4f\n", s.cost)
	fmt.Fprintf(tw, "  latency p50 / p95\t%s / %s\n", pct(s.latency, 50), pct(s.latency, 95))
	fmt.Fprintf(tw, "  time to first token p50\t%s\n", pct(s.ttft, 50))
	tw.Flush()

	fmt.Fprintln(out, "\ntemplate fingerprints (same system prompt shape, tool set and response format):")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FINGERPRINT\tCALLS\tSHARE\tAVG PROMPT TOK\tAVG COMPLETION TOK\tCOST")
	for _, f := range s.fingerprints {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f%%\t%.0f\t%.0f\t$%.4f\n", f.name, f.calls, 100*float64(f.calls)/float64(max(len(calls), 1)),
			float64(f.prompt)/float64(f.calls), float64(f.completion)/float64(f.calls), f.cost)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nlast calls:")
	tw = newCallTable(out)
	for _, c := range calls[len(calls)-min(5, len(calls)):] {
		writeCallRow(tw, c)
	}
	return tw.Flush()
}

type demoSummary struct {
	ok, errors, streamed, simulated, toolCalls, text, estimated int
	prompt, completion, cached                                  int
	cost                                                        float64
	latency, ttft                                               []time.Duration
	fingerprints                                                []fingerprintRow
}

type fingerprintRow struct {
	name                      string
	calls, prompt, completion int
	cost                      float64
}

func summarize(calls []store.Call) demoSummary {
	var s demoSummary
	fp := map[string]*fingerprintRow{}
	for _, c := range calls {
		if c.Status < 400 {
			s.ok++
		} else {
			s.errors++
		}
		if c.Stream {
			s.streamed++
		}
		if c.Simulated {
			s.simulated++
		}
		if c.TokensEstimated {
			s.estimated++
		}
		if c.Status < 400 {
			if callsTools(c.Response) {
				s.toolCalls++
			} else {
				s.text++
			}
		}
		s.prompt += c.PromptTokens
		s.completion += c.CompletionTokens
		s.cached += c.CachedTokens
		s.cost += c.CostUSD
		s.latency = append(s.latency, c.Latency)
		if c.TTFT > 0 {
			s.ttft = append(s.ttft, c.TTFT)
		}
		r := fp[c.Fingerprint]
		if r == nil {
			r = &fingerprintRow{name: c.Fingerprint}
			fp[c.Fingerprint] = r
		}
		r.calls++
		r.prompt += c.PromptTokens
		r.completion += c.CompletionTokens
		r.cost += c.CostUSD
	}
	for _, r := range fp {
		s.fingerprints = append(s.fingerprints, *r)
	}
	sort.Slice(s.fingerprints, func(i, j int) bool { return s.fingerprints[i].calls > s.fingerprints[j].calls })
	return s
}

// callsTools reports whether a recorded chat.completion's first choice calls tools.
func callsTools(response []byte) bool {
	var cc struct {
		Choices []struct {
			Message struct {
				ToolCalls []json.RawMessage `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	return json.Unmarshal(response, &cc) == nil && len(cc.Choices) > 0 && len(cc.Choices[0].Message.ToolCalls) > 0
}

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p/100+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return s[i].Round(10 * time.Microsecond)
}
