package dataset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// BundleGSM8KRows is how many GSM8K rows (the first, in upstream order) the bundle keeps.
const BundleGSM8KRows = 300

// DataDir returns where the full datasets live: $DOWNSHIFT_DATA, or ../shared/data.
func DataDir() string {
	if d := os.Getenv("DOWNSHIFT_DATA"); d != "" {
		return d
	}
	return filepath.Join("..", "shared", "data")
}

// Bundle is one file the bundler writes, relative to the examples directory.
type Bundle struct {
	Path string
	Data []byte
}

// MakeBundles converts the upstream datasets under dataDir into the files bundled in
// package examples: all airline trajectories with info reduced to the task, the tools
// list and both LICENSE files verbatim, and the first BundleGSM8KRows GSM8K rows.
// SOURCE.md files are written by hand and not produced here.
func MakeBundles(dataDir string) ([]Bundle, error) {
	tauDir := filepath.Join(dataDir, "tau-bench")
	tau, err := LoadTau(tauDir, "airline")
	if err != nil {
		return nil, err
	}
	for i := range tau.Trajectories {
		tau.Trajectories[i].Info = TauInfo{Task: tau.Trajectories[i].Info.Task}
	}
	var tauGz bytes.Buffer
	if err := WriteTauBundle(&tauGz, tau.Trajectories); err != nil {
		return nil, err
	}

	rows, err := LoadGSM8K(filepath.Join(dataDir, "routellm", "gsm8k", "gsm8k_responses.csv"))
	if err != nil {
		return nil, err
	}
	if len(rows) > BundleGSM8KRows {
		rows = rows[:BundleGSM8KRows]
	}
	var gsmGz bytes.Buffer
	if err := WriteGSM8KBundle(&gsmGz, rows); err != nil {
		return nil, err
	}

	out := []Bundle{
		{BundledTauTrajectories, tauGz.Bytes()},
		{BundledGSM8KRows, gsmGz.Bytes()},
	}
	for _, c := range []struct{ from, to string }{
		{filepath.Join(tauDir, "envs", "airline", "tools_openai.json"), BundledTauTools},
		{filepath.Join(tauDir, "LICENSE"), "taubench/LICENSE"},
		{filepath.Join(dataDir, "routellm", "LICENSE"), "gsm8k/LICENSE"},
	} {
		b, err := os.ReadFile(c.from)
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		out = append(out, Bundle{c.to, b})
	}
	return out, nil
}
