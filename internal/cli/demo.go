package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/discover"
	"github.com/downshift-dev/downshift/internal/discover/report"
	"github.com/downshift-dev/downshift/internal/eval"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/sim"
	"github.com/downshift-dev/downshift/internal/store"
)

type demoOptions struct {
	dir           string
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
		Short: "Run the whole loop on bundled real data: record, discover, evaluate, shift, roll back, report",
		Long: `demo starts the model simulator (replaying GPT-4o's recorded answers from tau-bench)
and the gateway on free local ports, plays the bundled tau-bench airline conversations through
the gateway as the agent made them (each assistant turn is one call), then shows what was
recorded, finds the workloads, evaluates two simulated candidates on the top one, shifts it
to the recommended candidate (shadow, canary, serve), serves a deliberately degraded
candidate to show the automatic rollback, and prints the savings report. It needs no
network and no configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory for the demo's database, config and keys (default: a new temporary directory)")
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
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "downshift-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The upstream: the simulator replaying GPT-4o's recorded answers.
	// The simulator matches the gateway's redacted records too (for eval), with the
	// demo config's privacy settings: redaction with the defaults.
	red, err := defaultRedactor()
	if err != nil {
		return err
	}
	simSrv, err := sim.New(sim.Options{Mode: sim.ModeReplay, Calls: calls, Unknown: sim.UnknownError, Redactor: red,
		Candidates: demoCandidates, Latency: sim.Latency{TTFT: o.ttft, TokensPerSecond: o.tps}, Seed: 1, Logger: log})
	if err != nil {
		return err
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = simSrv.Serve(simLn) }()
	defer simSrv.Shutdown(context.Background())

	d, err := setUpDemo(ctx, o.dir, "http://"+simLn.Addr().String()+"/v1")
	if err != nil {
		return err
	}
	gwLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, d.cfg, gwLn, log)
	if err != nil {
		gwLn.Close()
		return err
	}
	base := "http://" + srv.addr + "/v1"
	fmt.Fprintf(out, "downshift demo: simulator (replaying recorded GPT-4o answers) at http://%s/v1, gateway at %s\n", simLn.Addr(), base)
	fmt.Fprintf(out, "config %s: redaction on, payloads sealed at rest (AES-256-GCM), agent authenticated by a gateway key\n", d.configPath)
	fmt.Fprintf(out, "playing %d tau-bench airline conversations (%d calls) through the gateway as client %q\n\n", len(convs), total, demoClient)

	res := playConversations(ctx, base, d.agentKey, convs, o, errOut)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.shutdown(sctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(out, "\nplayed %d calls in %s: %d answered, %d failed\n", res.sent.Load(), res.elapsed.Round(time.Millisecond), res.ok.Load(), res.failed.Load())

	st, err := openStore(ctx, "sqlite", d.cfg.Store.DSN)
	if err != nil {
		return err
	}
	defer st.Close()
	kr, err := seal.NewKeyring(d.cfg.Privacy.Encryption, os.Getenv)
	if err != nil {
		return err
	}
	if err := printDemoReport(ctx, out, st, kr, int(res.sent.Load())); err != nil {
		return err
	}
	if err := printPrivacyCheck(out, d.cfg.Store.DSN, convs); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nworkloads (downshift analyze): tags, then templates, then clustering on what each call asks and what GPT-4o did")
	found, rep, _, err := analyze(ctx, st, kr, store.Filter{Ascending: true, WithPayloads: true, Limit: 1 << 30},
		configCandidates(d.cfg), discover.Options{Seed: 1}, io.Discard)
	if err != nil {
		return err
	}
	if err := report.WriteTable(out, rep); err != nil {
		return err
	}
	paths, err := writeReportFiles(o.dir, rep)
	if err != nil {
		return err
	}
	if err := saveWorkloads(ctx, st, found, rep, analyzeOptions{seed: 1}); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nreport: %s (open in a browser), %s\n", paths[1], paths[0])

	top, ok := topWorkload(rep)
	if !ok {
		return errors.New("demo: no workload is ready for a small model")
	}
	cat, err := catalogFrom(ctx, d.cfg, st, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nevaluation (downshift eval) of the top workload, %s (%s), saving %s a month at readiness %d\n",
		top.ID, top.Label, fmt.Sprintf("$%.2f", top.Savings.MonthlyUSD), top.Readiness)
	fmt.Fprintf(out, "the candidates are simulated: no model weights can be downloaded here, so the simulator answers as each\n"+
		"candidate with GPT-4o's recorded answer, spoiled at a known rate (%s)\n", describeCandidates())
	lb, _, err := evaluate(ctx, st, kr, cat, evalOptions{workload: top.ID, candidates: []string{demoSmall, demoTiny},
		variants: []string{eval.VariantZeroShot, eval.VariantInContext}, k: 3, size: 200, seed: 1, concurrency: 16,
		attempts: 4, threshold: 0.95, out: o.dir}, out, errOut)
	if err != nil {
		return err
	}
	good := lb.Recommendation.Candidate
	if good == "" {
		// A real operator would stop here. The demo goes on with the best-ranked
		// candidate, to show the shift, and says so: the guards, the verification
		// sample and the rollback are what would catch it.
		if len(lb.Rows) == 0 {
			return errors.New("demo: the evaluation ranked no candidate")
		}
		good = lb.Rows[0].Candidate
		fmt.Fprintf(out, "\nthe evaluation recommends keeping GPT-4o on this workload; the demo shifts the best-ranked candidate, %s, anyway,\n"+
			"to show the steps: shadow and canary measure it on live calls before it serves, and the rollback is the safety net\n", good)
	}
	bad := demoTiny
	if good == demoTiny {
		bad = demoSmall
	}
	if _, err := runShiftDemo(ctx, d, st, calls, top.ID, good, bad, o, log, out, errOut); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ndone in %s. Look around:\n", time.Since(started).Round(time.Millisecond))
	fmt.Fprintf(out, "  downshift calls list -c %s\n", d.configPath)
	fmt.Fprintf(out, "  downshift eval show -c %s\n", d.configPath)
	fmt.Fprintf(out, "  downshift shift history %s -c %s\n", top.ID, d.configPath)
	fmt.Fprintf(out, "  downshift report -c %s\n", d.configPath)
	fmt.Fprintf(out, "  DOWNSHIFT_KEY=$(cat %s) downshift calls show -c %s ID   # payloads: admin key, audited\n", d.adminKeyPath, d.configPath)
	return nil
}

// The demo's candidate models, and how the simulator spoils GPT-4o's answers when it
// answers as them: the 8B model rarely, the 1.5B model often.
const (
	demoSmall = "llama-3.1-8b-instruct"
	demoTiny  = "qwen2.5-1.5b-instruct"
)

var demoCandidates = map[string]sim.Degrade{
	demoSmall: {Rate: 0.01, Kinds: demoKinds},
	demoTiny:  {Rate: 0.25, Kinds: demoKinds},
}

// demoKinds are the ways the simulator spoils a candidate's answer in the demo: wrong
// answers that only a comparison with GPT-4o finds, and malformed ones the guards
// refuse.
var demoKinds = []string{sim.DegradeWrongTool, sim.DegradeWrongArgument, sim.DegradeDropCall, sim.DegradeTextForTool,
	sim.DegradeToolForText, sim.DegradeTruncateText, sim.DegradeBrokenArguments, sim.DegradeUnknownTool}

func describeCandidates() string {
	var parts []string
	for _, name := range []string{demoSmall, demoTiny} {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", name, 100*demoCandidates[name].Rate))
	}
	return strings.Join(parts, ", ")
}

// topWorkload is the ready workload (readiness at the report's threshold or above)
// that would save the most a month.
func topWorkload(rep *report.Report) (report.Workload, bool) {
	var best report.Workload
	found := false
	for _, w := range rep.Workloads {
		if w.Readiness >= rep.ReadyThreshold && (!found || w.Savings.MonthlyUSD > best.Savings.MonthlyUSD) {
			best, found = w, true
		}
	}
	return best, found
}

// demoClient is the client id of the demo's agent.
const demoClient = "tau-airline-agent"

// demoSetup is what the demo writes into its directory before it serves.
type demoSetup struct {
	cfg                      config.Config
	configPath, adminKeyPath string
	agentKey                 string
}

// setUpDemo writes, into dir, what an operator would set up by hand: an encryption key,
// a config file that uses it, a gateway key for the agent and an admin key (saved to a
// file, for calls show). The config is read back with config.Load, as serve reads it.
func setUpDemo(ctx context.Context, dir, upstream string) (*demoSetup, error) {
	d := &demoSetup{configPath: filepath.Join(dir, "downshift.yaml"), adminKeyPath: filepath.Join(dir, "admin.key")}
	db := filepath.Join(dir, "downshift.db")
	encKey := filepath.Join(dir, "encryption.key")
	key, err := seal.GenerateKey()
	if err != nil {
		return nil, err
	}
	yaml := fmt.Sprintf(`# Written by downshift demo.
listen: 127.0.0.1:0
store: {driver: sqlite, dsn: %q}
backends:
  - {name: sim, url: %q}
models:
  - name: gpt-4o
    backend: sim
    role: reference
    price: {input_per_mtok: %g, output_per_mtok: %g, cached_input_per_mtok: %g}
  # Small candidates, priced as hosted models of their size are. The simulator answers
  # as them with GPT-4o's recorded answers, spoiled at a known rate (demoCandidates).
  - name: %s
    backend: sim
    role: candidate
    params_b: 8
    context_tokens: 131072
    licence: llama3.1
    memory_gb: 16
    price: {input_per_mtok: 0.02, output_per_mtok: 0.05}
  - name: %s
    backend: sim
    role: candidate
    params_b: 1.5
    context_tokens: 32768
    licence: apache-2.0
    memory_gb: 3.1
    price: {input_per_mtok: 0.01, output_per_mtok: 0.02}
privacy:
  redact: true
  encryption:
    active: demo
    keys:
      - {id: demo, file: %q}
`, db, upstream, gpt4oPrice.InputPerMTok, gpt4oPrice.OutputPerMTok, gpt4oPrice.CachedInputPerMTok, demoSmall, demoTiny, encKey)
	for path, content := range map[string]string{encKey: key + "\n", d.configPath: yaml} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	if d.cfg, err = config.Load(d.configPath, nil); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, d.cfg.Store.Driver, d.cfg.Store.DSN)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	mint := func(k store.Key) (string, error) {
		k, secret, err := auth.NewKey(k, time.Now())
		if err != nil {
			return "", err
		}
		return secret, st.CreateKey(ctx, k)
	}
	if d.agentKey, err = mint(store.Key{Kind: store.KeyGateway, Name: demoClient}); err != nil {
		return nil, err
	}
	admin, err := mint(store.Key{Kind: store.KeyAdmin, Role: store.RoleAdmin, Name: "demo-admin"})
	if err != nil {
		return nil, err
	}
	return d, os.WriteFile(d.adminKeyPath, []byte(admin+"\n"), 0o600)
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
func playConversations(ctx context.Context, base, key string, convs [][]dataset.Call, o demoOptions, errOut io.Writer) *playResult {
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
					if err := playCall(ctx, client, base, key, &c, stream); err != nil {
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

func playCall(ctx context.Context, client *http.Client, base, key string, c *dataset.Call, stream bool) error {
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
	req.Header.Set("Authorization", "Bearer "+key)
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
func printDemoReport(ctx context.Context, out io.Writer, st store.Store, kr *seal.Keyring, sent int) error {
	calls, err := st.ListCalls(ctx, store.Filter{Limit: 1 << 30, Ascending: true, WithPayloads: true})
	if err != nil {
		return err
	}
	sealed := 0
	for i := range calls {
		if calls[i].KeyID != "" {
			sealed++
		}
		if err := kr.OpenCall(&calls[i]); err != nil {
			return err
		}
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
	fmt.Fprintf(tw, "  clients\t%s\n", strings.Join(s.clients, ", "))
	fmt.Fprintf(tw, "  sealed at rest\t%d of %d calls\n", sealed, len(calls))
	fmt.Fprintf(tw, "  calls with redactions\t%d (%s)\n", s.redactedCalls, formatCounts(s.redactions))
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
	redactedCalls                                               int
	redactions                                                  map[string]int
	clients                                                     []string
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
	s := demoSummary{redactions: map[string]int{}}
	fp := map[string]*fingerprintRow{}
	clients := map[string]bool{}
	for _, c := range calls {
		if !clients[c.ClientID] {
			clients[c.ClientID] = true
			s.clients = append(s.clients, c.ClientID)
		}
		if len(c.Redactions) > 0 {
			s.redactedCalls++
		}
		for t, n := range c.Redactions {
			s.redactions[t] += n
		}
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

// formatCounts prints counts per type, largest first: "EMAIL 1369, PHONE 2".
func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	types := make([]string, 0, len(m))
	for t := range m {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		return m[types[i]] > m[types[j]] || m[types[i]] == m[types[j]] && types[i] < types[j]
	})
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", t, m[t])
	}
	return strings.Join(parts, ", ")
}

// emailPattern finds e-mail addresses in the demo's conversations, to look for them in
// the database files afterwards. It only has to find the data's own addresses.
var emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)

// printPrivacyCheck looks for the conversations' e-mail addresses, and a sample of
// their plain text, in the raw bytes of the database, its WAL and shared memory.
func printPrivacyCheck(out io.Writer, db string, convs [][]dataset.Call) error {
	var raw []byte
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(db + suffix)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		raw = append(raw, b...)
	}
	emails := map[string]bool{}
	var sample string
	for _, conv := range convs {
		for _, c := range conv {
			for _, m := range c.Request.Messages {
				text := m.Content.String()
				for _, e := range emailPattern.FindAllString(text, -1) {
					emails[e] = true
				}
				if sample == "" && m.Role == "user" && len(text) > 40 {
					sample = text[:40]
				}
			}
		}
	}
	found := 0
	for e := range emails {
		if bytes.Contains(raw, []byte(e)) {
			found++
		}
	}
	fmt.Fprintf(out, "\nprivacy check of the database files (%d bytes):\n", len(raw))
	fmt.Fprintf(out, "  distinct e-mail addresses in the conversations: %d; found in the files: %d\n", len(emails), found)
	fmt.Fprintf(out, "  a user message's text (%q...) found in the files: %v\n", sample, bytes.Contains(raw, []byte(sample)))
	return nil
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
