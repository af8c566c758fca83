package arch

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/downshift-dev/downshift"

// hotPath packages serve every request; coldPath packages run the flywheel offline.
var (
	hotPath  = []string{"gateway", "workload", "policy", "guard", "backend", "openai", "record", "redact", "tokens", "auth", "seal", "compare", "telemetry"}
	coldPath = []string{"discover", "eval", "tune", "web", "dataset", "sim", "cli", "report", "ui"}
)

type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-e", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestHotPathImportsNoColdPath(t *testing.T) {
	for _, p := range listPackages(t) {
		if !isIn(p.ImportPath, hotPath) {
			continue
		}
		for _, d := range p.Deps {
			if isIn(d, coldPath) {
				t.Errorf("hot-path package %s depends on cold-path package %s", p.ImportPath, d)
			}
		}
	}
}

func isIn(importPath string, names []string) bool {
	for _, n := range names {
		p := module + "/internal/" + n
		if importPath == p || strings.HasPrefix(importPath, p+"/") {
			return true
		}
	}
	return false
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		fset := token.NewFileSet()
		found := false
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil {
				text := af.Doc.Text()
				want := "Package " + p.Name + " "
				if !strings.HasPrefix(text, want) {
					t.Errorf("%s: doc comment should start with %q", filepath.Join(p.Dir, f), want)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
