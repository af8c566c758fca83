package tune

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// NeMo runs jobs on NVIDIA NeMo Customizer, as the NeMo Microservices 25.x
// documentation describes it
// (https://docs.nvidia.com/nemo/microservices/latest/fine-tune/manage-customization-jobs/,
// .../manage-entities/datasets/create-dataset.html). A job takes four services:
//
//   - Entity Store: POST /v1/namespaces {id} makes the namespace (409 or 422 when it
//     exists); POST /v1/datasets {name, namespace, description, files_url, project}
//     registers the uploaded dataset with files_url hf://datasets/NAMESPACE/NAME.
//   - Data Store: POST /v1/datastore/namespaces (form field namespace) makes the
//     namespace there too; the dataset's files are uploaded through its Hugging
//     Face-compatible API under /v1/hf, as huggingface_hub does it: POST
//     /api/repos/create {name, organization, type: dataset}, then POST
//     /api/datasets/NS/NAME/preupload/main, which says whether each file goes inline
//     ("regular") or through Git LFS, then POST /api/datasets/NS/NAME/commit/main with
//     an NDJSON body (a header line, then a "file" line with base64 content or an
//     "lfsFile" line per file). LFS files go first through
//     /datasets/NS/NAME.git/info/lfs/objects/batch (the Git LFS batch API, basic
//     transfer). Training files go under training/, validation files under
//     validation/, as the Data Flywheel Blueprint lays them out.
//   - Customizer: POST /v1/customization/jobs {config, dataset {name, namespace},
//     hyperparameters {training_type: sft, finetuning_type: lora, epochs, batch_size,
//     learning_rate, lora {adapter_dim, alpha, adapter_dropout}}, output_model}; GET
//     /v1/customization/jobs/ID/status {status, percentage_done, epochs_completed,
//     steps_completed, metrics {keys, metrics {train_loss: [{step, value}], val_loss}},
//     status_logs [{message, detail}]}; GET /v1/customization/jobs/ID for the
//     output_model; POST /v1/customization/jobs/ID/cancel.
//
// Where the documentation is unclear: the status endpoint's examples differ between
// releases (some put train_loss and val_loss at the top level, some only in the
// metrics series; status_logs appears in the Data Flywheel Blueprint's use of it, not
// in the reference), so both forms are read and neither is required. The statuses
// are the SDK's JobStatus (created, pending, running, cancelling, cancelled, failed,
// completed, ready, unknown); "unknown" is treated as a passing failure to poll. The
// newer NeMo Platform API (workspaces, filesets, jobs under /v2) is not this one.
type NeMo struct {
	o NeMoOptions
	// api sends the key to the NeMo services; transfer sends none, because LFS upload
	// URLs may point at other hosts (object storage), which must never see it.
	api, transfer *apiClient
}

var _ Trainer = (*NeMo)(nil)

// NeMoOptions configure a NeMo trainer.
type NeMoOptions struct {
	Name string
	// BaseURL is NeMo Customizer's root (http://nemo.example.com).
	BaseURL string
	// DataStoreURL and EntityStoreURL are the NeMo Data Store's and Entity Store's
	// roots; "" means BaseURL (one ingress for all services).
	DataStoreURL, EntityStoreURL string
	// Namespace holds the datasets and the output adapters; "" means
	// DefaultNeMoNamespace.
	Namespace string
	// APIKey is sent as a bearer token to every service; "" sends none.
	APIKey string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	Retry      Retry
	// Hyperparameters are the configured ones; zero fields take
	// config.DefaultHyperparameters.
	Hyperparameters config.Hyperparameters
	// PollInterval is how often Run asks; 0 means DefaultRemotePollInterval.
	PollInterval time.Duration
}

// NewNeMo returns a trainer for the NeMo services o names.
func NewNeMo(o NeMoOptions) *NeMo {
	if o.DataStoreURL == "" {
		o.DataStoreURL = o.BaseURL
	}
	if o.EntityStoreURL == "" {
		o.EntityStoreURL = o.BaseURL
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNeMoNamespace
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return &NeMo{
		o:        o,
		api:      &apiClient{http: hc, key: o.APIKey, retry: o.Retry},
		transfer: &apiClient{http: hc, retry: o.Retry},
	}
}

// Name returns the configured trainer's name.
func (t *NeMo) Name() string { return t.o.Name }

func (t *NeMo) pollInterval() time.Duration {
	if t.o.PollInterval > 0 {
		return t.o.PollInterval
	}
	return DefaultRemotePollInterval
}

// hyperparameters are the job's, then the configured ones, then the defaults; the
// maximum length is the customization config's to set, not the job's.
func (t *NeMo) hyperparameters(h config.Hyperparameters) config.Hyperparameters {
	h = h.Or(t.o.Hyperparameters).Or(config.DefaultHyperparameters())
	h.MaxLength, h.LearningRateMultiplier = 0, 0
	return h
}

// nemoDataset is what a NeMo job's store.TuneJob.Dataset holds.
type nemoDataset struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	FilesURL  string   `json:"files_url"`
	Files     []string `json:"files"`
}

// nemoJob is the customization job object, as far as downshift reads it.
type nemoJob struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	OutputModel string `json:"output_model"`
}

// Submit uploads the job's files to the Data Store, registers them as a dataset in
// the Entity Store, and creates the customization job.
func (t *NeMo) Submit(ctx context.Context, job Job) (Submission, error) {
	train, validation, err := job.files()
	if err != nil {
		return Submission{}, fmt.Errorf("nemo: %w", err)
	}
	ds := nemoDataset{Namespace: t.o.Namespace, Name: nemoName("downshift-" + job.ID)}
	ds.FilesURL = "hf://datasets/" + ds.Namespace + "/" + ds.Name
	files := []hfFile{{local: train, path: "training/" + filepath.Base(train)}}
	if validation != "" {
		files = append(files, hfFile{local: validation, path: "validation/" + filepath.Base(validation)})
	}
	for _, f := range files {
		ds.Files = append(ds.Files, f.path)
	}
	if err := t.createNamespaces(ctx); err != nil {
		return Submission{}, err
	}
	if err := t.upload(ctx, ds, files); err != nil {
		return Submission{}, err
	}
	if err := t.register(ctx, ds, job); err != nil {
		return Submission{}, err
	}

	h := t.hyperparameters(job.Hyperparameters)
	type lora struct {
		AdapterDim     int     `json:"adapter_dim"`
		Alpha          int     `json:"alpha"`
		AdapterDropout float64 `json:"adapter_dropout,omitempty"`
	}
	type hyper struct {
		TrainingType   string  `json:"training_type"`
		FinetuningType string  `json:"finetuning_type"`
		Epochs         int     `json:"epochs"`
		BatchSize      int     `json:"batch_size"`
		LearningRate   float64 `json:"learning_rate"`
		Lora           lora    `json:"lora"`
	}
	type datasetRef struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	suffix := job.Suffix
	if suffix == "" {
		suffix = "downshift-" + job.ID
	}
	create := struct {
		Config          string     `json:"config"`
		Dataset         datasetRef `json:"dataset"`
		Hyperparameters hyper      `json:"hyperparameters"`
		OutputModel     string     `json:"output_model"`
		Description     string     `json:"description,omitempty"`
	}{
		Config:  job.Base,
		Dataset: datasetRef{ds.Name, ds.Namespace},
		Hyperparameters: hyper{
			TrainingType: "sft", FinetuningType: "lora", Epochs: h.Epochs, BatchSize: h.BatchSize,
			LearningRate: h.LearningRate, Lora: lora{h.Rank, h.Alpha, h.Dropout},
		},
		OutputModel: t.o.Namespace + "/" + nemoName(suffix),
		Description: fmt.Sprintf("downshift tune job %s (workload %s)", job.ID, job.Workload),
	}
	body, err := jsonBody(create)
	if err != nil {
		return Submission{}, err
	}
	var created nemoJob
	_, err = t.api.do(ctx, request{
		op: "create customization job", method: http.MethodPost,
		url: joinURL(t.o.BaseURL, "/v1/customization/jobs"), body: body, contentType: "application/json",
	}, &created)
	if err != nil {
		return Submission{}, err
	}
	if created.ID == "" {
		return Submission{}, errors.New("create customization job: the answer has no job id")
	}
	dataset, _ := json.Marshal(ds)
	return Submission{ExternalID: created.ID, Dataset: dataset}, nil
}

// nemoName makes s a name NeMo and the Data Store take: lower-case letters, digits,
// '-', '_' and '.', at most 64 characters.
func nemoName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

// exists are the statuses with which the services say "already there".
var exists = []int{http.StatusConflict, http.StatusUnprocessableEntity}

func (t *NeMo) createNamespaces(ctx context.Context) error {
	body, err := jsonBody(map[string]string{"id": t.o.Namespace})
	if err != nil {
		return err
	}
	_, err = t.api.do(ctx, request{
		op: "create Entity Store namespace", method: http.MethodPost,
		url: joinURL(t.o.EntityStoreURL, "/v1/namespaces"), body: body, contentType: "application/json", ok: exists,
	}, nil)
	if err != nil {
		return err
	}
	form := url.Values{"namespace": {t.o.Namespace}}.Encode()
	_, err = t.api.do(ctx, request{
		op: "create Data Store namespace", method: http.MethodPost,
		url:  joinURL(t.o.DataStoreURL, "/v1/datastore/namespaces"),
		body: bytesBody([]byte(form)), contentType: "application/x-www-form-urlencoded", ok: exists,
	}, nil)
	return err
}

func (t *NeMo) register(ctx context.Context, ds nemoDataset, job Job) error {
	body, err := jsonBody(map[string]string{
		"name": ds.Name, "namespace": ds.Namespace, "files_url": ds.FilesURL, "project": "downshift",
		"description": fmt.Sprintf("downshift export of workload %s for tune job %s", job.Workload, job.ID),
	})
	if err != nil {
		return err
	}
	_, err = t.api.do(ctx, request{
		op: "register dataset", method: http.MethodPost, url: joinURL(t.o.EntityStoreURL, "/v1/datasets"),
		body: body, contentType: "application/json", ok: []int{http.StatusConflict},
	}, nil)
	return err
}

// hfFile is one file to upload to the Data Store's Hugging Face API.
type hfFile struct {
	local  string // path on this host
	path   string // path in the repository
	size   int64
	sha256 string // hex
	sample []byte // the first 512 bytes
	mode   string // "regular" or "lfs", as preupload says
}

// maxInline is the largest file sent inline in a commit; a service that asks for a
// bigger one inline is refused rather than obeyed with a huge base64 body.
const maxInline = 64 << 20

// hf returns the URL of path under the Data Store's Hugging Face API.
func (t *NeMo) hf(path string) string { return joinURL(t.o.DataStoreURL, "/v1/hf"+path) }

// upload creates the dataset repository and commits files to it.
func (t *NeMo) upload(ctx context.Context, ds nemoDataset, files []hfFile) error {
	body, err := jsonBody(map[string]string{"name": ds.Name, "organization": ds.Namespace, "type": "dataset"})
	if err != nil {
		return err
	}
	_, err = t.api.do(ctx, request{
		op: "create dataset repository", method: http.MethodPost, url: t.hf("/api/repos/create"),
		body: body, contentType: "application/json", ok: []int{http.StatusConflict},
	}, nil)
	if err != nil {
		return err
	}
	for i := range files {
		if err := files[i].hash(); err != nil {
			return fmt.Errorf("upload dataset: %w", err)
		}
	}
	repo := url.PathEscape(ds.Namespace) + "/" + url.PathEscape(ds.Name)
	if err := t.preupload(ctx, repo, files); err != nil {
		return err
	}
	if err := t.uploadLFS(ctx, repo, files); err != nil {
		return err
	}
	return t.commit(ctx, repo, files)
}

// hash reads the file once for its size, SHA-256 and first bytes.
func (f *hfFile) hash() error {
	r, err := os.Open(f.local)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	sample := make([]byte, 512)
	n, err := io.ReadFull(r, sample)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	f.sample = sample[:n]
	h.Write(f.sample)
	rest, err := io.Copy(h, r)
	if err != nil {
		return err
	}
	f.size, f.sha256 = int64(n)+rest, hex.EncodeToString(h.Sum(nil))
	return nil
}

func (t *NeMo) preupload(ctx context.Context, repo string, files []hfFile) error {
	type entry struct {
		Path   string `json:"path"`
		Sample string `json:"sample"`
		Size   int64  `json:"size"`
		Sha    string `json:"sha"`
	}
	var req struct {
		Files []entry `json:"files"`
	}
	for _, f := range files {
		req.Files = append(req.Files, entry{f.path, base64.StdEncoding.EncodeToString(f.sample), f.size, f.sha256})
	}
	body, err := jsonBody(req)
	if err != nil {
		return err
	}
	var resp struct {
		Files []struct {
			Path       string `json:"path"`
			UploadMode string `json:"uploadMode"`
		} `json:"files"`
	}
	_, err = t.api.do(ctx, request{
		op: "preupload dataset files", method: http.MethodPost, url: t.hf("/api/datasets/" + repo + "/preupload/main"),
		body: body, contentType: "application/json",
	}, &resp)
	if err != nil {
		return err
	}
	modes := map[string]string{}
	for _, f := range resp.Files {
		modes[f.Path] = f.UploadMode
	}
	for i := range files {
		switch m := modes[files[i].path]; m {
		case "regular", "lfs":
			files[i].mode = m
		default:
			return fmt.Errorf("preupload dataset files: no upload mode for %s (got %q)", files[i].path, m)
		}
	}
	return nil
}

// uploadLFS sends the files preupload put in LFS mode through the Git LFS batch API.
func (t *NeMo) uploadLFS(ctx context.Context, repo string, files []hfFile) error {
	type object struct {
		Oid  string `json:"oid"`
		Size int64  `json:"size"`
	}
	type action struct {
		Href   string            `json:"href"`
		Header map[string]string `json:"header"`
	}
	var objects []object
	byOid := map[string]hfFile{}
	for _, f := range files {
		if f.mode == "lfs" {
			objects = append(objects, object{f.sha256, f.size})
			byOid[f.sha256] = f
		}
	}
	if len(objects) == 0 {
		return nil
	}
	body, err := jsonBody(map[string]any{
		"operation": "upload", "transfers": []string{"basic"}, "objects": objects, "hash_algo": "sha256",
	})
	if err != nil {
		return err
	}
	var batch struct {
		Objects []struct {
			Oid     string `json:"oid"`
			Size    int64  `json:"size"`
			Actions *struct {
				Upload *action `json:"upload"`
				Verify *action `json:"verify"`
			} `json:"actions"`
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"objects"`
	}
	lfsType := "application/vnd.git-lfs+json"
	_, err = t.api.do(ctx, request{
		op: "request LFS upload", method: http.MethodPost, url: t.hf("/datasets/" + repo + ".git/info/lfs/objects/batch"),
		body: body, contentType: lfsType, header: http.Header{"Accept": {lfsType}},
	}, &batch)
	if err != nil {
		return err
	}
	for _, o := range batch.Objects {
		f, ok := byOid[o.Oid]
		switch {
		case !ok:
			continue
		case o.Error != nil:
			return fmt.Errorf("request LFS upload of %s: %d %s", f.path, o.Error.Code, scrub(o.Error.Message, t.o.APIKey))
		case o.Actions == nil || o.Actions.Upload == nil:
			continue // already stored
		}
		up := o.Actions.Upload
		body := func() (io.ReadCloser, int64, error) {
			r, err := os.Open(f.local)
			if err != nil {
				return nil, 0, err
			}
			return r, f.size, nil
		}
		_, err := t.transfer.do(ctx, request{
			op: "upload " + f.path + " (LFS)", method: http.MethodPut, url: up.Href,
			body: body, contentType: "application/octet-stream", header: headerOf(up.Header),
		}, nil)
		if err != nil {
			return err
		}
		if v := o.Actions.Verify; v != nil {
			vbody, err := jsonBody(object{f.sha256, f.size})
			if err != nil {
				return err
			}
			_, err = t.transfer.do(ctx, request{
				op: "verify " + f.path + " (LFS)", method: http.MethodPost, url: v.Href,
				body: vbody, contentType: lfsType, header: headerOf(v.Header),
			}, nil)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func headerOf(m map[string]string) http.Header {
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// commit adds files to the repository's main branch in one commit.
func (t *NeMo) commit(ctx context.Context, repo string, files []hfFile) error {
	var body strings.Builder
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"key": "header", "value": map[string]string{
		"summary": "downshift: upload fine-tuning data", "description": "",
	}}); err != nil {
		return err
	}
	for _, f := range files {
		var line map[string]any
		if f.mode == "lfs" {
			line = map[string]any{"key": "lfsFile", "value": map[string]any{
				"path": f.path, "algo": "sha256", "oid": f.sha256, "size": f.size,
			}}
		} else {
			if f.size > maxInline {
				return fmt.Errorf("commit dataset files: the Data Store asked for %s (%d bytes) inline, over the %d-byte limit",
					f.path, f.size, maxInline)
			}
			content, err := os.ReadFile(f.local)
			if err != nil {
				return fmt.Errorf("commit dataset files: %w", err)
			}
			line = map[string]any{"key": "file", "value": map[string]any{
				"path": f.path, "encoding": "base64", "content": base64.StdEncoding.EncodeToString(content),
			}}
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	_, err := t.api.do(ctx, request{
		op: "commit dataset files", method: http.MethodPost, url: t.hf("/api/datasets/" + repo + "/commit/main"),
		body: bytesBody([]byte(body.String())), contentType: "application/x-ndjson",
	}, nil)
	return err
}

// nemoStatus is the answer of GET /v1/customization/jobs/ID/status.
type nemoStatus struct {
	Status     string `json:"status"`
	StatusLogs []struct {
		Message string `json:"message"`
		Detail  string `json:"detail"`
	} `json:"status_logs"`
	Metrics struct {
		Metrics map[string][]struct {
			Step  float64 `json:"step"`
			Value float64 `json:"value"`
		} `json:"metrics"`
	} `json:"metrics"`
}

// nemoCursor is where a Poll's log left off: status log entries seen, and the last
// training step whose metrics were logged.
type nemoCursor struct {
	logs int
	step float64
}

func parseNeMoCursor(s string) nemoCursor {
	var c nemoCursor
	if s != "" {
		fmt.Sscanf(s, "%d/%g", &c.logs, &c.step)
	}
	return c
}

func (c nemoCursor) String() string { return fmt.Sprintf("%d/%g", c.logs, c.step) }

// Poll reads the job's status and the status log entries and metric points after
// cursor.
func (t *NeMo) Poll(ctx context.Context, externalID, cursor string) (Status, error) {
	var raw json.RawMessage
	_, err := t.api.do(ctx, request{
		op: "poll customization job", method: http.MethodGet,
		url: joinURL(t.o.BaseURL, "/v1/customization/jobs/"+url.PathEscape(externalID)+"/status"),
	}, &raw)
	if err := notFound(err); err != nil {
		return Status{}, err
	}
	var s nemoStatus
	var top map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		return Status{}, fmt.Errorf("poll customization job: %w", err)
	}
	json.Unmarshal(raw, &top) //nolint:errcheck // the same bytes decoded above

	st := Status{Metrics: numbers(top)}
	delete(st.Metrics, "id")
	if p, ok := st.Metrics["percentage_done"]; ok {
		st.Progress = min(max(p/100, 0), 1)
	}
	c := parseNeMoCursor(cursor)
	for i := c.logs; i < len(s.StatusLogs); i++ {
		l := s.StatusLogs[i]
		line := l.Message
		if l.Detail != "" {
			line += ": " + l.Detail
		}
		st.Logs = append(st.Logs, scrub(line, t.o.APIKey))
	}
	c.logs = max(c.logs, len(s.StatusLogs))
	st.Logs = append(st.Logs, t.metricLines(s, &c, st.Metrics)...)
	st.Cursor = c.String()

	switch s.Status {
	case "created", "pending":
		st.State = store.TuneSubmitted
	case "running", "cancelling":
		st.State = store.TuneRunning
	case "completed", "ready":
		st.State, st.Progress = store.TuneSucceeded, 1
		var j nemoJob
		_, err := t.api.do(ctx, request{
			op: "read customization job", method: http.MethodGet,
			url: joinURL(t.o.BaseURL, "/v1/customization/jobs/"+url.PathEscape(externalID)),
		}, &j)
		if err != nil {
			return Status{}, notFound(err)
		}
		st.Adapter = scrub(j.OutputModel, t.o.APIKey)
		st.Final = scrubJSON(raw, t.o.APIKey)
	case "failed":
		st.State, st.Error = store.TuneFailed, "the job failed"
		for i := len(s.StatusLogs) - 1; i >= 0; i-- {
			if l := s.StatusLogs[i]; l.Detail != "" || l.Message != "" {
				st.Error = strings.TrimPrefix(l.Message+": "+l.Detail, ": ")
				st.Error = strings.TrimSuffix(st.Error, ": ")
				break
			}
		}
		st.Error = scrub(st.Error, t.o.APIKey)
	case "cancelled":
		st.State = store.TuneCanceled
	default:
		return Status{}, fmt.Errorf("poll customization job: status %q", s.Status)
	}
	return st, nil
}

// metricLines turns the metric points after c.step into log lines, one a step, and
// puts the latest value of each series into latest.
func (t *NeMo) metricLines(s nemoStatus, c *nemoCursor, latest map[string]float64) []string {
	byStep := map[float64][]string{}
	var steps []float64
	last := c.step
	names := make([]string, 0, len(s.Metrics.Metrics))
	for name := range s.Metrics.Metrics {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		series := s.Metrics.Metrics[name]
		if len(series) > 0 {
			latest[name] = series[len(series)-1].Value
		}
		for _, p := range series {
			if p.Step <= c.step {
				continue
			}
			if _, seen := byStep[p.Step]; !seen {
				steps = append(steps, p.Step)
			}
			byStep[p.Step] = append(byStep[p.Step], fmt.Sprintf("%s %.6g", name, p.Value))
			last = max(last, p.Step)
		}
	}
	slices.Sort(steps)
	lines := make([]string, 0, len(steps))
	for _, step := range steps {
		lines = append(lines, fmt.Sprintf("step %g %s", step, strings.Join(byStep[step], " ")))
	}
	c.step = last
	return lines
}

// Cancel asks Customizer to cancel the job.
func (t *NeMo) Cancel(ctx context.Context, externalID string) error {
	_, err := t.api.do(ctx, request{
		op: "cancel customization job", method: http.MethodPost,
		url: joinURL(t.o.BaseURL, "/v1/customization/jobs/"+url.PathEscape(externalID)+"/cancel"),
	}, nil)
	return notFound(err)
}
