package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
	"github.com/downshift-dev/downshift/internal/web"
)

// openStore opens the store named by a config's store.driver and store.dsn.
func openStore(ctx context.Context, driver, dsn string) (store.Store, error) {
	switch driver {
	case "", "sqlite":
		db, err := sqlite.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return db, nil
	default:
		return nil, fmt.Errorf("store driver %q is not supported (this build has: sqlite)", driver)
	}
}

// storeFlags are the flags that say which store the calls commands read.
type storeFlags struct {
	db     string
	config string
}

// writeIndentedJSON writes v as indented JSON, for the --json of table commands.
func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// register adds --config (-c) and --db to a command that only reads the store.
func (f *storeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "YAML config naming the store")
	cmd.Flags().StringVar(&f.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db)")
}

// target resolves the store the flags name: --db, else --config's store section, else
// downshift.db.
func (f *storeFlags) target() (driver, dsn string, err error) {
	driver, dsn = "sqlite", "downshift.db"
	switch {
	case f.db != "":
		dsn = f.db
	case f.config != "":
		cfg, err := config.Load(f.config, os.Environ())
		if err != nil {
			return "", "", err
		}
		driver, dsn = cfg.Store.Driver, cfg.Store.DSN
	}
	return driver, dsn, nil
}

// open opens the store the flags name. It refuses to create a SQLite file that does
// not exist, since a command that only reads would otherwise leave an empty database
// behind.
func (f *storeFlags) open(ctx context.Context) (store.Store, error) {
	driver, dsn, err := f.target()
	if err != nil {
		return nil, err
	}
	if driver == "" || driver == "sqlite" {
		if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s (set --db, or --config with store.dsn)", dsn)
		}
	}
	return openStore(ctx, driver, dsn)
}

// create opens the store the flags name, creating it when it does not exist yet (the
// first key of a new deployment is made before the server has ever run).
func (f *storeFlags) create(ctx context.Context) (store.Store, error) {
	driver, dsn, err := f.target()
	if err != nil {
		return nil, err
	}
	return openStore(ctx, driver, dsn)
}

// filterFlags are the flags that select calls.
type filterFlags struct {
	workload, model, status, since, until string
	limit                                 int
}

func (f *filterFlags) register(cmd *cobra.Command, limit int, withUntil bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.workload, "workload", "", "only calls of this workload")
	fl.StringVar(&f.model, "model", "", "only calls that asked for or were served by this model")
	fl.StringVar(&f.status, "status", "", "only calls with this status: ok, error, or an HTTP code")
	fl.StringVar(&f.since, "since", "", "only calls started at or after this: a duration ago (1h) or RFC 3339 time")
	if withUntil {
		fl.StringVar(&f.until, "until", "", "only calls started before this: a duration ago (10m) or RFC 3339 time")
	}
	fl.IntVar(&f.limit, "limit", limit, "most calls to show")
}

// filter turns the flags into a store.Filter; now anchors relative times.
func (f *filterFlags) filter(now time.Time) (store.Filter, error) {
	out := store.Filter{Workload: f.workload, Model: f.model, Limit: f.limit}
	if f.limit < 0 {
		return out, fmt.Errorf("--limit %d: must not be negative", f.limit)
	}
	var err error
	if out.Status, err = parseStatus(f.status); err != nil {
		return out, err
	}
	if out.Since, err = parseTime("since", f.since, now); err != nil {
		return out, err
	}
	if out.Until, err = parseTime("until", f.until, now); err != nil {
		return out, err
	}
	return out, nil
}

func parseStatus(s string) (int, error) {
	switch strings.ToLower(s) {
	case "":
		return 0, nil
	case "ok":
		return store.StatusOK, nil
	case "error":
		return store.StatusError, nil
	}
	code, err := strconv.Atoi(s)
	if err != nil || code < 100 || code > 599 {
		return 0, fmt.Errorf("--status %q: want ok, error or an HTTP status code", s)
	}
	return code, nil
}

// parseTime reads a duration before now ("90m") or an RFC 3339 time.
// parseAgo parses a Go duration, or a whole number of days ("30d").
func parseAgo(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func parseTime(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := parseAgo(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--%s %q: a duration ago must not be negative", flag, s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want a duration ago (1h, 30d) or an RFC 3339 time (2025-06-01T12:00:00Z)", flag, s)
	}
	return t, nil
}

func newCallsCmd() *cobra.Command {
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "calls",
		Short: "List, show and follow recorded calls",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&sf.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db)")
	pf.StringVarP(&sf.config, "config", "c", "", "YAML config file whose store section names the database")
	cmd.AddCommand(newCallsListCmd(&sf), newCallsShowCmd(&sf), newCallsFollowCmd(&sf))
	return cmd
}

func newCallsListCmd(sf *storeFlags) *cobra.Command {
	var ff filterFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recorded calls, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			st, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runCallsList(cmd.Context(), st, f, asJSON, cmd.OutOrStdout())
		},
	}
	ff.register(cmd, 100, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line instead of a table")
	return cmd
}

func runCallsList(ctx context.Context, st store.Store, f store.Filter, asJSON bool, w io.Writer) error {
	if f.Limit == 0 {
		return nil
	}
	calls, err := st.ListCalls(ctx, f)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSONLines(w, calls)
	}
	tw := newCallTable(w)
	for _, c := range calls {
		writeCallRow(tw, c)
	}
	return tw.Flush()
}

func newCallsShowCmd(sf *storeFlags) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Print one call, with its request and response, as JSON (needs an admin key; audited)",
		Long: `show prints one recorded call with its payloads. Reading payloads takes an admin key
(viewer or admin role), from --key or $DOWNSHIFT_KEY, and is written to the audit trail
under that key. Payloads sealed at rest are opened with the keys in --config's
privacy.encryption section.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				key = os.Getenv("DOWNSHIFT_KEY")
			}
			st, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			kr, err := sf.keyring()
			if err != nil {
				return err
			}
			return runCallsShow(cmd.Context(), st, kr, key, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "admin key (viewer or admin) to read payloads with (default $DOWNSHIFT_KEY)")
	return cmd
}

// keyring loads the encryption keys of --config, if any, to open sealed payloads.
func (f *storeFlags) keyring() (*seal.Keyring, error) {
	if f.config == "" {
		return &seal.Keyring{}, nil
	}
	cfg, err := config.Load(f.config, os.Environ())
	if err != nil {
		return nil, err
	}
	return seal.NewKeyring(cfg.Privacy.Encryption, os.Getenv)
}

// runCallsShow prints one call after checking the reader's admin key against the
// store and writing the read to the audit trail; nothing is printed if either fails.
func runCallsShow(ctx context.Context, st store.Store, kr *seal.Keyring, key, id string, w io.Writer) error {
	keys := auth.NewKeys(st, auth.Options{})
	if err := keys.Refresh(ctx); err != nil {
		return err
	}
	p, err := keys.Admin(key)
	switch {
	case errors.Is(err, auth.ErrMissingKey):
		return errors.New("reading payloads needs an admin key: pass --key or set DOWNSHIFT_KEY (make one with `downshift keys create --kind admin`)")
	case err != nil:
		return errors.New("the key is not a valid admin key")
	}
	c, err := st.GetCall(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no call with id %q", id)
	}
	if err != nil {
		return err
	}
	if err := kr.OpenCall(&c); err != nil {
		return fmt.Errorf("%w (pass --config with the privacy.encryption keys that sealed it)", err)
	}
	_, osUser := cliActor()
	if err := st.AppendAudit(ctx, store.AuditEntry{At: time.Now(), Actor: p.KeyID, ActorName: p.Name,
		Action: store.AuditReadPayload, Target: id, Detail: "downshift calls show", Remote: "cli:" + osUser}); err != nil {
		return fmt.Errorf("writing the audit trail: %w", err)
	}
	b, err := json.MarshalIndent(web.NewCallView(&c), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func newCallsFollowCmd(sf *storeFlags) *cobra.Command {
	var ff filterFlags
	var asJSON bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "follow",
		Short: "Print the latest calls, then new calls as they are recorded, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			if interval <= 0 {
				return fmt.Errorf("--interval %v: must be positive", interval)
			}
			st, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runCallsFollow(cmd.Context(), st, f, interval, asJSON, cmd.OutOrStdout())
		},
	}
	ff.register(cmd, 10, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line instead of a table")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to look for new calls")
	return cmd
}

// followPage is how many new calls one poll reads at a time.
const followPage = 500

// runCallsFollow prints the f.Limit latest calls matching f, oldest first, then every
// new one as it appears, until ctx ends (which is not an error).
func runCallsFollow(ctx context.Context, st store.Store, f store.Filter, interval time.Duration, asJSON bool, w io.Writer) error {
	// Start from the newest call, shown or not, so that only new calls follow.
	backlog := f
	backlog.Limit = max(f.Limit, 1)
	backlog.Ascending = false
	calls, err := st.ListCalls(ctx, backlog)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	var after string
	if len(calls) > 0 {
		after = calls[0].ID
	}
	calls = calls[:min(len(calls), f.Limit)]
	slices.Reverse(calls)

	var tw *tabwriter.Writer
	show := func(calls []store.Call) error {
		if asJSON {
			return writeJSONLines(w, calls)
		}
		if tw == nil {
			tw = newCallTable(w)
		}
		for _, c := range calls {
			writeCallRow(tw, c)
		}
		return tw.Flush()
	}
	if err := show(calls); err != nil {
		return err
	}

	next := f
	next.Ascending = true
	next.Limit = followPage
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for {
			next.AfterID = after
			calls, err := st.ListCalls(ctx, next)
			if err != nil {
				return ignoreCanceled(ctx, err)
			}
			if len(calls) == 0 {
				break
			}
			if err := show(calls); err != nil {
				return err
			}
			after = calls[len(calls)-1].ID
			if len(calls) < followPage {
				break
			}
		}
	}
}

// ignoreCanceled turns an error caused by the end of ctx into nil: following ends there.
func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func newCallTable(w io.Writer) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tWORKLOAD\tMODEL\tSTATUS\tTOKENS IN/OUT\tLATENCY MS\tCOST $")
	return tw
}

func writeCallRow(w io.Writer, c store.Call) {
	model := c.RequestedModel
	if c.ServedModel != "" && c.ServedModel != c.RequestedModel {
		model += "→" + c.ServedModel
	}
	tokens := fmt.Sprintf("%d/%d", c.PromptTokens, c.CompletionTokens)
	if c.TokensEstimated {
		tokens = "~" + tokens
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%.6f\n",
		c.ID, c.StartedAt.UTC().Format("2006-01-02T15:04:05Z"), orDash(cmp.Or(c.Workload, c.WorkloadID)), orDash(model),
		c.Status, tokens, c.Latency.Milliseconds(), c.CostUSD)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSONLines(w io.Writer, calls []store.Call) error {
	enc := json.NewEncoder(w)
	for _, c := range calls {
		if err := enc.Encode(web.NewCallView(&c)); err != nil {
			return err
		}
	}
	return nil
}
