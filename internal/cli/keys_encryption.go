package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
)

// newKeysEncryptionCmd is `downshift keys encryption`: making the keys that seal
// recorded payloads at rest, and re-sealing stored calls under the active one.
func newKeysEncryptionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "encryption",
		Short: "Make encryption keys and re-seal recorded calls under the active one",
		Long: `Recorded requests and responses are sealed with AES-256-GCM under the key
privacy.encryption.active names. Keys are referenced from the config by env var or
file, never inline. To rotate: make a key with "new", add it to privacy.encryption.keys
next to the old ones, make it active, restart serve, then run "rotate" and, once it
reports nothing left, remove the old keys.`,
	}
	cmd.AddCommand(newKeysEncryptionNewCmd(), newKeysEncryptionRotateCmd())
	return cmd
}

func newKeysEncryptionNewCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Make a new random 256-bit key (standard base64)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeysEncryptionNew(out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the key to this new file (mode 0600) instead of standard output; never overwrites")
	return cmd
}

func runKeysEncryptionNew(out string, stdout, stderr io.Writer) error {
	key, err := seal.GenerateKey()
	if err != nil {
		return err
	}
	if out == "" {
		fmt.Fprintln(stderr, "warning: the key is printed to standard output; put it in a secret store or a file only its owner can read, and keep it out of shell history and logs")
		_, err := fmt.Fprintln(stdout, key)
		return err
	}
	if err := writeKeyFile(out, key); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote a new key to %s (mode 0600); reference it in privacy.encryption.keys as {id: NAME, file: %s}\n", out, out)
	return nil
}

// writeKeyFile creates path with mode 0600 and writes key to it. It refuses a path that
// exists: overwriting a key would make every call sealed under it unreadable.
func writeKeyFile(path, key string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting it (calls sealed under the key it holds would become unreadable)", path)
	}
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write key %s: %w", path, cerr)
		}
		if err != nil {
			os.Remove(path) // no half-written key left behind to be mistaken for one
		}
	}()
	if _, err := f.WriteString(key + "\n"); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

// defaultRotateBatch is how many calls one re-sealing transaction holds: large enough
// that a transaction's cost is spread, small enough that an interrupted run loses little.
const defaultRotateBatch = 500

func newKeysEncryptionRotateCmd() *cobra.Command {
	var configPath string
	var batch int
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Re-seal every recorded call not sealed under the active key, plaintext ones included",
		Long: `rotate opens every stored call that is not sealed under privacy.encryption.active
(sealed under an older key, or plaintext) and seals it under the active key, in batches
of one transaction each. It can be stopped and run again: it continues where it was.
Every key that sealed a stored call must be in privacy.encryption.keys while it runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch <= 0 {
				return fmt.Errorf("--batch %d: must be positive", batch)
			}
			cfg, err := config.Load(configPath, os.Environ())
			if err != nil {
				return err
			}
			kr, err := seal.NewKeyring(cfg.Privacy.Encryption, os.Getenv)
			if err != nil {
				return err
			}
			if !kr.Enabled() {
				return fmt.Errorf("%s sets no privacy.encryption.active key: there is nothing to rotate to", configPath)
			}
			if cfg.Store.Driver == "" || cfg.Store.Driver == config.DriverSQLite {
				// Rotating a database that does not exist would create an empty one.
				if _, err := os.Stat(cfg.Store.DSN); errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("no database at %s (store.dsn in %s)", cfg.Store.DSN, configPath)
				}
			}
			st, err := openStore(cmd.Context(), cfg.Store.Driver, cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer st.Close()
			return runKeysEncryptionRotate(cmd.Context(), st, kr, batch, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file with the store and privacy.encryption keys (required)")
	cmd.Flags().IntVar(&batch, "batch", defaultRotateBatch, "calls re-sealed per transaction")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// runKeysEncryptionRotate re-seals every call in st not sealed under kr's active key,
// batch calls per UpdatePayloads, and prints how many it re-sealed from each old key.
// Progress goes to progressOut. A call whose key kr lacks stops the run after the
// calls before it are written; running again after adding the key continues.
func runKeysEncryptionRotate(ctx context.Context, st store.Store, kr *seal.Keyring, batch int, out, progressOut io.Writer) error {
	active := kr.Active()
	left, err := st.CountCalls(ctx, store.Filter{NotSealedUnder: active})
	if err != nil {
		return err
	}
	if left == 0 {
		fmt.Fprintf(out, "every call is sealed under key %q; nothing to re-seal\n", active)
		return nil
	}
	p := newProgress(progressOut, fmt.Sprintf("re-sealing under key %q", active), left)
	resealed := map[string]int{} // by the key id a call was sealed under before ("" = plaintext)
	err = resealAll(ctx, st, kr, batch, resealed, p.add)
	p.finish()
	if werr := writeRotateTable(out, active, resealed); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("%w\nthe calls counted above are re-sealed; run rotate again to continue", err)
	}
	return nil
}

// resealAll pages through the calls not sealed under the active key in id order and
// re-seals them, one UpdatePayloads per page. Paging by id, not by re-reading the
// filter from the start, makes every call be visited once even if it cannot be opened.
func resealAll(ctx context.Context, st store.Store, kr *seal.Keyring, batch int, resealed map[string]int, done func(int)) error {
	f := store.Filter{NotSealedUnder: kr.Active(), Ascending: true, WithPayloads: true, Limit: batch}
	for {
		calls, err := st.ListCalls(ctx, f)
		if err != nil {
			return err
		}
		if len(calls) == 0 {
			return nil
		}
		updates := make([]store.PayloadUpdate, 0, len(calls))
		from := make([]string, 0, len(calls))
		var stop error
		for i := range calls {
			c := &calls[i]
			old := c.KeyID
			if err := kr.OpenCall(c); err != nil {
				stop = err
				break
			}
			if err := kr.SealCall(c); err != nil {
				stop = err
				break
			}
			updates = append(updates, store.PayloadUpdate{ID: c.ID, KeyID: c.KeyID, Request: c.Request, Response: c.Response,
				SecondResponse: c.SecondResponse()})
			from = append(from, old)
		}
		if err := st.UpdatePayloads(ctx, updates); err != nil {
			return err
		}
		for _, k := range from {
			resealed[k]++
		}
		done(len(updates))
		if stop != nil {
			return stop
		}
		f.AfterID = calls[len(calls)-1].ID
	}
}

func writeRotateTable(w io.Writer, active string, resealed map[string]int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEALED UNDER BEFORE\tCALLS RE-SEALED")
	keys := make([]string, 0, len(resealed))
	total := 0
	for k, n := range resealed {
		keys = append(keys, k)
		total += n
	}
	slices.Sort(keys) // "" (plaintext) first
	for _, k := range keys {
		name := k
		if k == "" {
			name = "(plaintext)"
		}
		fmt.Fprintf(tw, "%s\t%d\n", name, resealed[k])
	}
	fmt.Fprintf(tw, "total, now under %s\t%d\n", active, total)
	return tw.Flush()
}
