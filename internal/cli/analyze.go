package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/discover"
	"github.com/downshift-dev/downshift/internal/discover/report"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/workload"
)

type analyzeOptions struct {
	since, until string
	seed         uint64
	requestOnly  bool
	out          string
	save         bool
}

func newAnalyzeCmd() *cobra.Command {
	var sf storeFlags
	var o analyzeOptions
	cmd := &cobra.Command{
		Use:   "analyze",
		Short: "Group recorded calls into workloads and score how ready each is for a small model",
		Long: `analyze reads the recorded calls, groups them into workloads (the client's tag first,
then the request template, then clustering on what each call asks and what the reference
model did), and reports per workload: volume, tokens, cost and its share, latency, output
types, tools, prompt diversity, an SLM-readiness score with its reasons, and the monthly
saving if the cheapest configured candidate served it. It prints a table and writes
workloads.json and workloads.html (a self-contained report with charts) to --out. The
workloads are saved in the store, every call is assigned to one, and the server assigns
new untagged calls to the nearest one as it records them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAnalyze(cmd.Context(), &sf, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&sf.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db)")
	f.StringVarP(&sf.config, "config", "c", "", "YAML config: the store, the encryption keys, and the candidate models' prices")
	f.StringVar(&o.since, "since", "", "only calls started at or after this: a duration ago (30d, 12h) or RFC 3339 time")
	f.StringVar(&o.until, "until", "", "only calls started before this")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the clustering (same calls and seed, same workloads)")
	f.BoolVar(&o.requestOnly, "request-only", false, "cluster on what calls ask only, not on what the reference answered")
	f.StringVar(&o.out, "out", ".", "directory for workloads.json and workloads.html (empty: write none)")
	f.BoolVar(&o.save, "save", true, "save the workloads and the assignment of every call in the store")
	return cmd
}

func runAnalyze(ctx context.Context, sf *storeFlags, o analyzeOptions, out, errOut io.Writer) error {
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	kr, err := sf.keyring()
	if err != nil {
		return err
	}
	var candidates []report.Candidate
	if sf.config != "" {
		cfg, err := config.Load(sf.config, os.Environ())
		if err != nil {
			return err
		}
		candidates = configCandidates(cfg)
	}
	filter := store.Filter{Ascending: true, WithPayloads: true, Limit: 1 << 30}
	now := time.Now()
	for _, t := range []struct {
		flag, value string
		dst         *time.Time
	}{{"since", o.since, &filter.Since}, {"until", o.until, &filter.Until}} {
		if t.value == "" {
			continue
		}
		if *t.dst, err = parseTime(t.flag, t.value, now); err != nil {
			return err
		}
	}
	res, rep, kept, err := analyze(ctx, st, kr, filter, candidates, discover.Options{Seed: o.seed, RequestOnly: o.requestOnly}, errOut)
	if err != nil {
		return err
	}
	if err := report.WriteTable(out, rep); err != nil {
		return err
	}
	if kept > 0 {
		fmt.Fprintf(out, "\n%d workloads kept the ids they had before (most of their calls were in them already)\n", kept)
	}
	if err := warnLostPolicies(ctx, st, res, errOut); err != nil {
		return err
	}
	if o.out != "" {
		paths, err := writeReportFiles(o.out, rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\nwrote %s and %s\n", paths[0], paths[1])
	}
	if o.save {
		if err := saveWorkloads(ctx, st, res, rep, o); err != nil {
			return err
		}
		fmt.Fprintf(out, "saved %d workloads and the assignment of %d calls in the store\n", len(rep.Workloads), len(res.Assignments))
	}
	return nil
}

// analyze loads the calls f selects, opens their payloads, discovers workloads and
// builds the report on them. A workload found again keeps the id it had (see
// discover.KeepIDs); kept says how many did.
func analyze(ctx context.Context, st store.Store, kr *seal.Keyring, f store.Filter, candidates []report.Candidate,
	opts discover.Options, progressOut io.Writer) (res *discover.Result, rep *report.Report, kept int, err error) {
	stored, err := st.ListCalls(ctx, f)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(stored) == 0 {
		return nil, nil, 0, fmt.Errorf("no calls to analyze (recorded or imported calls in the store, in the time window)")
	}
	previous := make(map[string]string, len(stored))
	prog := newProgress(progressOut, "reading calls", len(stored))
	calls := make([]discover.Call, 0, len(stored))
	rcalls := make([]report.Call, 0, len(stored))
	for i := range stored {
		c := &stored[i]
		if err := kr.OpenCall(c); err != nil {
			return nil, nil, 0, fmt.Errorf("%w (pass --config with the privacy.encryption keys that sealed it)", err)
		}
		if c.WorkloadID != "" {
			previous[c.ID] = c.WorkloadID
		}
		dc := discover.Call{ID: c.ID, Workload: c.Workload, Fingerprint: c.Fingerprint, Request: c.Request}
		if c.GroundTruth {
			dc.GroundTruth = c.Response
		} else if c.Status < 400 {
			dc.Response = c.Response
		}
		calls = append(calls, dc)
		rc, err := report.FromStoreCall(*c)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("call %s: %w", c.ID, err)
		}
		rcalls = append(rcalls, rc)
		prog.add(1)
	}
	prog.finish()
	stored = nil // the payloads are no longer needed; discovery keeps what it uses

	// Discovery is seeded, but its clustering depends on the order of the calls, and
	// call ids follow arrival order, which concurrent agents shuffle. Ordering by
	// content makes the same calls give the same workloads however they arrived.
	sortByContent(calls)
	res, err = discover.Discover(ctx, calls, opts)
	if err != nil {
		return nil, nil, 0, err
	}
	kept = discover.KeepIDs(res, previous)
	infos := make([]report.Info, len(res.Workloads))
	for i, w := range res.Workloads {
		infos[i] = report.Info{ID: w.ID, Label: w.Label, Terms: w.Terms, Representative: w.Representative}
	}
	rep, err = report.Build(report.Input{Calls: rcalls, Workloads: infos, Assign: res.Assignments,
		Candidates: candidates, Now: time.Now()})
	if err != nil {
		return nil, nil, 0, err
	}
	return res, rep, kept, nil
}

// warnLostPolicies says which workload policies name a workload this analysis did not
// find again: once its workloads are saved, new calls go to the workloads it found, so
// such a policy routes no call until it is set on one of them.
func warnLostPolicies(ctx context.Context, st store.Store, res *discover.Result, w io.Writer) error {
	policies, err := st.CurrentPolicies(ctx)
	if err != nil {
		return err
	}
	found := map[string]bool{}
	for _, wl := range res.Workloads {
		found[wl.ID] = true
	}
	for _, p := range policies {
		if found[p.Workload] || p.Mode == store.ModeObserve {
			continue
		}
		fmt.Fprintf(w, "warning: workload %s has a %s policy (candidate %s), but this analysis did not find it again; "+
			"once saved, its calls go to other workloads. Set the policy on the workload they are in now (downshift shift).\n",
			p.Workload, p.Mode, p.Candidate)
	}
	return nil
}

// configCandidates are the configured models with the candidate role and their prices.
func configCandidates(cfg config.Config) []report.Candidate {
	var out []report.Candidate
	for _, m := range cfg.Models {
		if m.Role != config.RoleCandidate {
			continue
		}
		if c, ok := report.PricedCandidate(m.Name, m.Price); ok {
			out = append(out, c)
		}
	}
	return out
}

// writeReportFiles writes workloads.json and workloads.html into dir.
func writeReportFiles(dir string, rep *report.Report) ([2]string, error) {
	paths := [2]string{filepath.Join(dir, "workloads.json"), filepath.Join(dir, "workloads.html")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return paths, err
	}
	for i, write := range []func(io.Writer, *report.Report) error{report.WriteJSON, report.WriteHTML} {
		f, err := os.Create(paths[i])
		if err != nil {
			return paths, err
		}
		if err := write(f, rep); err != nil {
			f.Close()
			return paths, err
		}
		if err := f.Close(); err != nil {
			return paths, err
		}
	}
	return paths, nil
}

// saveWorkloads stores the workloads, the online assigner's model and the assignment
// of every analysed call.
func saveWorkloads(ctx context.Context, st store.Store, res *discover.Result, rep *report.Report, o analyzeOptions) error {
	ws, err := rep.StoreWorkloads()
	if err != nil {
		return err
	}
	model, err := workload.MarshalModel(res.Model)
	if err != nil {
		return err
	}
	params, err := json.Marshal(map[string]any{"seed": o.seed, "request_only": o.requestOnly, "since": o.since, "until": o.until})
	if err != nil {
		return err
	}
	now := time.Now()
	run := store.WorkloadRun{ID: "run_" + now.UTC().Format("20060102T150405.000000000"), At: now, Params: params, Model: model}
	if err := st.SaveWorkloads(ctx, run, ws); err != nil {
		return err
	}
	return st.AssignWorkloads(ctx, res.Assignments)
}

// sortByContent orders calls by a hash of what discovery reads of them (tag,
// fingerprint, request, answer), then by id for identical ones.
func sortByContent(calls []discover.Call) {
	keys := make(map[string][32]byte, len(calls))
	for i := range calls {
		c := &calls[i]
		h := sha256.New()
		for _, part := range [][]byte{[]byte(c.Workload), []byte(c.Fingerprint), c.Request, c.Response, c.GroundTruth} {
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(len(part)))
			h.Write(n[:])
			h.Write(part)
		}
		var k [32]byte
		h.Sum(k[:0])
		keys[c.ID] = k
	}
	slices.SortFunc(calls, func(a, b discover.Call) int {
		ka, kb := keys[a.ID], keys[b.ID]
		if c := bytes.Compare(ka[:], kb[:]); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
