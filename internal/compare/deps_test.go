package compare

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoColdPathPackage keeps the package usable on the gateway's hot path
// (shadow traffic): none of its dependencies may be a cold-path package.
func TestImportsNoColdPathPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	const mod = "github.com/downshift-dev/downshift/internal/"
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, mod)
		if !ok {
			continue
		}
		top, _, _ := strings.Cut(rest, "/")
		switch top {
		case "discover", "eval", "tune", "web", "dataset", "sim", "cli":
			t.Errorf("compare depends on cold-path package %s", dep)
		}
	}
}
