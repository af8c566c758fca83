package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
)

type shiftOptions struct {
	to, mode, reason       string
	back                   bool
	minAgreement, minGuard float64
	window, minSamples     int
	promoteAfter           int
	verify, shadow         string
	guards                 []string
	expectVersion          int
}

func newShiftCmd() *cobra.Command {
	sf := storeFlags{}
	o := shiftOptions{}
	cmd := &cobra.Command{
		Use:   "shift WORKLOAD (--to MODEL --mode shadow|canary=10%|serve | --back)",
		Short: "Set how a workload's calls are answered: shadow, canary or serve a candidate, or back to the reference",
		Long: `shift saves a new version of a workload's policy, audited: the mode (shadow: the reference
answers and the candidate's answer is compared; canary=N%: the candidate answers N% of calls
behind guards; serve: the candidate answers every call behind guards), the candidate, and
the thresholds under which downshift steps back by itself (agreement and guard pass rate
over a rolling window). --back returns the workload to observe: the reference answers
every call. Policies are versioned, never edited: shift history shows every version, who
saved it and why.

WORKLOAD is a workload id or label prefix (downshift analyze), or a client tag
(X-Downshift-Workload) that recorded calls carry.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShift(cmd.Context(), &sf, args[0], o, time.Now(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&sf.config, "config", "c", "", "YAML config: the store and the models (required)")
	f.StringVar(&o.to, "to", "", "the candidate model (catalog name)")
	f.StringVar(&o.mode, "mode", "", "shadow, canary=N% (or canary=0.1) or serve")
	f.BoolVar(&o.back, "back", false, "return the workload to observe: the reference answers every call")
	f.StringVar(&o.reason, "reason", "", "why, for the audit trail")
	f.Float64Var(&o.minAgreement, "min-agreement", policy.DefaultMinAgreement, "step back when agreement over the window falls below this (0: not checked)")
	f.Float64Var(&o.minGuard, "min-guard-pass", policy.DefaultMinGuardPass, "step back when the guard pass rate over the window falls below this (0: not checked)")
	f.IntVar(&o.window, "window", store.DefaultWindow, "calls in the rolling window")
	f.IntVar(&o.minSamples, "min-samples", 0, "results before thresholds apply (0: the window)")
	f.IntVar(&o.promoteAfter, "promote-after", 0, "step forward by itself after this many calls within thresholds (0: never)")
	f.StringVar(&o.verify, "verify", "", "share of candidate-answered calls also sent to the reference (default 5%)")
	f.StringVar(&o.shadow, "shadow", "", "share of calls shadowed in shadow mode (default 100%)")
	f.StringSliceVar(&o.guards, "guards", nil, "guard checks on the candidate's answers (default all)")
	f.IntVar(&o.expectVersion, "expect-version", 0, "fail unless the current version is this one (0: whatever it is)")
	_ = cmd.MarkFlagRequired("config")
	cmd.AddCommand(newShiftListCmd(), newShiftHistoryCmd())
	return cmd
}

// parseShare reads a share given as "10%", "0.1" or "10" (percent when above 1).
func parseShare(flag, s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a share such as 10%% or 0.1", flag, s)
	}
	if pct || v > 1 {
		v /= 100
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("%s %q: must be between 0 and 100%%", flag, s)
	}
	return v, nil
}

// changeFrom builds the change the flags ask for. The command line replaces the whole
// policy: every field is set, from its flag or the flag's default, so a threshold left
// out is its default rather than the current version's.
func (o shiftOptions) changeFrom() (policy.Change, error) {
	c := policy.Change{MinAgreement: &o.minAgreement, MinGuardPass: &o.minGuard, Window: &o.window,
		MinSamples: &o.minSamples, PromoteAfter: &o.promoteAfter, Guards: &o.guards}
	var verify, shadow, canary float64
	var err error
	if o.verify != "" {
		if verify, err = parseShare("--verify", o.verify); err != nil {
			return c, err
		}
	}
	if o.shadow != "" {
		if shadow, err = parseShare("--shadow", o.shadow); err != nil {
			return c, err
		}
	}
	c.VerifyShare, c.ShadowShare = &verify, &shadow
	switch {
	case o.back && (o.to != "" || o.mode != ""):
		return c, errors.New("--back takes neither --to nor --mode")
	case o.back:
		c.Back = true
		return c, nil
	case o.to == "" || o.mode == "":
		return c, errors.New("say where to: --to MODEL --mode shadow|canary=N%|serve, or --back")
	}
	mode, share, hasShare := strings.Cut(o.mode, "=")
	switch mode {
	case store.ModeShadow, store.ModeServe:
		if hasShare {
			return c, fmt.Errorf("--mode %s takes no share (--shadow sets shadow's)", o.mode)
		}
	case store.ModeCanary:
		if !hasShare {
			return c, errors.New("--mode canary needs a share: canary=10%")
		}
		if canary, err = parseShare("--mode canary", share); err != nil {
			return c, err
		}
	case store.ModeObserve:
		return c, errors.New("--mode observe: use --back")
	default:
		return c, fmt.Errorf("--mode %q: want shadow, canary=N%% or serve", o.mode)
	}
	c.Mode, c.Candidate, c.CanaryShare = &mode, &o.to, &canary
	return c, nil
}

// shiftFlags names the flag that sets each of policy.FieldError's fields.
var shiftFlags = map[string]string{
	"mode": "--mode", "candidate": "--to", "canary_share": "--mode canary", "shadow_share": "--shadow",
	"verify_share": "--verify", "min_agreement": "--min-agreement", "min_guard_pass": "--min-guard-pass",
	"window": "--window", "min_samples": "--min-samples", "promote_after": "--promote-after", "guards": "--guards",
}

func runShift(ctx context.Context, sf *storeFlags, arg string, o shiftOptions, now time.Time, w io.Writer) error {
	cfg, err := config.Load(sf.config, os.Environ())
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	workload, err := shiftWorkload(ctx, st, arg)
	if err != nil {
		return err
	}
	c, err := o.changeFrom()
	if err != nil {
		return err
	}
	history, err := st.PolicyHistory(ctx, workload)
	if err != nil {
		return err
	}
	var cur *store.Policy
	current := 0
	if len(history) > 0 {
		cur, current = &history[0], history[0].Version
	}
	if o.expectVersion != 0 && o.expectVersion != current {
		return fmt.Errorf("workload %s is at version %d, not %d: look at downshift shift history %s first", workload, current, o.expectVersion, workload)
	}
	p, err := policy.Next(cur, workload, c)
	if fe, ok := errors.AsType[*policy.FieldError](err); ok {
		return fmt.Errorf("%s: %s", cmp.Or(shiftFlags[fe.Field], fe.Field), fe.Msg)
	}
	if err != nil {
		return err
	}
	if p.Mode != store.ModeObserve {
		cat, err := catalogFrom(ctx, cfg, st, nil)
		if err != nil {
			return err
		}
		if _, ok := cat.Resolve(p.Candidate); !ok {
			return fmt.Errorf("--to %q is not in the catalog; known: %s", p.Candidate, strings.Join(modelNames(cat), ", "))
		}
	}
	// p.Version is current + 1: a change saved meanwhile makes the save fail rather than be overwritten.
	p.At, p.Reason = now, o.reason
	p.Actor, p.ActorName = cliActor()
	saved, err := st.SavePolicy(ctx, p)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("workload %s's policy changed while this one was being saved (by a person or an automatic rollback): look at downshift shift history %s and try again", workload, workload)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "workload %s: %s\n", workload, store.PolicyAuditDetail(&saved, cur))
	fmt.Fprintf(w, "running gateways apply it within shift.refresh_interval (default 5s); through the admin API (POST /api/policies/%s) it applies at once on the server that saved it\n", workload)
	if saved.Mode != store.ModeObserve {
		fmt.Fprintf(w, "steps back by itself when agreement < %s or guard pass rate < %s over the last %d calls (after %d)\n",
			thresholdText(saved.MinAgreement), thresholdText(saved.MinGuardPass), saved.Window, saved.MinSamples)
	}
	return nil
}

func thresholdText(v float64) string {
	if v == 0 {
		return "(not checked)"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// shiftWorkload resolves what the command names: a discovered workload (id or label
// prefix), else a client tag that recorded calls carry.
func shiftWorkload(ctx context.Context, st store.Store, s string) (string, error) {
	w, err := findWorkload(ctx, st, s)
	if err == nil {
		return w.ID, nil
	}
	n, cerr := st.CountCalls(ctx, store.Filter{Workload: s})
	if cerr != nil {
		return "", cerr
	}
	if n > 0 {
		return s, nil
	}
	return "", fmt.Errorf("%w; nor is %q a tag any recorded call carries", err, s)
}

func newShiftListCmd() *cobra.Command {
	sf := storeFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "The current policy of every workload that has one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			ps, err := st.CurrentPolicies(ctx)
			if err != nil {
				return err
			}
			return writePolicies(cmd.OutOrStdout(), ps, asJSON)
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newShiftHistoryCmd() *cobra.Command {
	sf := storeFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history WORKLOAD",
		Short: "Every version of a workload's policy, newest first, with who saved it and why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			workload, err := shiftWorkload(ctx, st, args[0])
			if err != nil {
				return err
			}
			ps, err := st.PolicyHistory(ctx, workload)
			if err != nil {
				return err
			}
			return writePolicies(cmd.OutOrStdout(), ps, asJSON)
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writePolicies(w io.Writer, ps []store.Policy, asJSON bool) error {
	if asJSON {
		return writeIndentedJSON(w, ps)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tVERSION\tPOLICY\tTHRESHOLDS\tAT\tBY\tREASON")
	for _, p := range ps {
		by := p.Actor
		if p.ActorName != "" {
			by += ":" + p.ActorName
		}
		if p.Automatic {
			by += " (automatic)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\tagreement %s, guards %s, window %d\t%s\t%s\t%s\n", p.Workload, p.Version, p.Describe(),
			thresholdText(p.MinAgreement), thresholdText(p.MinGuardPass), p.Window, p.At.Local().Format(time.DateTime), by, orDash(p.Reason))
	}
	return tw.Flush()
}
