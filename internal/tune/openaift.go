package tune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// OpenAIFT runs jobs on an OpenAI-compatible fine-tuning API, as OpenAI documents it
// (https://platform.openai.com/docs/api-reference/fine-tuning and /files):
//
//   - POST /files, multipart, purpose=fine-tune, uploads the training and validation
//     JSONL files; the answer's id names each file.
//   - POST /fine_tuning/jobs {model, training_file, validation_file, hyperparameters
//     {n_epochs, batch_size, learning_rate_multiplier}, suffix, seed} creates the job.
//     OpenAI now prefers the same hyperparameters under method.supervised and still
//     takes them at the top level, which is the form compatible servers understand.
//   - GET /fine_tuning/jobs/{id}: status validating_files, queued, running, succeeded,
//     failed or cancelled; fine_tuned_model once it succeeded; error {code, message}.
//   - GET /fine_tuning/jobs/{id}/events?limit=&after=: events newest first, paged
//     towards older ones with after=<an event id>; type "metrics" events carry
//     data {step, total_steps, train_loss, valid_loss, ...}.
//   - POST /fine_tuning/jobs/{id}/cancel.
type OpenAIFT struct {
	o   OpenAIFTOptions
	api *apiClient
}

var _ Trainer = (*OpenAIFT)(nil)

// OpenAIFTOptions configure an OpenAIFT.
type OpenAIFTOptions struct {
	Name string
	// BaseURL is the API's base URL with its version path: https://api.openai.com/v1.
	BaseURL string
	// APIKey is sent as a bearer token; "" sends none.
	APIKey string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	Retry      Retry
	// Hyperparameters are the configured ones; zero fields are left to the service.
	Hyperparameters config.Hyperparameters
	// PollInterval is how often Run asks; 0 means DefaultRemotePollInterval.
	PollInterval time.Duration
}

// NewOpenAIFT returns a trainer for the API at o.BaseURL.
func NewOpenAIFT(o OpenAIFTOptions) *OpenAIFT {
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return &OpenAIFT{o: o, api: &apiClient{http: hc, key: o.APIKey, retry: o.Retry}}
}

// Name returns the configured trainer's name.
func (t *OpenAIFT) Name() string { return t.o.Name }

func (t *OpenAIFT) pollInterval() time.Duration {
	if t.o.PollInterval > 0 {
		return t.o.PollInterval
	}
	return DefaultRemotePollInterval
}

// hyperparameters keeps only what the API takes: epochs, batch size and the learning
// rate multiplier; the service chooses the rest ("auto").
func (t *OpenAIFT) hyperparameters(h config.Hyperparameters) config.Hyperparameters {
	h = h.Or(t.o.Hyperparameters)
	return config.Hyperparameters{Epochs: h.Epochs, BatchSize: h.BatchSize, LearningRateMultiplier: h.LearningRateMultiplier}
}

// ftFile is the file object of POST /files.
type ftFile struct {
	ID string `json:"id"`
}

// ftJob is the fine-tuning job object.
type ftJob struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	Model          string `json:"model"`
	FineTunedModel string `json:"fine_tuned_model"`
	TrainedTokens  *int64 `json:"trained_tokens"`
	// ResultFiles are ids of files holding the training metrics (CSV).
	ResultFiles []string `json:"result_files"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Param   string `json:"param"`
	} `json:"error"`
}

type ftEvent struct {
	ID        string          `json:"id"`
	CreatedAt int64           `json:"created_at"`
	Level     string          `json:"level"`
	Message   string          `json:"message"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
}

type ftEvents struct {
	Data    []ftEvent `json:"data"`
	HasMore bool      `json:"has_more"`
}

// ftDataset is what an OpenAIFT job's store.TuneJob.Dataset holds.
type ftDataset struct {
	TrainingFile   string `json:"training_file"`
	ValidationFile string `json:"validation_file,omitempty"`
}

// Submit uploads the job's files and creates the fine-tuning job.
func (t *OpenAIFT) Submit(ctx context.Context, job Job) (Submission, error) {
	train, validation, err := job.files()
	if err != nil {
		return Submission{}, fmt.Errorf("openai-ft: %w", err)
	}
	var ds ftDataset
	if ds.TrainingFile, err = t.upload(ctx, "upload training file", train); err != nil {
		return Submission{}, err
	}
	if validation != "" {
		if ds.ValidationFile, err = t.upload(ctx, "upload validation file", validation); err != nil {
			return Submission{}, err
		}
	}
	h := t.hyperparameters(job.Hyperparameters)
	type hyper struct {
		NEpochs                int     `json:"n_epochs,omitempty"`
		BatchSize              int     `json:"batch_size,omitempty"`
		LearningRateMultiplier float64 `json:"learning_rate_multiplier,omitempty"`
	}
	create := struct {
		Model           string `json:"model"`
		TrainingFile    string `json:"training_file"`
		ValidationFile  string `json:"validation_file,omitempty"`
		Hyperparameters *hyper `json:"hyperparameters,omitempty"`
		Suffix          string `json:"suffix,omitempty"`
		Seed            int    `json:"seed,omitempty"`
	}{
		Model: job.Base, TrainingFile: ds.TrainingFile, ValidationFile: ds.ValidationFile,
		Suffix: ftSuffix(job), Seed: job.Seed,
	}
	if hp := (hyper{h.Epochs, h.BatchSize, h.LearningRateMultiplier}); hp != (hyper{}) {
		create.Hyperparameters = &hp
	}
	body, err := jsonBody(create)
	if err != nil {
		return Submission{}, err
	}
	var created ftJob
	_, err = t.api.do(ctx, request{
		op: "create fine-tuning job", method: http.MethodPost, url: t.url("/fine_tuning/jobs"),
		body: body, contentType: "application/json",
	}, &created)
	if err != nil {
		return Submission{}, err
	}
	if created.ID == "" {
		return Submission{}, errors.New("create fine-tuning job: the answer has no job id")
	}
	dataset, _ := json.Marshal(ds)
	return Submission{ExternalID: created.ID, Dataset: dataset}, nil
}

// ftSuffix is the job's suffix: the caller's, or one made of the job id. OpenAI takes
// up to 64 characters; letters, digits and dashes pass everywhere.
func ftSuffix(job Job) string {
	s := job.Suffix
	if s == "" {
		s = "ds-" + job.ID
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return shorten(b.String(), 64)
}

// upload sends the file at path to POST /files as a multipart form with
// purpose=fine-tune, streaming it from disk on each attempt.
func (t *OpenAIFT) upload(ctx context.Context, op, path string) (string, error) {
	size, err := fileSize(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	if err := mw.WriteField("purpose", "fine-tune"); err != nil {
		return "", err
	}
	if _, err := mw.CreateFormFile("file", filepath.Base(path)); err != nil {
		return "", err
	}
	prefix := bytes.Clone(head.Bytes())
	head.Reset()
	if err := mw.Close(); err != nil { // writes the closing boundary
		return "", err
	}
	suffix := bytes.Clone(head.Bytes())
	body := func() (io.ReadCloser, int64, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		r := io.MultiReader(bytes.NewReader(prefix), io.LimitReader(f, size), bytes.NewReader(suffix))
		return readCloser{r, f}, int64(len(prefix)) + size + int64(len(suffix)), nil
	}
	var file ftFile
	_, err = t.api.do(ctx, request{
		op: op, method: http.MethodPost, url: t.url("/files"),
		body: body, contentType: mw.FormDataContentType(),
	}, &file)
	if err != nil {
		return "", err
	}
	if file.ID == "" {
		return "", fmt.Errorf("%s: the answer has no file id", op)
	}
	return file.ID, nil
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// maxEventPages bounds how far back one Poll pages through events it has not seen.
const maxEventPages = 20

// Poll reads the job and the events after cursor (the newest event id seen).
func (t *OpenAIFT) Poll(ctx context.Context, externalID, cursor string) (Status, error) {
	var j ftJob
	if err := t.get(ctx, "poll fine-tuning job", "/fine_tuning/jobs/"+url.PathEscape(externalID), &j); err != nil {
		return Status{}, err
	}
	st := Status{Cursor: cursor}
	switch j.Status {
	case "validating_files", "queued":
		st.State = store.TuneSubmitted
	case "running":
		st.State = store.TuneRunning
	case "succeeded":
		st.State, st.Adapter, st.Progress = store.TuneSucceeded, j.FineTunedModel, 1
		final := map[string]any{"fine_tuned_model": j.FineTunedModel, "result_files": j.ResultFiles}
		if j.TrainedTokens != nil {
			final["trained_tokens"] = *j.TrainedTokens
		}
		st.Final, _ = json.Marshal(final)
	case "failed":
		st.State, st.Error = store.TuneFailed, "the job failed"
		if j.Error != nil && j.Error.Message != "" {
			st.Error = j.Error.Message
			if j.Error.Code != "" {
				st.Error += " (" + j.Error.Code + ")"
			}
		}
		st.Error = scrub(st.Error, t.o.APIKey)
	case "cancelled":
		st.State = store.TuneCanceled
	default:
		return Status{}, fmt.Errorf("poll fine-tuning job: unknown status %q", j.Status)
	}

	events, err := t.eventsAfter(ctx, externalID, cursor)
	if err != nil {
		return Status{}, err
	}
	for _, e := range events {
		st.Cursor = e.ID
		line := e.Message
		if e.Level != "" && e.Level != "info" {
			line = e.Level + ": " + line
		}
		st.Logs = append(st.Logs, scrub(line, t.o.APIKey))
		if e.Type == "metrics" {
			var m map[string]any
			if json.Unmarshal(e.Data, &m) == nil {
				st.Metrics = numbers(m)
			}
		}
	}
	if step, total := st.Metrics["step"], st.Metrics["total_steps"]; total > 0 && st.State == store.TuneRunning {
		st.Progress = min(step/total, 1)
	}
	return st, nil
}

// eventsAfter returns the events newer than the one with id after ("" for all),
// oldest first.
func (t *OpenAIFT) eventsAfter(ctx context.Context, id, after string) ([]ftEvent, error) {
	var newest []ftEvent // newest first, as the API lists them
	page := ""
	for range maxEventPages {
		q := url.Values{"limit": {"100"}}
		if page != "" {
			q.Set("after", page)
		}
		var evs ftEvents
		if err := t.get(ctx, "list fine-tuning events", "/fine_tuning/jobs/"+url.PathEscape(id)+"/events?"+q.Encode(), &evs); err != nil {
			return nil, err
		}
		for _, e := range evs.Data {
			if after != "" && e.ID == after {
				return reversed(newest), nil
			}
			newest = append(newest, e)
		}
		if !evs.HasMore || len(evs.Data) == 0 {
			break
		}
		page = evs.Data[len(evs.Data)-1].ID
	}
	return reversed(newest), nil
}

func reversed(es []ftEvent) []ftEvent {
	out := make([]ftEvent, len(es))
	for i, e := range es {
		out[len(es)-1-i] = e
	}
	return out
}

// Cancel asks the API to cancel the job.
func (t *OpenAIFT) Cancel(ctx context.Context, externalID string) error {
	_, err := t.api.do(ctx, request{
		op: "cancel fine-tuning job", method: http.MethodPost,
		url: t.url("/fine_tuning/jobs/" + url.PathEscape(externalID) + "/cancel"),
	}, nil)
	return notFound(err)
}

func (t *OpenAIFT) get(ctx context.Context, op, path string, out any) error {
	_, err := t.api.do(ctx, request{op: op, method: http.MethodGet, url: t.url(path)}, out)
	return notFound(err)
}

func (t *OpenAIFT) url(path string) string { return joinURL(t.o.BaseURL, path) }

// notFound wraps ErrUnknownJob around a 404.
func notFound(err error) error {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrUnknownJob, err)
	}
	return err
}

// numbers keeps the numeric values of m.
func numbers(m map[string]any) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}
