package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Tune job statuses. A job starts submitted, may go to running, and ends in one of the
// three terminal statuses; once there it never changes again.
const (
	TuneSubmitted = "submitted" // created; handed to the trainer or about to be
	TuneRunning   = "running"   // the trainer reports it training
	TuneSucceeded = "succeeded" // finished; Adapter names the result
	TuneFailed    = "failed"    // finished without a result; Error says why
	TuneCanceled  = "canceled"  // stopped at someone's request
)

// ErrTuneJobFinished is returned by UpdateTuneJob for a job whose stored status is
// already terminal: a finished job is never changed, so that a late poll cannot undo a
// cancellation nor a cancellation rewrite a success.
var ErrTuneJobFinished = errors.New("store: tune job already finished")

// TuneTerminal reports whether status is one a job never leaves.
func TuneTerminal(status string) bool {
	return status == TuneSucceeded || status == TuneFailed || status == TuneCanceled
}

// ValidTuneTransition reports whether a job may go from status from to status to: any
// status to itself while not terminal, submitted to anything, running to a terminal
// status; never out of a terminal status, never back to submitted.
func ValidTuneTransition(from, to string) error {
	switch {
	case !validTuneStatus(to):
		return fmt.Errorf("status %q: want %q, %q, %q, %q or %q", to,
			TuneSubmitted, TuneRunning, TuneSucceeded, TuneFailed, TuneCanceled)
	case TuneTerminal(from):
		return fmt.Errorf("%w (%s)", ErrTuneJobFinished, from)
	case from == TuneRunning && to == TuneSubmitted:
		return fmt.Errorf("status may not go back from %s to %s", from, to)
	}
	return nil
}

func validTuneStatus(s string) bool {
	switch s {
	case TuneSubmitted, TuneRunning, TuneSucceeded, TuneFailed, TuneCanceled:
		return true
	}
	return false
}

// TuneJob is one fine-tuning job: what was asked (workload, base model, trainer,
// parameters), where it runs (the trainer's own id for it) and how it went.
//
// Stores keep times to the microsecond and return them in UTC; empty Dataset, Params
// and Metrics come back as nil.
type TuneJob struct {
	ID       string // downshift's id for the job (time-ordered), unique
	Workload string // the workload whose calls it trains on
	Base     string // the base model (a model name, or a trainer's config name)
	Trainer  string // the configured trainer's name (tune.trainers[].name)
	Status   string // one of the Tune* statuses

	// ExternalID is the trainer's id for the job (an OpenAI ftjob-..., a NeMo cust-...,
	// a local process's run id); empty until the trainer accepted it.
	ExternalID string
	// Dataset says what the job trains on, as JSON: the export directory and files, or
	// the ids of the files uploaded to the trainer. Opaque to the store.
	Dataset json.RawMessage
	// Params are the hyperparameters and options the job was submitted with, as JSON.
	// They are set when the job is created and never change.
	Params json.RawMessage
	// Metrics are the last training figures the trainer reported (loss, step,
	// progress, the final report), as JSON. Opaque to the store.
	Metrics json.RawMessage
	// Adapter names the result once the job succeeded: a LoRA adapter's directory, a
	// fine-tuned model's name.
	Adapter string
	// Error says why the job failed; never a secret.
	Error string

	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero until the status is terminal
}

// LogLine is one line of a tune job's log: what the trainer printed or reported.
// Stores keep At to the microsecond and return it in UTC.
type LogLine struct {
	Seq  int64 // increasing within a job, from 1; assigned by the store
	At   time.Time
	Text string
}

// TuneJobStore keeps fine-tuning jobs and their logs. Implementations are safe for
// concurrent use.
type TuneJobStore interface {
	// CreateTuneJob stores a new job. ID, Workload, Base and Trainer must be set, the
	// status must be submitted (empty means submitted) and Dataset, Params and Metrics
	// must be valid JSON when set. An ID already stored fails with ErrConflict.
	CreateTuneJob(ctx context.Context, j TuneJob) error
	// UpdateTuneJob replaces what may change about a stored job: Status, ExternalID,
	// Dataset, Metrics, Adapter, Error, UpdatedAt and FinishedAt. Workload, Base,
	// Trainer, Params and CreatedAt stay as created. A job not stored fails with
	// ErrNotFound; a job whose stored status is terminal fails with ErrTuneJobFinished
	// (and changes nothing); a transition ValidTuneTransition refuses fails too.
	UpdateTuneJob(ctx context.Context, j TuneJob) error
	// GetTuneJob returns one job, or ErrNotFound.
	GetTuneJob(ctx context.Context, id string) (TuneJob, error)
	// ListTuneJobs returns the jobs of a workload ("" for all), newest first.
	ListTuneJobs(ctx context.Context, workload string) ([]TuneJob, error)
	// AppendTuneLog adds lines to a job's log, in order, each stamped at. A job not
	// stored fails with ErrNotFound. Lines may be appended whatever the job's status,
	// so that the last words of a failed trainer are kept.
	AppendTuneLog(ctx context.Context, id string, at time.Time, lines []string) error
	// TuneLog returns the job's log lines with Seq > afterSeq, in order. A job not
	// stored fails with ErrNotFound.
	TuneLog(ctx context.Context, id string, afterSeq int64) ([]LogLine, error)
}
