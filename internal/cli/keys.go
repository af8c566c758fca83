package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/store"
)

// newKeysCmd returns `downshift keys` with create, list and revoke. Other key
// commands are added to the returned command with AddCommand; they inherit its
// persistent --db and --config flags.
func newKeysCmd() *cobra.Command {
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke gateway and admin keys",
		Long: `Gateway keys are what agents send as their OpenAI API key; each records its calls
under a client id, and may be limited to some models and to a request rate. Admin keys
open the admin API (/api) with a role: viewer reads calls, admin also manages keys and
reads the audit trail.

Keys are stored hashed: a secret is shown once, when it is created. A running server
picks up new and revoked keys within auth.refresh_interval (default 5s).`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&sf.db, "db", "", "SQLite database file (default: --config's store.dsn, else downshift.db)")
	pf.StringVarP(&sf.config, "config", "c", "", "YAML config file whose store section names the database")
	cmd.AddCommand(newKeysCreateCmd(&sf), newKeysListCmd(&sf), newKeysRevokeCmd(&sf))
	return cmd
}

// keyStore is what the keys commands need of a store.
type keyStore interface {
	store.KeyStore
	store.AuditLog
}

// cliActor is who the audit trail names for the command line: "cli", and the OS user.
func cliActor() (actor, name string) {
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "cli", name
}

func newKeysCreateCmd(sf *storeFlags) *cobra.Command {
	var (
		kind, role, name, client string
		models                   []string
		rate                     float64
		burst                    int
		quiet                    bool
	)
	cmd := &cobra.Command{
		Use:   "create --kind gateway|admin",
		Short: "Create a key and print its secret, once",
		Example: `  downshift keys create --kind admin --role admin --name alice
  downshift keys create --kind gateway --name billing-agent --models gpt-4o,gpt-4o-mini --rate 10 --burst 20
  export OPENAI_API_KEY=$(downshift keys create --kind gateway --name ci --quiet)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k := store.Key{Kind: store.KeyKind(kind), Role: store.Role(role), Name: name, ClientID: client,
				RateLimit: rate, Burst: burst}
			for _, m := range models {
				if m = strings.TrimSpace(m); m != "" {
					k.AllowedModels = append(k.AllowedModels, m)
				}
			}
			if k.Kind == store.KeyAdmin && k.Role == "" {
				k.Role = store.RoleViewer
			}
			if k.Kind == "" {
				return errors.New("--kind is required: gateway (for agents) or admin (for the admin API)")
			}
			st, err := sf.create(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runKeysCreate(cmd.Context(), st, k, time.Now(), quiet, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kind, "kind", "", "gateway (agents' key for /v1) or admin (the admin API)")
	fl.StringVar(&role, "role", "", "admin keys: viewer (reads calls; the default) or admin (also manages keys, reads the audit trail)")
	fl.StringVar(&name, "name", "", "who or what the key is for")
	fl.StringVar(&client, "client", "", "gateway keys: client id recorded on every call (default: the name)")
	fl.StringSliceVar(&models, "models", nil, "gateway keys: the only models the key may ask for, comma-separated (default: any)")
	fl.Float64Var(&rate, "rate", 0, "gateway keys: sustained requests per second (default: no limit)")
	fl.IntVar(&burst, "burst", 0, "gateway keys: requests allowed at once (default: the rate rounded up)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only the secret, for scripts")
	return cmd
}

// runKeysCreate creates a key, audits it, and prints its secret. If the audit entry
// cannot be written, the key is revoked again and its secret is not shown.
func runKeysCreate(ctx context.Context, ks keyStore, k store.Key, now time.Time, quiet bool, w io.Writer) error {
	k, secret, err := auth.NewKey(k, now)
	if err != nil {
		return err
	}
	if err := ks.CreateKey(ctx, k); err != nil {
		return err
	}
	actor, actorName := cliActor()
	err = ks.AppendAudit(ctx, store.AuditEntry{At: now, Actor: actor, ActorName: actorName,
		Action: store.AuditCreateKey, Target: k.ID, Detail: auth.Describe(&k)})
	if err != nil {
		if rerr := ks.RevokeKey(context.WithoutCancel(ctx), k.ID, now); rerr != nil {
			return fmt.Errorf("key %s was created but could not be audited (%w) nor revoked again: revoke it: %w", k.ID, err, rerr)
		}
		return fmt.Errorf("key not created: the audit trail could not be written: %w", err)
	}
	if quiet {
		_, err = fmt.Fprintln(w, secret)
		return err
	}
	_, err = fmt.Fprintf(w, "Created %s (id %s).\nIts secret is shown only now; keep it somewhere safe:\n\n%s\n", auth.Describe(&k), k.ID, secret)
	return err
}

func newKeysListCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List keys, revoked ones included (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runKeysList(cmd.Context(), st, cmd.OutOrStdout())
		},
	}
}

func runKeysList(ctx context.Context, ks store.KeyStore, w io.Writer) error {
	keys, err := ks.ListKeys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tKIND\tROLE\tCLIENT\tMODELS\tRATE/S\tBURST\tCREATED\tLAST USED\tREVOKED")
	day := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02T15:04:05Z")
	}
	for _, k := range keys {
		rate, burst := "-", "-"
		if k.RateLimit > 0 {
			rate = strconv.FormatFloat(k.RateLimit, 'g', -1, 64)
			if k.Burst > 0 {
				burst = strconv.Itoa(k.Burst)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			k.ID, orDash(k.Name), k.Kind, orDash(string(k.Role)), orDash(k.ClientID),
			orDash(strings.Join(k.AllowedModels, ",")), rate, burst,
			day(k.CreatedAt), day(k.LastUsedAt), day(k.RevokedAt))
	}
	return tw.Flush()
}

func newKeysRevokeCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key; a running server refuses it within auth.refresh_interval",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return runKeysRevoke(cmd.Context(), st, args[0], time.Now(), cmd.OutOrStdout())
		},
	}
}

func runKeysRevoke(ctx context.Context, ks keyStore, id string, now time.Time, w io.Writer) error {
	err := ks.RevokeKey(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no key with id %q (see downshift keys list)", id)
	}
	if err != nil {
		return err
	}
	actor, actorName := cliActor()
	if err := ks.AppendAudit(ctx, store.AuditEntry{At: now, Actor: actor, ActorName: actorName,
		Action: store.AuditRevokeKey, Target: id}); err != nil {
		return fmt.Errorf("key %s is revoked, but the audit trail could not be written: %w", id, err)
	}
	_, err = fmt.Fprintf(w, "Revoked key %s. A running server refuses it within auth.refresh_interval (default 5s).\n", id)
	return err
}
