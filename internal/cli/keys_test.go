package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/downshift-dev/downshift/internal/auth"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// runKeysCLI runs `downshift keys ARGS` and fails the test unless it succeeds exactly
// when wantOK.
func runKeysCLI(t *testing.T, wantOK bool, args ...string) (stdout string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "downshift", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newKeysCmd())
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"keys"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	if (err == nil) != wantOK {
		t.Fatalf("downshift keys %s: err %v, want ok=%v\nstdout:\n%s", strings.Join(args, " "), err, wantOK, out.String())
	}
	return out.String(), err
}

func openTestDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var secretRE = regexp.MustCompile(`ds[ga]_[A-Za-z0-9_-]{43}`)

func TestKeysCreatePrintsASecretThatWorks(t *testing.T) {
	path := testDB(t)
	out, _ := runKeysCLI(t, true, "create", "--db", path, "--kind", "gateway", "--name", "billing agent",
		"--client", "billing", "--models", "gpt-4o, gpt-4o-mini", "--rate", "2.5", "--burst", "5")
	secrets := secretRE.FindAllString(out, -1)
	if len(secrets) != 1 || !strings.HasPrefix(secrets[0], auth.GatewayPrefix) {
		t.Fatalf("create printed %q: want one gateway secret", out)
	}
	if !strings.Contains(out, "shown only now") || !strings.Contains(out, "client=billing") {
		t.Errorf("create output %q does not say what was made and that the secret is shown once", out)
	}
	db := openTestDB(t, path)
	keys := auth.NewKeys(db, auth.Options{})
	if err := keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := keys.Gateway(secrets[0])
	if err != nil || c.ClientID != "billing" || !c.Allows("gpt-4o-mini") || c.Allows("o3") {
		t.Fatalf("the printed secret on the gateway: %v %+v", err, c)
	}
	es, err := db.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Actor != "cli" || es[0].Action != store.AuditCreateKey || es[0].Target != c.KeyID {
		t.Errorf("audit %+v: want one create_key entry by cli for %s", es, c.KeyID)
	}
}

func TestKeysCreateQuietPrintsOnlyTheSecret(t *testing.T) {
	path := testDB(t)
	out, _ := runKeysCLI(t, true, "create", "--db", path, "--kind", "admin", "--role", "admin", "-q")
	if !regexp.MustCompile(`^dsa_[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Errorf("--quiet printed %q, want the admin secret and a newline", out)
	}
	keys := auth.NewKeys(openTestDB(t, path), auth.Options{})
	if err := keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := keys.Admin(strings.TrimSpace(out))
	if err != nil || p.Role != store.RoleAdmin {
		t.Errorf("the secret on the admin API: %v %+v", err, p)
	}
}

func TestKeysCreateAdminDefaultsToViewer(t *testing.T) {
	path := testDB(t)
	runKeysCLI(t, true, "create", "--db", path, "--kind", "admin", "--name", "bob")
	keys, err := openTestDB(t, path).ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Role != store.RoleViewer || keys[0].Name != "bob" {
		t.Errorf("keys %+v: want one viewer key", keys)
	}
}

func TestKeysCreateRejectsBadFlags(t *testing.T) {
	path := testDB(t)
	for name, args := range map[string][]string{
		"no kind":            {},
		"unknown kind":       {"--kind", "root"},
		"unknown role":       {"--kind", "admin", "--role", "owner"},
		"gateway with role":  {"--kind", "gateway", "--role", "admin"},
		"admin with client":  {"--kind", "admin", "--client", "x"},
		"admin with models":  {"--kind", "admin", "--models", "gpt-4o"},
		"negative rate":      {"--kind", "gateway", "--rate", "-1"},
		"burst without rate": {"--kind", "gateway", "--burst", "4"},
		"rate not a number":  {"--kind", "gateway", "--rate", "fast"},
	} {
		t.Run(name, func(t *testing.T) {
			out, _ := runKeysCLI(t, false, append([]string{"create", "--db", path}, args...)...)
			if secretRE.MatchString(out) {
				t.Errorf("a refused create printed a secret: %q", out)
			}
		})
	}
	keys, err := openTestDB(t, path).ListKeys(context.Background())
	if err != nil || len(keys) != 0 {
		t.Errorf("refused creates stored %d keys (%v)", len(keys), err)
	}
}

func TestKeysListShowsNoSecretOrHash(t *testing.T) {
	path := testDB(t)
	gw, _ := runKeysCLI(t, true, "create", "--db", path, "--kind", "gateway", "--name", "agent",
		"--models", "gpt-4o", "--rate", "10", "-q")
	runKeysCLI(t, true, "create", "--db", path, "--kind", "admin", "--role", "admin", "--name", "alice", "-q")
	out, _ := runKeysCLI(t, true, "list", "--db", path)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("list:\n%s\nwant a header and two keys", out)
	}
	for _, want := range [][]string{
		{"agent", "gateway", "-", "agent", "gpt-4o", "10", "-"},
		{"alice", "admin", "admin", "-", "-", "-", "-"},
	} {
		found := false
		for _, l := range lines[1:] {
			if strings.Join(strings.Fields(l)[1:8], " ") == strings.Join(want, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("list:\n%s\nhas no row with %v", out, want)
		}
	}
	if secretRE.MatchString(out) || strings.Contains(out, strings.TrimSpace(gw)) ||
		strings.Contains(out, hex.EncodeToString(auth.Hash(strings.TrimSpace(gw)))[:16]) {
		t.Errorf("list shows a secret or a hash:\n%s", out)
	}
}

func TestKeysRevoke(t *testing.T) {
	path := testDB(t)
	secret, _ := runKeysCLI(t, true, "create", "--db", path, "--kind", "gateway", "-q")
	secret = strings.TrimSpace(secret)
	db := openTestDB(t, path)
	keys, err := db.ListKeys(context.Background())
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	id := keys[0].ID
	out, _ := runKeysCLI(t, true, "revoke", "--db", path, id)
	if !strings.Contains(out, "Revoked key "+id) {
		t.Errorf("revoke printed %q", out)
	}
	ak := auth.NewKeys(db, auth.Options{})
	if err := ak.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ak.Gateway(secret); !errors.Is(err, auth.ErrInvalidKey) {
		t.Errorf("revoked key on the gateway: %v, want ErrInvalidKey", err)
	}
	if _, err := runKeysCLI(t, false, "revoke", "--db", path, "key_nope"); !strings.Contains(err.Error(), `no key with id "key_nope"`) {
		t.Errorf("unknown id: %v", err)
	}
	runKeysCLI(t, false, "revoke", "--db", path)
	list, _ := runKeysCLI(t, true, "list", "--db", path)
	if fields := strings.Fields(strings.Split(list, "\n")[1]); fields[len(fields)-1] == "-" {
		t.Errorf("list does not show the revocation:\n%s", list)
	}
	es, err := db.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditRevokeKey})
	if err != nil || len(es) != 1 || es[0].Target != id || es[0].Actor != "cli" {
		t.Errorf("audit %+v (%v): want one revoke_key entry by cli", es, err)
	}
}

// The first key of a deployment is made before the server ever ran: create makes the
// database; list and revoke, which only read or change keys, need an existing one.
func TestKeysCreateMakesTheDatabaseOthersNeedIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.db")
	for _, args := range [][]string{
		{"list", "--db", missing},
		{"revoke", "--db", missing, "key_x"},
	} {
		if _, err := runKeysCLI(t, false, args...); err == nil || !strings.Contains(err.Error(), "no database") {
			t.Errorf("%v: %v", args, err)
		}
	}
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	if _, err := runKeysCLI(t, true, "create", "--db", fresh, "--kind", "admin", "--role", "admin", "--name", "first"); err != nil {
		t.Fatalf("create on a new database: %v", err)
	}
	list, _ := runKeysCLI(t, true, "list", "--db", fresh)
	if !strings.Contains(list, "first") {
		t.Errorf("list after create:\n%s", list)
	}
}

// noAudit is a key store whose audit trail cannot be written.
type noAudit struct{ *sqlite.DB }

func (noAudit) AppendAudit(context.Context, store.AuditEntry) error { return errors.New("disk full") }

func TestKeysCreateWithoutAuditLeavesNoUsableKey(t *testing.T) {
	db := openTestDB(t, testDB(t))
	var out bytes.Buffer
	err := runKeysCreate(context.Background(), noAudit{db}, store.Key{Kind: store.KeyGateway}, t0, false, &out)
	if err == nil || secretRE.MatchString(out.String()) {
		t.Fatalf("err %v, output %q: want an error and no secret", err, out.String())
	}
	keys, err := db.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Active() {
			t.Errorf("unaudited key %s is active", k.ID)
		}
	}
}
