package store

import (
	"context"
	"encoding/json"
	"time"
)

// CatalogModel is a model added to the catalog at run time (`downshift models add`), on
// top of the models in the configuration file. Spec is the model's configuration as
// JSON (a config.Model, plus the backend it needs when that is not configured); the
// store keeps it as given and never reads it, so the configuration package stays the
// one place that knows what a model is.
//
// Stores keep AddedAt to the microsecond and return it in UTC.
type CatalogModel struct {
	Name    string // unique; what clients and `downshift eval --candidates` name it by
	Spec    json.RawMessage
	AddedAt time.Time
	AddedBy string // who added it: "cli" and the OS user, or an admin key's id
}

// ModelStore keeps the models added at run time. Implementations are safe for
// concurrent use.
type ModelStore interface {
	// PutModel adds m, or replaces the model of the same name. Name must not be empty
	// and Spec must be valid JSON.
	PutModel(ctx context.Context, m CatalogModel) error
	// ListModels returns every added model, ordered by name.
	ListModels(ctx context.Context) ([]CatalogModel, error)
	// DeleteModel removes the model called name, or returns ErrNotFound.
	DeleteModel(ctx context.Context, name string) error
}

// Splits of an eval set. The test split is what evaluation replays; train and
// validation are what dataset export and tuning may use. A call is in one split only.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitTest       = "test"
)

// EvalSet is a saved sample of one workload's calls, split into train, validation and
// test, so that every evaluation of the workload replays the same test calls and tuning
// never sees them. Stores keep CreatedAt to the microsecond and return it in UTC; an
// empty Params comes back as nil.
type EvalSet struct {
	ID         string
	WorkloadID string
	CreatedAt  time.Time
	// Params are the parameters the set was drawn with (seed, size, fractions,
	// what was deduplicated), as JSON.
	Params  json.RawMessage
	Members []EvalMember // ordered by (Split, CallID) when read back
}

// EvalMember is one call of an eval set.
type EvalMember struct {
	CallID string
	Split  string // SplitTrain, SplitValidation or SplitTest
	// Stratum is the reference's action the split was stratified by: the called tool's
	// name (sorted names joined with "+" for parallel calls), "json" or "text".
	Stratum string
}

// Eval run statuses.
const (
	EvalRunning  = "running"  // started, or interrupted before it finished (resumable)
	EvalFinished = "finished" // every call answered or failed for good; Leaderboard set
)

// EvalRun is one evaluation of candidates on an eval set's test calls. Stores keep
// StartedAt and FinishedAt to the microsecond and return them in UTC; empty Params
// and Leaderboard come back as nil.
type EvalRun struct {
	ID         string
	SetID      string
	WorkloadID string
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	Status     string    // EvalRunning or EvalFinished
	// Params are the run's parameters (candidates, variants, concurrency, judge,
	// threshold) as JSON; a resumed run must have the same.
	Params json.RawMessage
	// Leaderboard is the ranked result with the recommendation, as JSON (see package
	// eval); set when the run finishes.
	Leaderboard json.RawMessage
}

// EvalResult is one candidate's answer to one test call of a run, and its score. A
// result is stored once the call was answered or failed for good (retries spent), so a
// resumed run replays exactly the (candidate, variant, call) triples without one.
//
// Stores keep At to the microsecond and durations to the microsecond; empty Score and
// Answer come back as nil.
type EvalResult struct {
	RunID     string
	Candidate string // the catalog model's name
	Variant   string // "zero-shot", "in-context", ...
	CallID    string // the test call replayed
	At        time.Time

	Status   int    // the final attempt's HTTP status; 0 when no response came
	Error    string // why the call failed, empty on success; never a secret
	Attempts int

	Latency, TTFT                  time.Duration
	PromptTokens, CompletionTokens int
	CostUSD                        float64

	Agreement float64 // compare's agreement with the reference answer, in [0, 1]
	Pass      bool
	// Score is the full scoring (compare.Score, and the judge's verdict when one was
	// asked) as JSON, opaque to the store.
	Score json.RawMessage

	// KeyID is the id of the encryption key that sealed Answer (see package seal);
	// empty means plaintext.
	KeyID  string
	Answer []byte // the candidate's message as JSON
}

// EvalStore keeps eval sets, runs and their results. Implementations are safe for
// concurrent use.
type EvalStore interface {
	// SaveEvalSet saves set with its members in one transaction. The ID must be new
	// (ErrConflict otherwise) and every member's split one of the Split* constants,
	// with no call twice; Params must be valid JSON when set.
	SaveEvalSet(ctx context.Context, set EvalSet) error
	// GetEvalSet returns the set with its members, or ErrNotFound.
	GetEvalSet(ctx context.Context, id string) (EvalSet, error)
	// LatestEvalSet returns the workload's most recently created set with its members,
	// or ErrNotFound.
	LatestEvalSet(ctx context.Context, workloadID string) (EvalSet, error)

	// SaveEvalRun inserts run, or updates the run of the same ID (status, finish time,
	// leaderboard; SetID and WorkloadID may not change). SetID must name a saved set.
	SaveEvalRun(ctx context.Context, run EvalRun) error
	// GetEvalRun returns a run, or ErrNotFound.
	GetEvalRun(ctx context.Context, id string) (EvalRun, error)
	// ListEvalRuns returns the runs of a workload ("" for all), newest first.
	ListEvalRuns(ctx context.Context, workloadID string) ([]EvalRun, error)

	// SaveEvalResults writes results in one transaction: all or none. A result whose
	// (RunID, Candidate, Variant, CallID) is already stored replaces it; a RunID that is
	// not a saved run fails the batch with ErrNotFound.
	SaveEvalResults(ctx context.Context, rs []EvalResult) error
	// ListEvalResults returns a run's results ordered by (Candidate, Variant, CallID).
	ListEvalResults(ctx context.Context, runID string) ([]EvalResult, error)
}
