package tune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// fakeOpenAI is an OpenAI fine-tuning API as its reference documents it: files,
// jobs that walk through their statuses one GET at a time, events newest first with
// after= paging, cancellation, bearer keys, and OpenAI's error bodies.
type fakeOpenAI struct {
	t      *testing.T
	srv    *httptest.Server
	script []string // statuses a new job walks through, one per GET

	mu        sync.Mutex
	files     map[string]fakeFile
	jobs      map[string]*fakeFTJob
	creates   []map[string]any // bodies of POST /fine_tuning/jobs
	canceled  []string
	hits      map[string]int   // "POST /v1/files" -> requests
	failFirst map[string][]int // route -> statuses to answer before succeeding
	failWith  string           // the error message of those answers
	eventSeq  int
	jobSeq    int
	// failJob is the error a job that reaches "failed" carries.
	failJob map[string]string
}

type fakeFile struct {
	name, purpose string
	content       []byte
}

type fakeFTJob struct {
	id, model string
	step      int // index into script
	status    string
	events    []map[string]any // oldest first
	body      map[string]any
}

func newFakeOpenAI(t *testing.T, script ...string) *fakeOpenAI {
	f := &fakeOpenAI{t: t, script: script, files: map[string]fakeFile{}, jobs: map[string]*fakeFTJob{},
		hits: map[string]int{}, failFirst: map[string][]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenAI) trainer(t *testing.T) *OpenAIFT {
	return NewOpenAIFT(OpenAIFTOptions{Name: "openai", BaseURL: f.srv.URL + "/v1", APIKey: testKey,
		HTTPClient: testClient(t), Retry: fastRetry,
		Hyperparameters: config.Hyperparameters{Epochs: 3, LearningRateMultiplier: 1.8}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func openAIError(w http.ResponseWriter, status int, msg, code string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+testKey {
		openAIError(w, http.StatusUnauthorized, "Incorrect API key provided: "+r.Header.Get("Authorization"), "invalid_api_key")
		return
	}
	route := r.Method + " " + r.URL.Path
	if strings.HasPrefix(r.URL.Path, "/v1/fine_tuning/jobs/") {
		route = r.Method + " /v1/fine_tuning/jobs/" + routeTail(r.URL.Path)
	}
	f.hits[route]++
	if fails := f.failFirst[route]; len(fails) > 0 {
		f.failFirst[route] = fails[1:]
		if fails[0] == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		openAIError(w, fails[0], f.failWith, "")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	switch {
	case route == "POST /v1/files":
		f.upload(w, r)
	case route == "POST /v1/fine_tuning/jobs":
		f.create(w, r)
	case len(parts) == 3 && r.Method == http.MethodGet:
		f.get(w, parts[2])
	case len(parts) == 4 && parts[3] == "events" && r.Method == http.MethodGet:
		f.events(w, r, parts[2])
	case len(parts) == 4 && parts[3] == "cancel" && r.Method == http.MethodPost:
		f.cancel(w, parts[2])
	default:
		openAIError(w, http.StatusNotFound, "Invalid URL ("+route+")", "")
	}
}

// routeTail names a job route without its id: "{id}", "{id}/events", "{id}/cancel".
func routeTail(path string) string {
	rest := strings.TrimPrefix(path, "/v1/fine_tuning/jobs/")
	if _, tail, ok := strings.Cut(rest, "/"); ok {
		return "{id}/" + tail
	}
	return "{id}"
}

func (f *fakeOpenAI) upload(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		openAIError(w, http.StatusBadRequest, "not multipart: "+err.Error(), "")
		return
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		openAIError(w, http.StatusBadRequest, "'file' is a required property", "")
		return
	}
	content, _ := io.ReadAll(file)
	purpose := r.FormValue("purpose")
	if purpose != "fine-tune" {
		openAIError(w, http.StatusBadRequest, "purpose must be fine-tune", "")
		return
	}
	id := fmt.Sprintf("file-%d", len(f.files)+1)
	f.files[id] = fakeFile{hdr.Filename, purpose, content}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "bytes": len(content),
		"created_at": 1717000000, "filename": hdr.Filename, "purpose": purpose})
}

func (f *fakeOpenAI) create(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid JSON", "")
		return
	}
	f.creates = append(f.creates, body)
	tf, _ := body["training_file"].(string)
	if _, ok := f.files[tf]; !ok {
		openAIError(w, http.StatusBadRequest, "invalid training_file: "+tf, "invalid_training_file")
		return
	}
	f.jobSeq++
	j := &fakeFTJob{id: fmt.Sprintf("ftjob-%03d", f.jobSeq), model: body["model"].(string), status: f.script[0], body: body}
	f.jobs[j.id] = j
	f.event(j, "info", "message", "Created fine-tuning job: "+j.id, nil)
	writeJSON(w, http.StatusOK, f.object(j))
}

func (f *fakeOpenAI) event(j *fakeFTJob, level, typ, msg string, data any) {
	f.eventSeq++
	j.events = append(j.events, map[string]any{"object": "fine_tuning.job.event",
		"id": fmt.Sprintf("ftevent-%04d", f.eventSeq), "created_at": 1717000000 + f.eventSeq,
		"level": level, "message": msg, "type": typ, "data": data})
}

func (f *fakeOpenAI) object(j *fakeFTJob) map[string]any {
	o := map[string]any{"object": "fine_tuning.job", "id": j.id, "model": j.model, "status": j.status,
		"created_at": 1717000000, "finished_at": nil, "fine_tuned_model": nil, "organization_id": "org-1",
		"result_files": []string{}, "training_file": j.body["training_file"],
		"validation_file": j.body["validation_file"], "hyperparameters": j.body["hyperparameters"],
		"trained_tokens": nil, "error": nil, "seed": 42}
	switch j.status {
	case "succeeded":
		o["fine_tuned_model"] = "ft:" + j.model + ":acme:" + fmt.Sprint(j.body["suffix"]) + ":abc123"
		o["trained_tokens"] = 5120
		o["result_files"] = []string{"file-result-1"}
	case "failed":
		o["error"] = map[string]any{"code": "invalid_training_file", "param": "training_file",
			"message": f.failJob[j.id]}
	}
	return o
}

// get answers GET /fine_tuning/jobs/{id} and moves the job one status on.
func (f *fakeOpenAI) get(w http.ResponseWriter, id string) {
	j, ok := f.jobs[id]
	if !ok {
		openAIError(w, http.StatusNotFound, "No such fine-tuning job: "+id, "")
		return
	}
	writeJSON(w, http.StatusOK, f.object(j))
	if j.status == "cancelled" || j.step+1 >= len(f.script) {
		return
	}
	j.step++
	j.status = f.script[j.step]
	switch j.status {
	case "running":
		if !slices.ContainsFunc(j.events, func(e map[string]any) bool { return e["message"] == "Fine-tuning job started" }) {
			f.event(j, "info", "message", "Fine-tuning job started", nil)
		}
		step := len(j.events) * 10
		f.event(j, "info", "metrics", fmt.Sprintf("Step %d/100: training loss=%.2f", step, 3.0/float64(step)),
			map[string]any{"step": step, "total_steps": 100, "train_loss": 3.0 / float64(step), "train_mean_token_accuracy": 0.5})
	case "succeeded":
		f.event(j, "info", "message", "The job has successfully completed", nil)
	case "failed":
		f.event(j, "error", "message", "Training file has 2 examples; at least 10 are required. "+f.failJob[j.id], nil)
	}
}

func (f *fakeOpenAI) events(w http.ResponseWriter, r *http.Request, id string) {
	j, ok := f.jobs[id]
	if !ok {
		openAIError(w, http.StatusNotFound, "No such fine-tuning job: "+id, "")
		return
	}
	limit := 20
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		limit = l
	}
	newest := slices.Clone(j.events)
	slices.Reverse(newest)
	if after := r.URL.Query().Get("after"); after != "" {
		i := slices.IndexFunc(newest, func(e map[string]any) bool { return e["id"] == after })
		newest = newest[i+1:]
	}
	more := len(newest) > limit
	if more {
		newest = newest[:limit]
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": newest, "has_more": more})
}

func (f *fakeOpenAI) cancel(w http.ResponseWriter, id string) {
	j, ok := f.jobs[id]
	if !ok {
		openAIError(w, http.StatusNotFound, "No such fine-tuning job: "+id, "")
		return
	}
	if j.status == "succeeded" || j.status == "failed" || j.status == "cancelled" {
		openAIError(w, http.StatusBadRequest, "Job has already completed: "+j.status, "")
		return
	}
	f.canceled = append(f.canceled, id)
	j.status = "cancelled"
	f.event(j, "info", "message", "Fine-tuning job cancelled", nil)
	writeJSON(w, http.StatusOK, f.object(j))
}

func TestOpenAIFTRunsAJobToItsFineTunedModel(t *testing.T) {
	f := newFakeOpenAI(t, "validating_files", "queued", "running", "running", "running", "succeeded")
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini-2024-07-18")
	job.Suffix = "Billing Agent!"
	job.Hyperparameters = config.Hyperparameters{BatchSize: 4}
	var updates []string
	o := fastRun
	o.OnUpdate = func(j store.TuneJob) { updates = append(updates, j.Status) }

	got, err := Run(context.Background(), st, f.trainer(t), job, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got.Status != store.TuneSucceeded || got.Adapter != "ft:gpt-4o-mini-2024-07-18:acme:billing-agent-:abc123" {
		t.Fatalf("Run = %s, adapter %q; want succeeded with the fine-tuned model", got.Status, got.Adapter)
	}
	if got.FinishedAt.IsZero() || got.ExternalID != "ftjob-001" {
		t.Errorf("FinishedAt %v, ExternalID %q", got.FinishedAt, got.ExternalID)
	}
	if !slices.Contains(updates, store.TuneRunning) || updates[len(updates)-1] != store.TuneSucceeded {
		t.Errorf("stored statuses %v, want running on the way to succeeded", updates)
	}

	// The files went up as documented, with their content.
	f.mu.Lock()
	defer f.mu.Unlock()
	train, _ := os.ReadFile(filepath.Join(job.DataDir, exportTrain))
	if ff := f.files["file-1"]; ff.name != exportTrain || ff.purpose != "fine-tune" || string(ff.content) != string(train) {
		t.Errorf("training file uploaded as %q (purpose %q, %d bytes), want train.jsonl with its content", ff.name, ff.purpose, len(ff.content))
	}
	if ff := f.files["file-2"]; ff.name != exportValidation {
		t.Errorf("validation file uploaded as %q", ff.name)
	}
	want := map[string]any{
		"model": "gpt-4o-mini-2024-07-18", "training_file": "file-1", "validation_file": "file-2",
		"suffix":          "billing-agent-",
		"hyperparameters": map[string]any{"n_epochs": 3.0, "batch_size": 4.0, "learning_rate_multiplier": 1.8},
	}
	if len(f.creates) != 1 || !jsonEqual(f.creates[0], want) {
		t.Errorf("create body = %v\nwant %v", f.creates, want)
	}

	// The store has the dataset, the final report and every event once, in order.
	var ds ftDataset
	if err := json.Unmarshal(got.Dataset, &ds); err != nil || ds != (ftDataset{"file-1", "file-2"}) {
		t.Errorf("Dataset = %s, want the uploaded file ids", got.Dataset)
	}
	rep, err := ParseReport(got.Metrics)
	if err != nil || rep.Progress != 1 || rep.Metrics["train_loss"] == 0 || !strings.Contains(string(rep.Final), `"trained_tokens":5120`) {
		t.Errorf("report = %+v (%v), want progress 1, the last loss and the final job", rep, err)
	}
	log := logText(t, st, stored.ID)
	var events []string
	for _, e := range f.jobs["ftjob-001"].events {
		events = append(events, e["message"].(string))
	}
	if want := strings.Join(events, "\n"); !strings.Contains(log, want) {
		t.Errorf("log =\n%s\nwant the events once, oldest first:\n%s", log, want)
	}
	assertNoSecret(t, st, stored.ID)
}

// jsonEqual compares decoded JSON values.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestOpenAIFTRetries429And5xx(t *testing.T) {
	f := newFakeOpenAI(t, "queued", "running", "succeeded")
	f.failFirst["POST /v1/files"] = []int{http.StatusTooManyRequests, http.StatusBadGateway}
	f.failFirst["POST /v1/fine_tuning/jobs"] = []int{http.StatusServiceUnavailable}
	f.failFirst["GET /v1/fine_tuning/jobs/{id}"] = []int{http.StatusInternalServerError, http.StatusInternalServerError,
		http.StatusInternalServerError, http.StatusInternalServerError, http.StatusInternalServerError}
	f.failWith = "The server is overloaded"
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	got, err := Run(context.Background(), st, f.trainer(t), job, fastRun)
	if err != nil || got.Status != store.TuneSucceeded {
		t.Fatalf("Run = %s (%q), %v; want succeeded after retries", got.Status, got.Error, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.hits["POST /v1/files"]; n != 4 {
		t.Errorf("POST /v1/files %d times, want 4 (429, 502, then the two files)", n)
	}
	if n := f.hits["POST /v1/fine_tuning/jobs"]; n != 2 {
		t.Errorf("POST /v1/fine_tuning/jobs %d times, want 2", n)
	}
	// Five 500s outlast the client's 4 attempts once: one failed poll, retried by Run.
	if n := f.hits["GET /v1/fine_tuning/jobs/{id}"]; n < 6 {
		t.Errorf("GET job %d times, want the failed polls retried", n)
	}
	assertNoSecret(t, st, stored.ID)
}

func TestOpenAIFTRejectedUploadFailsTheJobWithoutTheKey(t *testing.T) {
	f := newFakeOpenAI(t, "queued")
	f.failFirst["POST /v1/files"] = []int{http.StatusBadRequest}
	// A careless service echoes the key back in its error.
	f.failWith = "Invalid file format for Fine-Tuning API. Must be .jsonl (auth: Bearer " + testKey + ")"
	st := trainStore(t)
	logger, logged := capture()
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	o := fastRun
	o.Logger = logger
	got, err := Run(context.Background(), st, f.trainer(t), job, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got.Status != store.TuneFailed || !strings.Contains(got.Error, "upload training file: HTTP 400: Invalid file format") {
		t.Errorf("Run = %s %q; want failed naming the upload and the service's message", got.Status, got.Error)
	}
	if !strings.Contains(got.Error, redacted) {
		t.Errorf("error %q: want the key replaced by %s", got.Error, redacted)
	}
	f.mu.Lock()
	if n := f.hits["POST /v1/files"]; n != 1 {
		t.Errorf("a 400 was retried: %d uploads", n)
	}
	f.mu.Unlock()
	assertNoSecret(t, st, stored.ID, logged.String())
}

func TestOpenAIFTFailedJobKeepsTheServicesReason(t *testing.T) {
	f := newFakeOpenAI(t, "validating_files", "failed")
	f.failJob = map[string]string{"ftjob-001": "Training file has 2 examples; at least 10 are required. Key " + testKey}
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	got, err := Run(context.Background(), st, f.trainer(t), job, fastRun)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got.Status != store.TuneFailed || !strings.HasPrefix(got.Error, "Training file has 2 examples; at least 10 are required.") ||
		!strings.HasSuffix(got.Error, "(invalid_training_file)") {
		t.Errorf("Run = %s %q; want failed with the job's error and code", got.Status, got.Error)
	}
	if !strings.Contains(logText(t, st, stored.ID), "error: Training file has 2 examples") {
		t.Errorf("the error event is not in the log:\n%s", logText(t, st, stored.ID))
	}
	assertNoSecret(t, st, stored.ID)
}

func TestOpenAIFTCancelledRunCancelsTheJob(t *testing.T) {
	f := newFakeOpenAI(t, "queued", "running", "running", "running", "running", "running", "running", "running", "succeeded")
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	ctx, cancel := context.WithCancel(context.Background())
	o := fastRun
	o.PollInterval = 5 * time.Millisecond
	o.OnUpdate = func(j store.TuneJob) {
		if j.Status == store.TuneRunning {
			cancel()
		}
	}
	got, err := Run(ctx, st, f.trainer(t), job, o)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run error = %v, want context.Canceled", err)
	}
	if got.Status != store.TuneCanceled || got.FinishedAt.IsZero() {
		t.Errorf("Run = %s (finished %v), want canceled", got.Status, got.FinishedAt)
	}
	f.mu.Lock()
	if !slices.Equal(f.canceled, []string{"ftjob-001"}) {
		t.Errorf("cancelled at the service: %v, want the job", f.canceled)
	}
	f.mu.Unlock()
	if s, _ := st.GetTuneJob(context.Background(), stored.ID); s.Status != store.TuneCanceled {
		t.Errorf("stored status %s, want canceled", s.Status)
	}
	if log := logText(t, st, stored.ID); !strings.Contains(log, "Fine-tuning job cancelled") {
		t.Errorf("the service's last event is not in the log:\n%s", log)
	}
}

func TestOpenAIFTDetachedRunLeavesTheJobAndResumes(t *testing.T) {
	f := newFakeOpenAI(t, "queued", "running", "running", "running", "succeeded")
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	ctx, cancel := context.WithCancel(context.Background())
	o := fastRun
	o.Detach = true
	o.OnUpdate = func(j store.TuneJob) {
		if j.Status == store.TuneRunning {
			cancel()
		}
	}
	got, err := Run(ctx, st, f.trainer(t), job, o)
	if !errors.Is(err, context.Canceled) || got.Status != store.TuneRunning {
		t.Fatalf("detached Run = %s, %v; want running and context.Canceled", got.Status, err)
	}
	if len(f.canceled) != 0 {
		t.Fatalf("a detached Run cancelled the job: %v", f.canceled)
	}
	before := logText(t, st, stored.ID)

	// A later Run (a new process) picks the job up where it was.
	got, err = Run(context.Background(), st, f.trainer(t), job, fastRun)
	if err != nil || got.Status != store.TuneSucceeded {
		t.Fatalf("resumed Run = %s, %v; want succeeded", got.Status, err)
	}
	f.mu.Lock()
	if n := f.hits["POST /v1/fine_tuning/jobs"]; n != 1 {
		t.Errorf("the resumed job was created again: %d creates", n)
	}
	f.mu.Unlock()
	after := logText(t, st, stored.ID)
	if strings.Count(after, "Fine-tuning job started") != 1 || !strings.HasPrefix(after, before) {
		t.Errorf("the resumed log repeats or loses lines:\n%s", after)
	}
}

func TestOpenAIFTUnknownJobFailsIt(t *testing.T) {
	f := newFakeOpenAI(t, "queued")
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	// The store says the service has the job as ftjob-gone; the service does not.
	j, _ := st.GetTuneJob(context.Background(), stored.ID)
	j.ExternalID = "ftjob-gone"
	if err := st.UpdateTuneJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	got, err := Run(context.Background(), st, f.trainer(t), job, fastRun)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got.Status != store.TuneFailed || !strings.Contains(got.Error, "does not know this job") ||
		!strings.Contains(got.Error, "HTTP 404") {
		t.Errorf("Run = %s %q; want failed: the trainer does not know the job", got.Status, got.Error)
	}
	if _, err := f.trainer(t).Poll(context.Background(), "ftjob-gone", ""); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("Poll(unknown) error = %v, want ErrUnknownJob", err)
	}
	if err := f.trainer(t).Cancel(context.Background(), "ftjob-gone"); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("Cancel(unknown) error = %v, want ErrUnknownJob", err)
	}
}

func TestOpenAIFTCancelJobFromAnotherProcessStopsTheRun(t *testing.T) {
	script := []string{"queued"}
	for range 1000 {
		script = append(script, "running")
	}
	f := newFakeOpenAI(t, script...)
	st := trainStore(t)
	stored, job := newJob(t, st, "openai", "gpt-4o-mini")
	cancelled := make(chan error, 1)
	var once sync.Once
	o := fastRun
	o.OnUpdate = func(j store.TuneJob) {
		if j.Status == store.TuneRunning {
			once.Do(func() {
				// `downshift tune cancel` in another process: its own trainer, same store.
				go func() {
					_, err := CancelJob(context.Background(), st, f.trainer(t), j.ID, time.Now())
					cancelled <- err
				}()
			})
		}
	}
	got, err := Run(context.Background(), st, f.trainer(t), job, o)
	if err != nil || got.Status != store.TuneCanceled {
		t.Fatalf("Run = %s, %v; want it to stop with the job canceled", got.Status, err)
	}
	if err := <-cancelled; err != nil {
		t.Errorf("CancelJob: %v", err)
	}
	if log := logText(t, st, stored.ID); !strings.Contains(log, "Fine-tuning job cancelled") {
		t.Errorf("log lacks the cancellation:\n%s", log)
	}
	f.mu.Lock()
	if !slices.Equal(f.canceled, []string{"ftjob-001"}) {
		t.Errorf("cancelled at the service: %v, want the job once", f.canceled)
	}
	f.mu.Unlock()
	if _, err := CancelJob(context.Background(), st, f.trainer(t), stored.ID, time.Now()); !errors.Is(err, store.ErrTuneJobFinished) {
		t.Errorf("CancelJob of a finished job: err = %v, want ErrTuneJobFinished", err)
	}
}

func TestOpenAIFTPagesThroughManyEvents(t *testing.T) {
	f := newFakeOpenAI(t, "running")
	tr := f.trainer(t)
	f.mu.Lock()
	j := &fakeFTJob{id: "ftjob-many", model: "m", status: "running", body: map[string]any{}}
	f.jobs[j.id] = j
	for i := range 250 {
		f.event(j, "info", "message", fmt.Sprintf("event %03d", i), nil)
	}
	f.mu.Unlock()
	st, err := tr.Poll(context.Background(), j.id, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Logs) != 250 || st.Logs[0] != "event 000" || st.Logs[249] != "event 249" {
		t.Fatalf("Poll gave %d lines (%q ... %q), want all 250 oldest first", len(st.Logs), st.Logs[0], st.Logs[len(st.Logs)-1])
	}
	f.mu.Lock()
	f.event(j, "warn", "message", "event 250", nil)
	f.mu.Unlock()
	st, err = tr.Poll(context.Background(), j.id, st.Cursor)
	if err != nil || !slices.Equal(st.Logs, []string{"warn: event 250"}) {
		t.Errorf("Poll after the cursor = %q, %v; want only the new event", st.Logs, err)
	}
}
