package dataset

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/downshift-dev/downshift/examples"
)

// Paths of the bundled files inside examples.FS.
const (
	BundledTauTrajectories = "taubench/airline.json.gz"
	BundledTauTools        = "taubench/tools_openai.json"
	BundledGSM8KRows       = "gsm8k/gsm8k.jsonl.gz"
)

// Names of the bundled datasets, as BundledCalls takes them.
const (
	NameTauBench = "taubench"
	NameGSM8K    = "gsm8k"
)

// BundledTau returns the tau-bench airline trajectories bundled in package examples.
func BundledTau() (*Tau, error) {
	fsys := examples.FS()
	tf, err := fsys.Open(BundledTauTrajectories)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer tf.Close()
	toolf, err := fsys.Open(BundledTauTools)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer toolf.Close()
	return ReadTau("airline", tf, toolf)
}

// BundledGSM8K returns the GSM8K rows bundled in package examples.
func BundledGSM8K() ([]GSM8KRow, error) {
	f, err := examples.FS().Open(BundledGSM8KRows)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	return ReadGSM8K(f)
}

// BundledCalls returns the calls of the named bundled datasets (NameTauBench,
// NameGSM8K), in the order named.
func BundledCalls(names ...string) ([]Call, error) {
	var all []Call
	for _, name := range names {
		var calls []Call
		switch strings.TrimSpace(name) {
		case NameTauBench:
			t, err := BundledTau()
			if err != nil {
				return nil, err
			}
			if calls, err = TauCalls(t); err != nil {
				return nil, err
			}
		case NameGSM8K:
			rows, err := BundledGSM8K()
			if err != nil {
				return nil, err
			}
			if calls, err = GSM8KCalls(rows); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("dataset: no bundled dataset %q (have %s, %s)", name, NameTauBench, NameGSM8K)
		}
		all = append(all, calls...)
	}
	return all, nil
}

// WriteTauBundle writes trajectories in the bundled form: a gzip-compressed JSON array
// of tau-bench records whose info keeps only the task. Messages are kept verbatim.
// The output depends only on the input, so a regenerated bundle diffs clean.
func WriteTauBundle(w io.Writer, trajs []TauTrajectory) error {
	return writeGzip(w, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(trajs)
	})
}

// WriteGSM8KBundle writes rows in the bundled form: gzip-compressed JSON lines.
func WriteGSM8KBundle(w io.Writer, rows []GSM8KRow) error {
	return writeGzip(w, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, row := range rows {
			if err := enc.Encode(row); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeGzip(w io.Writer, write func(io.Writer) error) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	if err := write(zw); err != nil {
		return fmt.Errorf("dataset: write bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("dataset: write bundle: %w", err)
	}
	return nil
}
