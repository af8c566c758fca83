package tune

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/sqlite"
)

// Drivers start goroutines (readers of a training process, its waiter) that must
// all end with the job.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The API key the tests' fake services expect; it must never reach the store or a log.
const testKey = "sk-test-Zq7Vx9Lm2Np4Rs6Tu8Wy"

// trainStore returns a new SQLite store, closed when the test ends.
func trainStore(t *testing.T) store.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tune.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// trainData writes an export directory with a training and a validation file.
func trainData(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	train := `{"messages":[{"role":"user","content":"refund order 7"},{"role":"assistant","content":"Done — refunded ✓"}]}` + "\n" +
		`{"messages":[{"role":"user","content":"where is order 9"},{"role":"assistant","content":"In transit."}]}` + "\n"
	val := `{"messages":[{"role":"user","content":"cancel order 3"},{"role":"assistant","content":"Cancelled."}]}` + "\n"
	for name, content := range map[string]string{exportTrain: train, exportValidation: val, "manifest.json": "{}\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newJob stores a submitted job for trainer and returns it with the Job to run.
func newJob(t *testing.T, st store.Store, trainer, base string) (store.TuneJob, Job) {
	t.Helper()
	name := strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	h := fnv.New32a()
	h.Write([]byte(name))
	id := fmt.Sprintf("tj-%.24s-%08x", strings.TrimPrefix(name, "test"), h.Sum32())
	j := store.TuneJob{ID: id, Workload: "wl-billing", Base: base, Trainer: trainer,
		Status: store.TuneSubmitted, CreatedAt: time.Now()}
	if err := st.CreateTuneJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j, Job{ID: id, Workload: j.Workload, Base: base, DataDir: trainData(t), OutDir: filepath.Join(t.TempDir(), "out")}
}

// logText returns the job's whole log, one line each.
func logText(t *testing.T, st store.Store, id string) string {
	t.Helper()
	lines, err := st.TuneLog(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// syncBuffer is a log destination safe for the goroutines that write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// capture returns a logger that writes to the returned buffer.
func capture() (*slog.Logger, *syncBuffer) {
	var buf syncBuffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// assertNoSecret fails if the key appears in the stored job, its log or logged text.
func assertNoSecret(t *testing.T, st store.Store, id string, logged ...string) {
	t.Helper()
	j, err := st.GetTuneJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{
		"job error": j.Error, "job metrics": string(j.Metrics), "job dataset": string(j.Dataset),
		"job log": logText(t, st, id), "logger": strings.Join(logged, "\n"),
	} {
		if strings.Contains(s, testKey) || strings.Contains(s, testKey[8:]) {
			t.Errorf("the API key leaked into the %s: %q", what, s)
		}
	}
}

// testClient is an HTTP client of the test's own, whose idle connections are closed
// when the test ends (goleak counts their goroutines otherwise).
func testClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// fastRetry retries at once, so that tests of 429 and 5xx take no time.
var fastRetry = Retry{MaxAttempts: 4, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

// fastRun polls every millisecond.
var fastRun = RunOptions{PollInterval: time.Millisecond, MaxBackoff: 5 * time.Millisecond, StopTimeout: 10 * time.Second}

func TestNewTrainerBuildsEachKindFromConfig(t *testing.T) {
	getenv := func(name string) string {
		if name == "FT_KEY" {
			return testKey
		}
		return ""
	}
	tests := []struct {
		cfg      config.Trainer
		want     string // the driver's type
		interval time.Duration
		hyper    config.Hyperparameters // for overrides {Rank: 4}
	}{
		{
			cfg:  config.Trainer{Name: "gpu", Kind: config.TrainerPEFT, Hyperparameters: config.Hyperparameters{Epochs: 2}},
			want: "*tune.PEFT", interval: DefaultLocalPollInterval,
			hyper: config.Hyperparameters{Rank: 4, Alpha: 32, Epochs: 2, LearningRate: 2e-4, BatchSize: 8, MaxLength: 2048},
		},
		{
			cfg:  config.Trainer{Name: "oa", Kind: config.TrainerOpenAIFT, BaseURL: "http://x/v1", APIKeyEnv: "FT_KEY", PollInterval: time.Minute},
			want: "*tune.OpenAIFT", interval: time.Minute,
			hyper: config.Hyperparameters{}, // rank is not the API's; the rest is left to the service
		},
		{
			cfg: config.Trainer{Name: "nm", Kind: config.TrainerNeMo, BaseURL: "http://x",
				Hyperparameters: config.Hyperparameters{LearningRate: 1e-4}},
			want: "*tune.NeMo", interval: DefaultRemotePollInterval,
			hyper: config.Hyperparameters{Rank: 4, Alpha: 32, Epochs: 3, LearningRate: 1e-4, BatchSize: 8},
		},
	}
	for _, tt := range tests {
		tr, err := NewTrainer(tt.cfg, TrainerOptions{Getenv: getenv})
		if err != nil {
			t.Fatalf("%s: %v", tt.cfg.Name, err)
		}
		if got := typeName(tr); got != tt.want || tr.Name() != tt.cfg.Name {
			t.Errorf("%s: NewTrainer = %s named %q, want %s", tt.cfg.Name, got, tr.Name(), tt.want)
		}
		if got := PollInterval(tr); got != tt.interval {
			t.Errorf("%s: PollInterval = %v, want %v", tt.cfg.Name, got, tt.interval)
		}
		if got := Hyperparameters(tr, config.Hyperparameters{Rank: 4}); got != tt.hyper {
			t.Errorf("%s: Hyperparameters = %+v, want %+v", tt.cfg.Name, got, tt.hyper)
		}
	}
	_, err := NewTrainer(config.Trainer{Name: "oa", Kind: config.TrainerOpenAIFT, BaseURL: "http://x/v1", APIKeyEnv: "NOPE"},
		TrainerOptions{Getenv: getenv})
	if !errors.Is(err, config.ErrNoAPIKey) {
		t.Errorf("missing key: err = %v, want config.ErrNoAPIKey", err)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *PEFT:
		return "*tune.PEFT"
	case *OpenAIFT:
		return "*tune.OpenAIFT"
	case *NeMo:
		return "*tune.NeMo"
	}
	return "?"
}

func TestErrorMessagesAreFoundAndKeyless(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"error":{"message":"Invalid file format. Key ` + testKey + `","type":"invalid_request_error","code":"invalid_file"}}`,
			"Invalid file format. Key [REDACTED] (invalid_file)"},
		{`{"detail":"Namespace not found"}`, "Namespace not found"},
		{`{"detail":[{"loc":["body","config"],"msg":"field required"}]}`, `[{"loc":["body","config"],"msg":"field required"}]`},
		{`{"message":"upstream down"}`, "upstream down"},
		{`<html>502 Bad Gateway</html>`, "<html>502 Bad Gateway</html>"},
		{strings.Repeat("é", 400), strings.Repeat("é", 250) + "…"},
	}
	for _, tt := range tests {
		if got := errorMessage([]byte(tt.body), testKey); got != tt.want {
			t.Errorf("errorMessage(%.40q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}
