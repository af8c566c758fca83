package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
)

// runKeysEncryption runs `downshift keys encryption ARGS...` and returns its stdout and
// stderr.
func runKeysEncryption(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newKeysEncryptionCmd()
	var stdout, stderr bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}

func TestKeysEncryptionNewWritesAPrivateFileOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.key")
	_, stderr, err := runKeysEncryption(t, "new", "--out", path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, path) {
		t.Errorf("stderr does not say where the key went: %q", stderr)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if key, err := seal.DecodeKey(string(first)); err != nil || len(key) != seal.KeySize {
		t.Fatalf("key file holds %q: %v", first, err)
	}

	if _, _, err := runKeysEncryption(t, "new", "--out", path); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("second new --out the same file = %v, want a refusal", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, first) {
		t.Error("the existing key file was changed")
	}
}

func TestKeysEncryptionNewToStdoutWarns(t *testing.T) {
	stdout, stderr, err := runKeysEncryption(t, "new")
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(stdout))
	if err != nil || len(key) != 32 {
		t.Errorf("stdout %q is not one base64 key of 32 bytes", stdout)
	}
	if !strings.Contains(stderr, "warning") || strings.Contains(stderr, strings.TrimSpace(stdout)) {
		t.Errorf("stderr = %q, want a warning without the key", stderr)
	}
}

// rotateFixture is a SQLite database with calls in plaintext and sealed under older
// keys, and the key files for them.
type rotateFixture struct {
	dir, db string
	keyFile map[string]string // key id -> file
	plain   map[string]store.Call
}

const rotateMarker = "PLAINTEXT-MARKER-c41e"

// newRotateFixture stores n calls for each of keyIDs ("" = plaintext), interleaved in
// id order, each with a distinct marked request and response, and every other one with
// a second answer's marked body.
func newRotateFixture(t *testing.T, n int, keyIDs ...string) *rotateFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &rotateFixture{dir: dir, db: filepath.Join(dir, "downshift.db"), keyFile: map[string]string{}, plain: map[string]store.Call{}}
	for _, id := range []string{"k0", "k1", "k2"} {
		fx.keyFile[id] = filepath.Join(dir, id+".key")
		if _, _, err := runKeysEncryption(t, "new", "--out", fx.keyFile[id]); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite", fx.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var calls []store.Call
	for i := range n * len(keyIDs) {
		keyID := keyIDs[i%len(keyIDs)]
		c := store.Call{
			ID:        fmt.Sprintf("01JROT%020d", i),
			StartedAt: base.Add(time.Duration(i) * time.Second),
			Status:    200,
			Workload:  "airline",
			Request:   fmt.Appendf(nil, `{"messages":[{"role":"user","content":"%s %d %s"}]}`, rotateMarker, i, strings.Repeat("x", 3000)),
			Response:  fmt.Appendf(nil, `{"choices":[{"message":{"content":"%s answer %d"}}]}`, rotateMarker, i),
		}
		if i%2 == 0 {
			c.Second = &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200,
				Response: fmt.Appendf(nil, `{"choices":[{"message":{"content":"%s second answer %d"}}]}`, rotateMarker, i)}
		}
		fx.plain[c.ID] = c
		if keyID != "" {
			if err := fx.keyring(t, keyID).SealCall(&c); err != nil {
				t.Fatal(err)
			}
		}
		calls = append(calls, c)
	}
	if err := st.InsertCalls(ctx, calls); err != nil {
		t.Fatal(err)
	}
	return fx
}

// keyring returns a keyring holding keys, the first one active.
func (fx *rotateFixture) keyring(t *testing.T, keys ...string) *seal.Keyring {
	t.Helper()
	var c config.Encryption
	for _, id := range keys {
		c.Keys = append(c.Keys, config.EncryptionKey{ID: id, File: fx.keyFile[id]})
	}
	c.Active = keys[0]
	k, err := seal.NewKeyring(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// config writes a config file whose active key is active and whose keyring holds keys.
func (fx *rotateFixture) config(t *testing.T, active string, keys ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "store: {driver: sqlite, dsn: %q}\nprivacy:\n  encryption:\n    active: %s\n    keys:\n", fx.db, active)
	for _, id := range keys {
		fmt.Fprintf(&b, "      - {id: %s, file: %q}\n", id, fx.keyFile[id])
	}
	path := filepath.Join(fx.dir, "downshift-"+active+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// check asserts that every call is sealed under key and opens, with that key alone,
// to what was recorded; and that no plaintext is left in the database files.
func (fx *rotateFixture) check(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite", fx.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.CountCalls(ctx, store.Filter{NotSealedUnder: key}); err != nil || n != 0 {
		t.Errorf("%d calls not sealed under %s (%v), want 0", n, key, err)
	}
	calls, err := st.ListCalls(ctx, store.Filter{Limit: 1 << 20, WithPayloads: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != len(fx.plain) {
		t.Fatalf("%d calls stored, want %d", len(calls), len(fx.plain))
	}
	only := fx.keyring(t, key)
	for _, c := range calls {
		if err := only.OpenCall(&c); err != nil {
			t.Fatalf("call %s does not open under %s alone: %v", c.ID, key, err)
		}
		want := fx.plain[c.ID]
		if !bytes.Equal(c.Request, want.Request) || !bytes.Equal(c.Response, want.Response) || c.Workload != want.Workload ||
			!bytes.Equal(c.SecondResponse(), want.SecondResponse()) || (c.Second == nil) != (want.Second == nil) {
			t.Errorf("call %s opened to something else than was recorded", c.ID)
		}
	}
	for _, p := range []string{fx.db, fx.db + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(rotateMarker)) {
			t.Errorf("%s still holds plaintext after rotation", filepath.Base(p))
		}
	}
}

func TestKeysEncryptionRotateReSealsOldAndPlaintextCalls(t *testing.T) {
	fx := newRotateFixture(t, 7, "k1", "", "k1")
	cfg := fx.config(t, "k2", "k1", "k2")

	stdout, stderr, err := runKeysEncryption(t, "rotate", "-c", cfg, "--batch", "4")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, stderr)
	}
	got := rotateTable(stdout)
	for row, want := range map[string]string{"(plaintext)": "7", "k1": "14", "total, now under k2": "21"} {
		if got[row] != want {
			t.Errorf("rotate table row %q = %q, want %s:\n%s", row, got[row], want, stdout)
		}
	}
	if len(got) != 4 {
		t.Errorf("rotate table has %d rows, want header, plaintext, k1, total:\n%s", len(got), stdout)
	}
	if !strings.Contains(stderr, "re-sealing") {
		t.Errorf("no progress on stderr: %q", stderr)
	}
	fx.check(t, "k2")

	stdout, _, err = runKeysEncryption(t, "rotate", "-c", cfg)
	if err != nil || !strings.Contains(stdout, "nothing to re-seal") {
		t.Errorf("second rotate = %q, %v; want nothing to do", stdout, err)
	}
}

// A call under a key the config lacks stops rotation after the calls before it are
// re-sealed; once the key is added, running again finishes the rest and only the rest.
func TestKeysEncryptionRotateResumes(t *testing.T) {
	fx := newRotateFixture(t, 5, "", "k1", "k0")

	_, _, err := runKeysEncryption(t, "rotate", "-c", fx.config(t, "k2", "k1", "k2"), "--batch", "4")
	if err == nil || !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), `"k0"`) {
		t.Fatalf("rotate without k0 = %v, want an error naming key k0", err)
	}
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite", fx.db)
	if err != nil {
		t.Fatal(err)
	}
	done, _ := st.CountCalls(ctx, store.Filter{SealedUnder: "k2"})
	st.Close()
	// Calls 0 and 1 (plaintext, k1) come before the first k0 call.
	if done != 2 {
		t.Errorf("%d calls re-sealed before the unknown key, want 2", done)
	}

	stdout, stderr, err := runKeysEncryption(t, "rotate", "-c", fx.config(t, "k2", "k0", "k1", "k2"), "--batch", "4")
	if err != nil {
		t.Fatalf("rotate with k0: %v\n%s", err, stderr)
	}
	if got := rotateTable(stdout); got["total, now under k2"] != "13" || got["k0"] != "5" {
		t.Errorf("second run re-sealed other than the 13 calls left:\n%s", stdout)
	}
	fx.check(t, "k2")
}

// rotateTable reads rotate's table into row name -> calls re-sealed.
func rotateTable(out string) map[string]string {
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			rows[strings.Join(f[:len(f)-1], " ")] = f[len(f)-1]
		}
	}
	return rows
}

func TestKeysEncryptionRotateRefusesWithoutActiveKeyOrDatabase(t *testing.T) {
	dir := t.TempDir()
	noKeys := filepath.Join(dir, "no-keys.yaml")
	if err := os.WriteFile(noKeys, fmt.Appendf(nil, "store: {dsn: %q}\n", filepath.Join(dir, "x.db")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runKeysEncryption(t, "rotate", "-c", noKeys); err == nil || !strings.Contains(err.Error(), "nothing to rotate to") {
		t.Errorf("rotate without an active key = %v", err)
	}

	fx := &rotateFixture{dir: dir, db: filepath.Join(dir, "missing.db"), keyFile: map[string]string{"k2": filepath.Join(dir, "k2.key")}}
	if _, _, err := runKeysEncryption(t, "new", "--out", fx.keyFile["k2"]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runKeysEncryption(t, "rotate", "-c", fx.config(t, "k2", "k2")); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Errorf("rotate of a missing database = %v", err)
	}
	if _, err := os.Stat(fx.db); !errors.Is(err, fs.ErrNotExist) {
		t.Error("rotate created the missing database")
	}
	if _, _, err := runKeysEncryption(t, "rotate"); err == nil {
		t.Error("rotate without -c: no error")
	}
}
