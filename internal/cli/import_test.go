package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// seededEmail must never reach the database file: redaction replaces it on import.
const seededEmail = "jane.doe@example.org"

const importReq = `{"model":"gpt-4o","messages":[{"role":"system","content":"You route tickets."},{"role":"user","content":"I am ` + seededEmail + `, charged twice"}]}`
const importResp = `{"id":"chatcmpl-1","object":"chat.completion","created":1717000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"billing"},"finish_reason":"stop"}]}`

const importTraj = `[{"task_id": 1, "trial": 0, "reward": 1.0, "info": {"task": {"user_id": "u1", "instruction": "fly", "actions": [], "outputs": []}},
 "traj": [
  {"role": "system", "content": "policy"},
  {"role": "user", "content": "hi, I am ` + seededEmail + `"},
  {"content": null, "role": "assistant", "tool_calls": [{"function": {"arguments": "{\"user_id\":\"u1\"}", "name": "get_user_details"}, "id": "call_A", "type": "function"}]},
  {"role": "tool", "tool_call_id": "call_A", "name": "get_user_details", "content": "{\"email\": \"` + seededEmail + `\"}"},
  {"content": "Found you.", "role": "assistant"}
 ]}]`

const importTools = `[{"type": "function", "function": {"name": "get_user_details", "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}}}}]`

// importFixtures writes one small file (plus companions) per format and returns the
// FILE argument of each, with how many calls it holds and how many bad records.
func importFixtures(t *testing.T) map[string]struct {
	file      string
	calls     int
	bad       int
	extraArgs []string
} {
	t.Helper()
	dir := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pair := `{"request": ` + importReq + `, "response": ` + importResp + `}`
	other := strings.Replace(pair, "charged twice", "charged thrice", 1)
	openaiFile := write("openai.jsonl", pair+"\n"+`{"request": 1}`+"\n\n"+other+"\n")
	fly := func(ts string) string {
		return `{"timestamp": ` + ts + `, "workload_id": "route", "client_id": "a1", "request": ` + importReq + `, "response": ` + importResp + `}`
	}
	flywheelFile := write("flywheel.jsonl", fly("1715854074")+"\n"+fly(`"2025-01-01T00:00:00Z"`)+"\n"+fly(`"soon"`)+"\n")
	tauFile := write("tau-bench/historical_trajectories/gpt-4o-airline.json", importTraj)
	write("tau-bench/envs/airline/tools_openai.json", importTools)
	q := `{"id": "simple_python_0", "question": [[{"role": "user", "content": "Mail ` + seededEmail + ` the area of a triangle, base 10, height 5."}]], "function": [{"name": "geo.area", "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "integer"}}, "required": ["base", "height"]}}]}`
	a := `{"id": "simple_python_0", "ground_truth": [{"geo.area": {"base": [10], "height": [5]}}]}`
	bfclFile := write("bfcl/BFCL_v4_simple_python.json", q+"\n"+strings.Replace(q, "simple_python_0", "simple_python_1", 1)+"\n")
	write("bfcl/possible_answer/BFCL_v4_simple_python.json", a+"\n"+strings.Replace(a, "simple_python_0", "simple_python_1", 1)+"\n")
	return map[string]struct {
		file      string
		calls     int
		bad       int
		extraArgs []string
	}{
		"openai":   {openaiFile, 2, 1, nil},
		"flywheel": {flywheelFile, 2, 1, nil},
		"taubench": {tauFile, 2, 0, nil},
		"bfcl":     {bfclFile, 2, 0, nil},
	}
}

// importRow returns the numbers of the import table's one row.
func importRow(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SOURCE") {
		t.Fatalf("import table:\n%s", out)
	}
	return strings.Fields(lines[1])
}

func TestImportEachFormatTwiceAddsNothing(t *testing.T) {
	fixtures := importFixtures(t)
	for _, format := range []string{"openai", "flywheel", "taubench", "bfcl"} {
		t.Run(format, func(t *testing.T) {
			fx := fixtures[format]
			db := filepath.Join(t.TempDir(), "import.db")
			args := append([]string{"import", format, fx.file, "--db", db}, fx.extraArgs...)
			out, stderr := run(t, 0, args...)
			read := fx.calls + fx.bad
			want := []string{importFormats[format], itoa(read), itoa(fx.calls), "0", itoa(fx.bad), itoa(fx.calls)}
			if got := importRow(t, out); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("first import: %v, want %v\n%s", got, want, stderr)
			}
			if fx.bad > 0 && !strings.Contains(stderr, "skipped: line ") {
				t.Errorf("bad records not reported by line:\n%s", stderr)
			}
			if !strings.Contains(stderr, "no --config") {
				t.Errorf("no warning about the default privacy:\n%s", stderr)
			}

			out, _ = run(t, 0, args...)
			want = []string{importFormats[format], itoa(read), "0", itoa(fx.calls), itoa(fx.bad), itoa(fx.calls)}
			if got := importRow(t, out); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("second import: %v, want %v", got, want)
			}

			calls := importedCalls(t, db)
			if len(calls) != fx.calls {
				t.Fatalf("%d calls stored, want %d", len(calls), fx.calls)
			}
			for _, c := range calls {
				if c.Source != importFormats[format] || c.Status != 200 || c.Fingerprint == "" || c.PromptTokens == 0 {
					t.Errorf("stored call %+v", c)
				}
				if c.GroundTruth != (format == "bfcl") {
					t.Errorf("GroundTruth = %t for %s", c.GroundTruth, format)
				}
				if !json.Valid(c.Request) || !json.Valid(c.Response) {
					t.Errorf("payloads are not JSON: %s / %s", c.Request, c.Response)
				}
			}
		})
	}
}

func importedCalls(t *testing.T, path string) []store.Call {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	calls, err := db.ListCalls(context.Background(), store.Filter{WithPayloads: true, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestImportRedactsBeforeWriting(t *testing.T) {
	fixtures := importFixtures(t)
	db := filepath.Join(t.TempDir(), "import.db")
	for _, format := range []string{"openai", "flywheel", "taubench", "bfcl"} {
		run(t, 0, "import", format, fixtures[format].file, "--db", db)
	}
	calls := importedCalls(t, db)
	if len(calls) != 8 {
		t.Fatalf("%d calls stored, want 8", len(calls))
	}
	for _, c := range calls {
		if c.Redactions["EMAIL"] == 0 {
			t.Errorf("call %s (%s): redactions %v, want the e-mail counted", c.ID, c.Source, c.Redactions)
		}
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(db + suffix)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(seededEmail)) {
			t.Errorf("%s holds the seeded e-mail", filepath.Base(db+suffix))
		}
	}
}

func TestImportWithConfigSealsPayloads(t *testing.T) {
	fixtures := importFixtures(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k1.key")
	run(t, 0, "keys", "encryption", "new", "--out", keyFile)
	db := filepath.Join(dir, "sealed.db")
	cfg := filepath.Join(dir, "downshift.yaml")
	yaml := "store: {driver: sqlite, dsn: " + db + "}\n" +
		"privacy:\n  redact: true\n  encryption:\n    active: k1\n    keys:\n      - {id: k1, file: " + keyFile + "}\n" +
		"backends:\n  - {name: local, url: http://127.0.0.1:8000/v1}\n" +
		"models:\n  - {name: m, backend: local, role: candidate}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr := run(t, 0, "import", "openai", fixtures["openai"].file, "-c", cfg)
	if strings.Contains(stderr, "no --config") {
		t.Errorf("warned about default privacy with a config:\n%s", stderr)
	}
	calls := importedCalls(t, db)
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	for _, c := range calls {
		if c.KeyID != "k1" || json.Valid(c.Request) || bytes.Contains(c.Request, []byte("route tickets")) {
			t.Errorf("call %s: key %q, request %q: want sealed under k1", c.ID, c.KeyID, c.Request)
		}
	}
}

func TestImportStrictWritesNothing(t *testing.T) {
	fixtures := importFixtures(t)
	db := filepath.Join(t.TempDir(), "strict.db")
	_, stderr := run(t, 1, "import", "openai", fixtures["openai"].file, "--db", db, "--strict")
	if !strings.Contains(stderr, "line 2") || !strings.Contains(stderr, "nothing imported (--strict)") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if _, err := os.Stat(db); err == nil {
		if n := len(importedCalls(t, db)); n != 0 {
			t.Errorf("%d calls stored under --strict, want 0", n)
		}
	}
	// A file with no bad record imports as usual under --strict.
	run(t, 0, "import", "taubench", fixtures["taubench"].file, "--db", db, "--strict")
	if n := len(importedCalls(t, db)); n != 2 {
		t.Errorf("%d calls stored, want 2", n)
	}
}

func TestImportRefusesWhatItCannotRead(t *testing.T) {
	fixtures := importFixtures(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	multi := filepath.Join(dir, "BFCL_v4_multi_turn_base.json")
	if err := os.WriteFile(multi, []byte(`{"id": "multi_turn_base_0", "question": [[]]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	oddName := filepath.Join(dir, "trajectories.json")
	if err := os.WriteFile(oddName, []byte(importTraj), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"import", "csv", fixtures["openai"].file, "--db", db}, `unknown format "csv"`},
		{[]string{"import", "openai", filepath.Join(dir, "missing.jsonl"), "--db", db}, "no such file"},
		{[]string{"import", "bfcl", multi, "--db", db}, "multi_turn_base questions run against BFCL's executable environment"},
		{[]string{"import", "taubench", oddName, "--db", db}, "pass --category"},
		{[]string{"import", "taubench", oddName, "--db", db, "--category", "airline"}, "pass --tools"},
	}
	for _, tt := range tests {
		_, stderr := run(t, 1, tt.args...)
		if !strings.Contains(stderr, tt.want) {
			t.Errorf("downshift %s: stderr %q, want %q", strings.Join(tt.args, " "), stderr, tt.want)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("a refused import created the database")
	}
}

func TestImportRealData(t *testing.T) {
	dir := os.Getenv("DOWNSHIFT_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("full datasets not found at %s (set DOWNSHIFT_DATA): %v", dir, err)
	}
	db := filepath.Join(t.TempDir(), "real.db")
	tests := []struct {
		format, file string
		calls        int
	}{
		{"taubench", filepath.Join(dir, "tau-bench", "historical_trajectories", "gpt-4o-airline.json"), 2454},
		{"bfcl", filepath.Join(dir, "bfcl", "BFCL_v4_simple_python.json"), 400},
	}
	for _, tt := range tests {
		out, _ := run(t, 0, "import", tt.format, tt.file, "--db", db)
		n := itoa(tt.calls)
		if got := strings.Join(importRow(t, out), " "); got != strings.Join([]string{importFormats[tt.format], n, n, "0", "0", n}, " ") {
			t.Errorf("%s: %s", tt.format, got)
		}
		out, _ = run(t, 0, "import", tt.format, tt.file, "--db", db)
		if got := strings.Join(importRow(t, out), " "); got != strings.Join([]string{importFormats[tt.format], n, "0", n, "0", n}, " ") {
			t.Errorf("%s again: %s", tt.format, got)
		}
		t.Logf("%s: %d calls imported, then 0", tt.format, tt.calls)
	}
}
