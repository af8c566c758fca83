package tune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
)

// Trainer runs fine-tuning jobs somewhere: a process on this host, or a remote
// service. It keeps no state that matters beyond a process's life: the caller keeps a
// job's state in the store (see Run), and asks the trainer about a job by the
// external id Submit returned.
type Trainer interface {
	// Name is the configured trainer's name (tune.trainers[].name).
	Name() string
	// Submit hands job to the trainer (uploading its files where the trainer needs
	// them) and returns the trainer's id for it. It does not wait for training.
	Submit(ctx context.Context, job Job) (Submission, error)
	// Poll reports how the job is doing, with the log lines that came after cursor
	// ("" for all) and the cursor to pass next time. A job the trainer does not know
	// gives an error wrapping ErrUnknownJob.
	Poll(ctx context.Context, externalID, cursor string) (Status, error)
	// Cancel asks the trainer to stop the job. A job the trainer does not know gives
	// an error wrapping ErrUnknownJob.
	Cancel(ctx context.Context, externalID string) error
}

// ErrUnknownJob means the trainer has no job of that id: the id is wrong, the remote
// service forgot it, or the local process that ran it is gone.
var ErrUnknownJob = errors.New("tune: the trainer does not know this job")

// Job is what a trainer is asked to train.
type Job struct {
	// ID is downshift's id for the job (store.TuneJob.ID). Trainers use it to name what
	// they create: uploaded datasets, the output model.
	ID       string
	Workload string
	// Base is the base model: a Hugging Face id or local path (peft, where
	// "tiny-random-llama" builds a tiny random Llama from a config instead), a
	// customization config such as meta/llama-3.2-1b-instruct@v1.0.0+A100 (nemo), or a
	// model name (openai-ft).
	Base string
	// DataDir is the directory `downshift export` wrote (train.jsonl,
	// validation.jsonl, eval.jsonl, manifest.json), in the format the trainer reads:
	// openai for peft and openai-ft, nemo for nemo. The PEFT script reads the
	// directory; the services get its files.
	DataDir string
	// TrainFile and ValidationFile name the files sent to a remote trainer; empty
	// means DataDir's train.jsonl, and its validation.jsonl if there is one.
	TrainFile, ValidationFile string
	// OutDir is where a local trainer writes the adapter and its metrics (peft).
	OutDir string
	// Suffix names the result where the service lets the caller name it (openai-ft's
	// suffix, nemo's output model); empty: derived from ID.
	Suffix string
	// Hyperparameters override the trainer's configured ones; zero fields keep them.
	Hyperparameters config.Hyperparameters
	// Seed makes training repeatable where the trainer takes one; 0: the trainer's.
	Seed int
	// MaxSteps stops training after this many optimiser steps (peft); 0: epochs decide.
	MaxSteps int
	// QLoRA trains on a 4-bit quantised base (peft, with bitsandbytes present).
	QLoRA bool
}

// Names of the files in an export directory that trainers read.
const (
	exportTrain      = "train.jsonl"
	exportValidation = "validation.jsonl"
)

// files returns the training and validation files a remote trainer uploads.
func (j Job) files() (train, validation string, err error) {
	train, validation = j.TrainFile, j.ValidationFile
	if train == "" && j.DataDir != "" {
		train = filepath.Join(j.DataDir, exportTrain)
		if validation == "" {
			v := filepath.Join(j.DataDir, exportValidation)
			if fi, err := os.Stat(v); err == nil && fi.Size() > 0 {
				validation = v
			}
		}
	}
	if train == "" {
		return "", "", errors.New("the job names no training data (DataDir or TrainFile)")
	}
	return train, validation, nil
}

// Submission is what Submit returns.
type Submission struct {
	// ExternalID is the trainer's id for the job.
	ExternalID string
	// Dataset records what the trainer trains on (uploaded file ids, dataset names,
	// local paths), as JSON for store.TuneJob.Dataset.
	Dataset json.RawMessage
}

// Status is how a job is doing, as one Poll saw it.
type Status struct {
	// State is one of store.TuneSubmitted, TuneRunning, TuneSucceeded, TuneFailed and
	// TuneCanceled.
	State string
	// Progress is the fraction of training done, in [0, 1]; 0 when unknown.
	Progress float64
	// Metrics are the latest training figures the trainer reported (step, loss,
	// learning rate, ...).
	Metrics map[string]float64
	// Final is the trainer's final report when the job succeeded (peft's
	// metrics.json, the service's result), as JSON; nil otherwise.
	Final json.RawMessage
	// Adapter names the result when the job succeeded: a LoRA adapter's directory, a
	// fine-tuned model's name.
	Adapter string
	// Error says why the job failed, in the trainer's words; never a secret.
	Error string
	// Logs are the log lines that came after the cursor Poll was given, oldest first.
	Logs []string
	// Cursor is what to pass to the next Poll to get only newer lines.
	Cursor string
}

// Driver defaults that are not hyperparameters.
const (
	// DefaultPython runs the PEFT script where tune.trainers[].python is unset.
	DefaultPython = "python3"
	// DefaultScript is the PEFT script where tune.trainers[].script is unset.
	DefaultScript = "trainers/peft/train.py"
	// DefaultNeMoNamespace holds datasets and adapters where nemo.namespace is unset.
	DefaultNeMoNamespace = "default"
)

// Default poll intervals by kind, where tune.trainers[].poll_interval is unset: a
// local process is cheap to ask; a remote service is asked as its documentation's
// examples do.
const (
	DefaultLocalPollInterval  = 2 * time.Second
	DefaultRemotePollInterval = 30 * time.Second
)

// TrainerOptions are what NewTrainer needs besides the configuration.
type TrainerOptions struct {
	// Getenv reads the API key's environment variable; nil means os.Getenv.
	Getenv func(string) string
	// HTTPClient talks to remote trainers; nil means a client with a 5-minute timeout
	// (uploads of large files take a while).
	HTTPClient *http.Client
	// Retry tunes the remote trainers' retries; zero fields mean the defaults.
	Retry Retry
	// Logger receives the drivers' own diagnostics; nil discards them.
	Logger *slog.Logger
}

// NewTrainer returns the trainer cfg describes, with its defaults filled in. The API
// key, when the trainer has one, is read now: a missing key is an error here rather
// than a failed job later.
func NewTrainer(cfg config.Trainer, o TrainerOptions) (Trainer, error) {
	key, err := cfg.APIKey(o.Getenv)
	if err != nil {
		return nil, err
	}
	httpClient := o.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 5 * time.Minute}
	}
	switch cfg.Kind {
	case config.TrainerPEFT:
		return NewPEFT(PEFTOptions{
			Name: cfg.Name, Python: cfg.Python, Script: cfg.Script,
			Hyperparameters: cfg.Hyperparameters, PollInterval: cfg.PollInterval, Logger: o.Logger,
		}), nil
	case config.TrainerOpenAIFT:
		return NewOpenAIFT(OpenAIFTOptions{
			Name: cfg.Name, BaseURL: cfg.BaseURL, APIKey: key, HTTPClient: httpClient, Retry: o.Retry,
			Hyperparameters: cfg.Hyperparameters, PollInterval: cfg.PollInterval,
		}), nil
	case config.TrainerNeMo:
		return NewNeMo(NeMoOptions{
			Name: cfg.Name, BaseURL: cfg.BaseURL, DataStoreURL: cfg.NeMo.DataStoreURL,
			EntityStoreURL: cfg.NeMo.EntityStoreURL, Namespace: cfg.NeMo.Namespace, APIKey: key,
			HTTPClient: httpClient, Retry: o.Retry, Hyperparameters: cfg.Hyperparameters,
			PollInterval: cfg.PollInterval,
		}), nil
	}
	return nil, fmt.Errorf("tune: trainer %q: unknown kind %q", cfg.Name, cfg.Kind)
}

// Hyperparameters returns what a job with overrides h trains with on tr: h, then the
// trainer's configured values, then the trainer's defaults. Zero fields left in the
// result are the service's to choose (openai-ft). The caller records the result in
// store.TuneJob.Params.
func Hyperparameters(tr Trainer, h config.Hyperparameters) config.Hyperparameters {
	if r, ok := tr.(interface {
		hyperparameters(config.Hyperparameters) config.Hyperparameters
	}); ok {
		return r.hyperparameters(h)
	}
	return h
}

// PollInterval returns how often Run asks tr about a job: the configured interval, or
// the default for the trainer's kind.
func PollInterval(tr Trainer) time.Duration {
	if p, ok := tr.(interface{ pollInterval() time.Duration }); ok {
		return p.pollInterval()
	}
	return DefaultRemotePollInterval
}

// discard is the logger of drivers given none.
var discard = slog.New(slog.DiscardHandler)

// fileSize returns the size of the file at path, for request bodies.
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", path)
	}
	return fi.Size(), nil
}
