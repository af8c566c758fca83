package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/report"
	"github.com/downshift-dev/downshift/internal/store"
)

type reportOptions struct {
	since, until string
	workload     string
	asJSON       bool
	out          string
}

func newReportCmd() *cobra.Command {
	sf := storeFlags{}
	o := reportOptions{}
	cmd := &cobra.Command{
		Use:   "report [--since 24h|RFC3339] [--until ...] [--workload W] [--json] [--out DIR]",
		Short: "What shifting saved: per workload and in total, calls moved, escalations, agreement, money saved, latency change",
		Long: `report sums the gateway's recorded calls over a period, per workload and in total: the
calls the candidate answered (moved), the share of the calls it tried to answer that its
guards escalated to the reference, its agreement with the reference where the two answers
were compared (shadow and verification), what was paid (second answers included) against
what the reference alone would have cost, and the change in median latency. Every workload
with a policy has a row, with or without calls. Imported calls are not counted.

A workload is its id (downshift analyze), else the client's tag; calls with neither are
"(none)". Costs are the catalog's prices recorded on each call; a reference cost the
gateway had to estimate (the candidate answered and nobody asked the reference) is marked,
and so are answers downshift sim made up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReport(cmd.Context(), &sf, o, time.Now(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	sf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.since, "since", "", "only calls started at or after this: a duration ago (24h, 30d) or RFC 3339 time (default: all)")
	f.StringVar(&o.until, "until", "", "only calls started before this: a duration ago or RFC 3339 time (default: now)")
	f.StringVar(&o.workload, "workload", "", `only this workload: its id, its client tag, or "(none)"`)
	f.BoolVar(&o.asJSON, "json", false, "print JSON instead of the table")
	f.StringVar(&o.out, "out", "", "also write report.json and report.html (self-contained) into this directory")
	return cmd
}

// filter turns the options into the store's filter; now anchors relative times.
func (o reportOptions) filter(now time.Time) (store.SavingsFilter, error) {
	f := store.SavingsFilter{Workload: o.workload}
	var err error
	if f.Since, err = parseTime("since", o.since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseTime("until", o.until, now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, fmt.Errorf("--since %s is not before --until %s: the period is empty",
			f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	}
	return f, nil
}

func runReport(ctx context.Context, sf *storeFlags, o reportOptions, now time.Time, out, errOut io.Writer) error {
	f, err := o.filter(now)
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := report.Load(ctx, st, f)
	if err != nil {
		return err
	}
	rep.At = now
	if o.asJSON {
		err = report.WriteJSON(out, rep)
	} else {
		err = report.WriteTable(out, rep)
	}
	if err != nil {
		return err
	}
	if o.out == "" {
		return nil
	}
	paths, err := writeSavingsReport(o.out, rep)
	if err != nil {
		return err
	}
	where := out
	if o.asJSON {
		where = errOut // stdout is the JSON
	}
	fmt.Fprintf(where, "\nreport: %s (open in a browser), %s\n", paths[1], paths[0])
	return nil
}

// writeSavingsReport writes report.json and report.html into dir and returns their
// paths.
func writeSavingsReport(dir string, rep report.Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := []string{filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")}
	for i, write := range []func(io.Writer, report.Report) error{report.WriteJSON, report.WriteHTML} {
		f, err := os.Create(paths[i])
		if err != nil {
			return nil, err
		}
		err = write(f, rep)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", paths[i], err)
		}
	}
	return paths, nil
}
