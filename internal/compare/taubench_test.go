package compare

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/downshift-dev/downshift/internal/openai"
)

// tauBench is the bundled tau-bench airline data (examples/taubench): the 14 tools of
// the airline domain and GPT-4o's assistant messages that call them.
type tauBench struct {
	tools []openai.Tool
	calls []openai.Message
}

func readTauBench(t testing.TB) tauBench {
	t.Helper()
	dir := filepath.Join("..", "..", "examples", "taubench")
	var tb tauBench
	b, err := os.ReadFile(filepath.Join(dir, "tools_openai.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tb.tools); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "airline.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var records []struct {
		Traj []openai.Message `json:"traj"`
	}
	if err := json.NewDecoder(zr).Decode(&records); err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		for _, m := range r.Traj {
			if m.Role == "assistant" && len(m.ToolCalls) > 0 {
				tb.calls = append(tb.calls, m)
			}
		}
	}
	if len(tb.tools) != 14 || len(tb.calls) == 0 {
		t.Fatalf("%d tools, %d messages with calls", len(tb.tools), len(tb.calls))
	}
	return tb
}

// TestTauBenchCallsAreSchemaValid checks GPT-4o's recorded tau-bench calls against the
// airline tools' schemas, each message scored against itself.
func TestTauBenchCallsAreSchemaValid(t *testing.T) {
	tb := readTauBench(t)
	schemas := NewSchemas(SchemasOptions{})
	calls, valid := 0, 0
	for _, m := range tb.calls {
		s := Answer(&m, &m, Request{Tools: tb.tools, Schemas: schemas})
		calls += s.Tools.Candidate
		valid += s.Tools.SchemaValid
		if !s.Pass {
			t.Errorf("schema-invalid: %+v\n%v", s.Tools, m.ToolCalls)
		}
	}
	if got := schemas.Compiles(); got > int64(len(tb.tools)) {
		t.Errorf("compiled %d schemas for %d tools", got, len(tb.tools))
	}
	t.Logf("%d of %d calls (%d messages) schema-valid; %d schemas compiled", valid, calls, len(tb.calls), schemas.Compiles())
}
