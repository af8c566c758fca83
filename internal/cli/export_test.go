package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/dataset"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/tune"
)

// exportFixture is a SQLite store holding the first tau-bench conversations, with the
// calls whose reference called get_reservation_details saved as one workload, sealed
// under a key when kr is enabled.
func exportFixture(t *testing.T, kr *seal.Keyring) (db string, workloadID string) {
	t.Helper()
	calls, err := dataset.BundledCalls(dataset.NameTauBench)
	if err != nil {
		t.Fatal(err)
	}
	var imported []store.Call
	im := dataset.Importer{Call: func(c store.Call) error { imported = append(imported, c); return nil }}
	if err := im.TauBench(calls[:400]); err != nil {
		t.Fatal(err)
	}
	workloadID = "wl-reservation-details"
	assign := map[string]string{}
	for i := range imported {
		c := &imported[i]
		if bytes.Contains(c.Response, []byte(`"name":"get_reservation_details"`)) {
			assign[c.ID] = workloadID
		}
		if kr.Enabled() {
			if err := kr.SealCall(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	db = filepath.Join(t.TempDir(), "downshift.db")
	ctx := context.Background()
	st, err := openStore(ctx, "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportCalls(ctx, imported); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveWorkloads(ctx, store.WorkloadRun{ID: "run1", At: time.Now()},
		[]store.Workload{{ID: workloadID, Label: "get_reservation_details", Calls: len(assign)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.AssignWorkloads(ctx, assign); err != nil {
		t.Fatal(err)
	}
	return db, workloadID
}

// runExportCmd runs `downshift export ARGS...` through the root command.
func runExportCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"export"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SilenceUsage, root.SilenceErrors = true, true
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// TestExportWritesFilesManifestAndAudit exports a tau-bench workload by its label:
// the eval set is drawn and saved, the files and manifest agree, the summary names
// them, progress goes to stderr, and the export is in the audit trail.
func TestExportWritesFilesManifestAndAudit(t *testing.T) {
	db, wl := exportFixture(t, nil)
	dir := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err := runExportCmd(t, "--db", db, "--workload", "get_reservation", "--format", "nemo", "--out", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	t.Log("\n" + stdout)
	for _, want := range []string{"drawn and saved", "train.jsonl", "validation.jsonl", "eval.jsonl", "left out:", "manifest: " + filepath.Join(dir, "manifest.json")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if !strings.Contains(stderr, "exporting") {
		t.Errorf("no progress on stderr: %q", stderr)
	}
	raw, err := os.ReadFile(filepath.Join(dir, tune.FileManifest))
	if err != nil {
		t.Fatal(err)
	}
	var m tune.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Workload != wl || m.Format != tune.FormatNeMo || m.EvalSetID == "" || !m.EvalSetDrawn || m.MaxTokens != tune.DefaultMaxTokens {
		t.Errorf("manifest %+v", m)
	}
	for _, f := range m.Files {
		if n, err := countLines(filepath.Join(dir, f.Path)); err != nil || n != f.Lines || len(f.CallIDs) != n {
			t.Errorf("%s: %d lines, %d call ids, manifest says %d lines", f.Path, n, len(f.CallIDs), f.Lines)
		}
		if !strings.Contains(stdout, f.Path) {
			t.Errorf("summary does not list %s", f.Path)
		}
	}
	if m.File(store.SplitTrain).Lines == 0 || m.File(store.SplitTest).Lines == 0 {
		t.Errorf("files %+v: want train and eval lines", m.Files)
	}

	st, err := openStore(context.Background(), "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditExport})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Actor != "cli" || es[0].Target != wl || !strings.Contains(es[0].Detail, "nemo") || !strings.Contains(es[0].Detail, dir) {
		t.Fatalf("audit entries %+v, want one export by cli naming the workload, format and directory", es)
	}

	// Exporting again reuses the saved set, and --max-tokens 0 lifts the budget.
	stdout, _, err = runExportCmd(t, "--db", db, "--workload", wl, "--format", "openai", "--max-tokens", "0", "--out", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, m.EvalSetID+" ") || !strings.Contains(stdout, "reused") {
		t.Errorf("second export does not say it reused %s:\n%s", m.EvalSetID, stdout)
	}
}

// TestExportOpensSealedCallsWithTheConfigKeys: a sealed store exports with --config's
// keys, and without them fails saying which key and how to pass it.
func TestExportOpensSealedCallsWithTheConfigKeys(t *testing.T) {
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOWNSHIFT_TEST_EXPORT_KEY", key)
	kr, err := seal.NewKeyring(config.Encryption{Active: "k1", Keys: []config.EncryptionKey{{ID: "k1", Env: "DOWNSHIFT_TEST_EXPORT_KEY"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, wl := exportFixture(t, kr)
	cfg := filepath.Join(t.TempDir(), "downshift.yaml")
	yaml := fmt.Sprintf("store: {driver: sqlite, dsn: %q}\nprivacy:\n  encryption:\n    active: k1\n    keys:\n      - {id: k1, env: DOWNSHIFT_TEST_EXPORT_KEY}\n", db)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	_, _, err = runExportCmd(t, "--db", db, "--workload", wl, "--out", dir)
	if err == nil || !strings.Contains(err.Error(), `"k1"`) || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("export without the keys: %v, want an error naming key k1 and --config", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed export left %d files", len(entries))
	}

	if _, _, err := runExportCmd(t, "-c", cfg, "--workload", wl, "--out", dir); err != nil {
		t.Fatal(err)
	}
	train, err := os.ReadFile(filepath.Join(dir, tune.FileTrain))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(train, []byte(`"role":"system"`)) || !bytes.Contains(train, []byte("get_reservation_details")) {
		t.Errorf("train.jsonl does not hold the opened calls: %.200s", train)
	}
}

func TestExportRefusesBadFlags(t *testing.T) {
	db, wl := exportFixture(t, nil)
	cases := map[string]struct {
		args []string
		want string
	}{
		"unknown format":   {[]string{"--format", "alpaca"}, `--format "alpaca": want openai, sharegpt, nemo`},
		"negative budget":  {[]string{"--max-tokens", "-1"}, "--max-tokens -1"},
		"unknown workload": {[]string{"--workload", "nothing-like-it"}, `no workload "nothing-like-it"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"--db", db, "--workload", wl, "--out", t.TempDir()}, tc.args...)
			if _, _, err := runExportCmd(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
