package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden dry-run summaries in testdata/")

// python returns the interpreter the tests run train.py with, skipping when there is none.
func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH")
	}
	return p
}

// run runs train.py with args and extra environment; it returns stdout, stderr and the exit code.
func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(python(t), append([]string{"train.py"}, args...)...)
	cmd.Env = append(append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running train.py: %v", err)
	}
	return out.String(), errb.String(), code
}

// summary decodes the one JSON line a dry run prints.
func summary(t *testing.T, stdout string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("dry run printed %d stdout lines, want 1:\n%s", len(lines), stdout)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("dry run summary is not JSON: %v\n%s", err, stdout)
	}
	return m
}

// fakeModules writes importable packages named mods whose __init__.py runs body, and
// returns a PYTHONPATH entry that puts them before any real installation.
func fakeModules(t *testing.T, body string, mods ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range mods {
		if err := os.MkdirAll(filepath.Join(dir, m), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, m, "__init__.py"), []byte(body+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return "PYTHONPATH=" + dir
}

func TestDryRunSummarisesValidDataset(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{"tiny model, exact byte counts", []string{"--tiny-random-llama"}, "ok.tiny.summary.json"},
		{"tiny model, nothing truncated", []string{"--tiny-random-llama", "--max-length", "8192", "--epochs", "3", "--batch-size", "3"}, "ok.tiny-8192.summary.json"},
		{"base model, estimated counts", []string{"--base", "meta-llama/Llama-3.2-1B-Instruct", "--rank", "8", "--alpha", "16"}, "ok.base.summary.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, nil, append([]string{"--dry-run", "--data", "testdata/ok"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
			}
			got := summary(t, stdout)
			if got["ok"] != true {
				t.Errorf("ok = %v, want true", got["ok"])
			}
			deps, isMap := got["dependencies"].(map[string]any)
			if !isMap || len(deps) != 4 {
				t.Errorf("dependencies = %v, want torch, transformers, peft and bitsandbytes", got["dependencies"])
			}
			delete(got, "dependencies") // differs from host to host
			path := filepath.Join("testdata", tt.golden)
			if *update {
				b, err := json.MarshalIndent(got, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			var want map[string]any
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				t.Errorf("summary differs from %s (run with -update if the change is intended):\n%s", path, g)
			}
		})
	}
}

// Each directory in testdata/bad holds a train.jsonl whose second line breaks one rule
// and error.txt, the text the dry run must print for it.
func TestDryRunRejectsInvalidLines(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "bad", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no testdata/bad cases (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, "error.txt"))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSpace(string(b))
			stdout, stderr, code := run(t, nil, "--dry-run", "--tiny-random-llama", "--data", dir)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.Contains(stderr, "error: "+want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
			got := summary(t, stdout)
			if got["ok"] != false || got["error_count"] != 1.0 {
				t.Errorf("ok = %v, error_count = %v; want false, 1", got["ok"], got["error_count"])
			}
			if errs, _ := got["errors"].([]any); len(errs) != 1 || !strings.HasPrefix(errs[0].(string), want) {
				t.Errorf("summary errors = %v, want one starting with %q", got["errors"], want)
			}
		})
	}
}

func TestDryRunRejectsInvalidConfiguration(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"rank zero", []string{"--tiny-random-llama", "--rank", "0"}, "--rank must be at least 1, got 0"},
		{"dropout one", []string{"--tiny-random-llama", "--dropout", "1"}, "--dropout must be in [0, 1), got 1.0"},
		{"learning rate negative", []string{"--tiny-random-llama", "--lr=-1e-4"}, "--lr must be in (0, 1), got -0.0001"},
		{"qlora without a base", []string{"--tiny-random-llama", "--qlora"}, "--qlora needs --base"},
		{"heads do not divide hidden", []string{"--tiny-random-llama", "--tiny-heads", "3"}, "--tiny-hidden 256 must be a multiple of --tiny-heads 3"},
		{"target longer than max length", []string{"--tiny-random-llama", "--max-length", "128", "--too-long", "error"}, "train.jsonl:1: the target alone is over --max-length 128 tokens"},
		{"no model when training", []string{}, "--out is required unless --dry-run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--data", "testdata/ok"}, tt.args...)
			if tt.name != "no model when training" {
				args = append(args, "--dry-run")
			}
			stdout, stderr, code := run(t, nil, args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stdout:\n%s", code, stdout)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
}

// The dry run must work on a host without the training stack: here the stack exists but
// importing any of it ends the process with code 99.
func TestDryRunImportsNoMLLibrary(t *testing.T) {
	env := fakeModules(t, "raise SystemExit(99)", "torch", "transformers", "peft", "bitsandbytes", "tokenizers", "accelerate")
	stdout, stderr, code := run(t, []string{env}, "--dry-run", "--tiny-random-llama", "--data", "testdata/ok")
	if code == 99 {
		t.Fatalf("the dry run imported an ML library; stderr:\n%s", stderr)
	}
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	deps, _ := summary(t, stdout)["dependencies"].(map[string]any)
	if deps["torch"] != true {
		t.Errorf("dependencies = %v, want torch found (the fake one) without importing it", deps)
	}
}

// Training on a host without torch fails with exit code 3 and an error event naming it,
// after validating the data and before touching a model.
func TestTrainingWithoutTorchExitsWithEnvironmentError(t *testing.T) {
	env := fakeModules(t, `raise ImportError("No module named 'torch' (fake)")`, "torch")
	out := t.TempDir()
	stdout, stderr, code := run(t, []string{env}, "--tiny-random-llama", "--data", "testdata/ok", "--out", out)
	if code != 3 {
		t.Fatalf("exit code %d, want 3; stderr:\n%s", code, stderr)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &ev); err != nil {
		t.Fatalf("stdout is not one JSON event: %v\n%s", err, stdout)
	}
	if ev["event"] != "error" || ev["code"] != 3.0 || !strings.Contains(ev["message"].(string), "torch") {
		t.Errorf("event = %v, want an error event with code 3 naming torch", ev)
	}
}
