// Package examples carries small converted subsets of real public datasets so that the
// demo, the simulator and the tests run from a fresh clone, without $DOWNSHIFT_DATA:
//
//	taubench/airline.json.gz   tau-bench GPT-4o airline trajectories (MIT)
//	taubench/tools_openai.json the airline agent's tools list
//	gsm8k/gsm8k.jsonl.gz       GSM8K questions with GPT-4 and Mixtral answers (Apache-2.0)
//
// Each folder has the upstream LICENSE and a SOURCE.md saying where the data came from
// and how it was converted. It holds data only; package dataset parses it.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed taubench/airline.json.gz taubench/tools_openai.json gsm8k/gsm8k.jsonl.gz
var files embed.FS

// FS returns the bundled files, read-only, at the paths listed in the package doc.
func FS() fs.FS { return files }
