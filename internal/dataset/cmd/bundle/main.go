// Package main (internal/dataset/cmd/bundle) regenerates the dataset subsets bundled in examples/ from the full
// datasets at $DOWNSHIFT_DATA (default ../shared/data). Run it from the module root:
//
//	go run ./internal/dataset/cmd/bundle [-out examples]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/downshift-dev/downshift/internal/dataset"
)

func main() {
	out := flag.String("out", "examples", "examples directory to write into")
	flag.Parse()
	if err := run(dataset.DataDir(), *out); err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
}

func run(dataDir, outDir string) error {
	bundles, err := dataset.MakeBundles(dataDir)
	if err != nil {
		return err
	}
	for _, b := range bundles {
		path := filepath.Join(outDir, filepath.FromSlash(b.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b.Data, 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%d bytes)\n", path, len(b.Data))
	}
	return nil
}
