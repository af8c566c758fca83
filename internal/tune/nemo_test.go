package tune

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// fakeNeMo is NeMo Entity Store, Data Store (its Hugging Face API, with Git LFS) and
// Customizer behind one ingress, as NeMo Microservices 25.x documents them, with
// FastAPI's {"detail": ...} errors. Uploaded LFS objects go to a separate object
// store, which must never see the API key.
type fakeNeMo struct {
	t       *testing.T
	srv     *httptest.Server
	objects *httptest.Server // where LFS upload URLs point
	script  []string         // statuses a job walks through, one per status GET
	lfs     bool             // preupload puts every file in LFS mode

	mu              sync.Mutex
	hits            map[string]int
	failFirst       map[string][]int
	failWith        string
	namespaces      map[string]bool // "entity:default", "datastore:default"
	repos           map[string]bool
	files           map[string][]byte // "ns/name/training/train.jsonl" -> content
	objectsStored   map[string][]byte // oid -> content
	objectAuth      []string          // Authorization headers the object store saw
	datasets        map[string]map[string]any
	jobs            map[string]*fakeNeMoJob
	creates         []map[string]any
	canceled        []string
	failedDetail    string
	completedDetail string
	nextID          int
	verifiedObjects int
}

type fakeNeMoJob struct {
	id, outputModel, status string
	step                    int
	logs                    []map[string]any
	train, val              []map[string]any
}

func newFakeNeMo(t *testing.T, script ...string) *fakeNeMo {
	f := &fakeNeMo{t: t, script: script, hits: map[string]int{}, failFirst: map[string][]int{},
		namespaces: map[string]bool{}, repos: map[string]bool{}, files: map[string][]byte{},
		objectsStored: map[string][]byte{}, datasets: map[string]map[string]any{}, jobs: map[string]*fakeNeMoJob{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.objects = httptest.NewServer(http.HandlerFunc(f.serveObjects))
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.objects.Close)
	return f
}

func (f *fakeNeMo) trainer(t *testing.T) *NeMo {
	return NewNeMo(NeMoOptions{Name: "nemo", BaseURL: f.srv.URL, Namespace: "downshift", APIKey: testKey,
		HTTPClient: testClient(t), Retry: fastRetry,
		Hyperparameters: config.Hyperparameters{Rank: 32, Epochs: 2}})
}

func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"detail": msg})
}

func (f *fakeNeMo) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+testKey {
		detail(w, http.StatusUnauthorized, "not authenticated")
		return
	}
	p := r.URL.Path
	route := r.Method + " " + p
	if strings.HasPrefix(p, "/v1/customization/jobs/") {
		route = r.Method + " /v1/customization/jobs/{id}" + strings.TrimPrefix(strings.TrimPrefix(p, "/v1/customization/jobs/"), strings.Split(strings.TrimPrefix(p, "/v1/customization/jobs/"), "/")[0])
	}
	f.hits[route]++
	if fails := f.failFirst[route]; len(fails) > 0 {
		f.failFirst[route] = fails[1:]
		detail(w, fails[0], f.failWith)
		return
	}
	switch {
	case route == "POST /v1/namespaces":
		var b struct{ ID string }
		json.NewDecoder(r.Body).Decode(&b)
		f.namespace(w, "entity:"+b.ID)
	case route == "POST /v1/datastore/namespaces":
		if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			detail(w, http.StatusUnprocessableEntity, "namespace: field required")
			return
		}
		f.namespace(w, "datastore:"+r.FormValue("namespace"))
	case route == "POST /v1/hf/api/repos/create":
		var b struct{ Name, Organization, Type string }
		json.NewDecoder(r.Body).Decode(&b)
		if b.Type != "dataset" || !f.namespaces["datastore:"+b.Organization] {
			detail(w, http.StatusBadRequest, "bad repo "+b.Organization+"/"+b.Name+" of type "+b.Type)
			return
		}
		repo := b.Organization + "/" + b.Name
		if f.repos[repo] {
			detail(w, http.StatusConflict, "You already created this dataset repo")
			return
		}
		f.repos[repo] = true
		writeJSON(w, http.StatusOK, map[string]any{"url": f.srv.URL + "/v1/hf/datasets/" + repo})
	case strings.HasPrefix(p, "/v1/hf/api/datasets/") && strings.HasSuffix(p, "/preupload/main"):
		f.preupload(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/v1/hf/api/datasets/"), "/preupload/main"))
	case strings.HasPrefix(p, "/v1/hf/api/datasets/") && strings.HasSuffix(p, "/commit/main"):
		f.commit(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/v1/hf/api/datasets/"), "/commit/main"))
	case strings.HasPrefix(p, "/v1/hf/datasets/") && strings.HasSuffix(p, ".git/info/lfs/objects/batch"):
		f.batch(w, r)
	case route == "POST /v1/datasets":
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		key := fmt.Sprint(b["namespace"], "/", b["name"])
		if !f.namespaces["entity:"+fmt.Sprint(b["namespace"])] {
			detail(w, http.StatusNotFound, "namespace not found")
			return
		}
		f.datasets[key] = b
		writeJSON(w, http.StatusOK, b)
	case route == "POST /v1/customization/jobs":
		f.create(w, r)
	case route == "GET /v1/customization/jobs/{id}/status":
		f.status(w, strings.Split(strings.TrimPrefix(p, "/v1/customization/jobs/"), "/")[0])
	case route == "GET /v1/customization/jobs/{id}":
		j, ok := f.jobs[strings.TrimPrefix(p, "/v1/customization/jobs/")]
		if !ok {
			detail(w, http.StatusNotFound, "Customization job not found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": j.id, "status": j.status, "output_model": j.outputModel})
	case route == "POST /v1/customization/jobs/{id}/cancel":
		id := strings.Split(strings.TrimPrefix(p, "/v1/customization/jobs/"), "/")[0]
		j, ok := f.jobs[id]
		if !ok {
			detail(w, http.StatusNotFound, "Customization job not found")
			return
		}
		f.canceled = append(f.canceled, id)
		j.status = "cancelled"
		writeJSON(w, http.StatusOK, map[string]any{"id": j.id, "status": j.status, "output_model": j.outputModel})
	default:
		detail(w, http.StatusNotFound, "Not Found: "+route)
	}
}

func (f *fakeNeMo) namespace(w http.ResponseWriter, key string) {
	if f.namespaces[key] {
		detail(w, http.StatusConflict, "namespace already exists")
		return
	}
	f.namespaces[key] = true
	writeJSON(w, http.StatusCreated, map[string]any{"id": strings.SplitN(key, ":", 2)[1]})
}

func (f *fakeNeMo) preupload(w http.ResponseWriter, r *http.Request, repo string) {
	if !f.repos[repo] {
		detail(w, http.StatusNotFound, "Repository not found")
		return
	}
	var b struct {
		Files []struct {
			Path, Sample, Sha string
			Size              int64
		}
	}
	json.NewDecoder(r.Body).Decode(&b)
	var out []map[string]any
	for _, fl := range b.Files {
		if _, err := base64.StdEncoding.DecodeString(fl.Sample); err != nil || fl.Size == 0 || len(fl.Sha) != 64 {
			detail(w, http.StatusBadRequest, "bad preupload entry for "+fl.Path)
			return
		}
		mode := "regular"
		if f.lfs {
			mode = "lfs"
		}
		out = append(out, map[string]any{"path": fl.Path, "uploadMode": mode, "shouldIgnore": false})
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": out})
}

func (f *fakeNeMo) batch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Accept") != "application/vnd.git-lfs+json" {
		detail(w, http.StatusNotAcceptable, "want the LFS media type")
		return
	}
	var b struct {
		Operation string
		Transfers []string
		Objects   []struct {
			Oid  string
			Size int64
		}
	}
	json.NewDecoder(r.Body).Decode(&b)
	if b.Operation != "upload" || !slices.Contains(b.Transfers, "basic") {
		detail(w, http.StatusBadRequest, "upload with basic transfer only")
		return
	}
	var objs []map[string]any
	for _, o := range b.Objects {
		objs = append(objs, map[string]any{"oid": o.Oid, "size": o.Size, "authenticated": true,
			"actions": map[string]any{
				"upload": map[string]any{"href": f.objects.URL + "/put/" + o.Oid, "header": map[string]string{"X-Amz-Signature": "sig-" + o.Oid[:8]}},
				"verify": map[string]any{"href": f.objects.URL + "/verify", "header": map[string]string{"X-Verify": "yes"}},
			}})
	}
	w.Header().Set("Content-Type", "application/vnd.git-lfs+json")
	json.NewEncoder(w).Encode(map[string]any{"transfer": "basic", "objects": objs})
}

func (f *fakeNeMo) serveObjects(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objectAuth = append(f.objectAuth, r.Header.Get("Authorization"))
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/put/"):
		oid := strings.TrimPrefix(r.URL.Path, "/put/")
		if r.Header.Get("X-Amz-Signature") != "sig-"+oid[:8] {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		data, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != oid {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.objectsStored[oid] = data
	case r.Method == http.MethodPost && r.URL.Path == "/verify" && r.Header.Get("X-Verify") == "yes":
		var o struct {
			Oid  string
			Size int64
		}
		json.NewDecoder(r.Body).Decode(&o)
		if int64(len(f.objectsStored[o.Oid])) != o.Size {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		f.verifiedObjects++
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func (f *fakeNeMo) commit(w http.ResponseWriter, r *http.Request, repo string) {
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		detail(w, http.StatusUnsupportedMediaType, "want NDJSON")
		return
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	first := true
	for sc.Scan() {
		var line struct {
			Key   string
			Value map[string]any
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			detail(w, http.StatusBadRequest, "bad NDJSON line")
			return
		}
		if first != (line.Key == "header") {
			detail(w, http.StatusBadRequest, "the header must come first, once")
			return
		}
		first = false
		path := fmt.Sprint(line.Value["path"])
		switch line.Key {
		case "file":
			data, err := base64.StdEncoding.DecodeString(fmt.Sprint(line.Value["content"]))
			if err != nil || line.Value["encoding"] != "base64" {
				detail(w, http.StatusBadRequest, "bad file content")
				return
			}
			f.files[repo+"/"+path] = data
		case "lfsFile":
			data, ok := f.objectsStored[fmt.Sprint(line.Value["oid"])]
			if !ok || line.Value["algo"] != "sha256" {
				detail(w, http.StatusBadRequest, "LFS object not uploaded: "+path)
				return
			}
			f.files[repo+"/"+path] = data
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"commitOid": "abc123", "commitUrl": f.srv.URL + "/commit/abc123"})
}

func (f *fakeNeMo) create(w http.ResponseWriter, r *http.Request) {
	var b map[string]any
	json.NewDecoder(r.Body).Decode(&b)
	f.creates = append(f.creates, b)
	ds, _ := b["dataset"].(map[string]any)
	key := fmt.Sprint(ds["namespace"], "/", ds["name"])
	if _, ok := f.datasets[key]; !ok {
		detail(w, http.StatusNotFound, "dataset "+key+" not found")
		return
	}
	f.nextID++
	j := &fakeNeMoJob{id: fmt.Sprintf("cust-%03dJGTaMbJMdqjJU8WbQdN9Q2", f.nextID),
		outputModel: fmt.Sprint(b["output_model"]) + "@v1", status: f.script[0]}
	f.jobs[j.id] = j
	writeJSON(w, http.StatusOK, map[string]any{"id": j.id, "status": j.status, "output_model": j.outputModel,
		"config": map[string]any{"base_model": b["config"]}, "dataset": key, "hyperparameters": b["hyperparameters"]})
}

// status answers the status GET and moves the job one status on.
func (f *fakeNeMo) status(w http.ResponseWriter, id string) {
	j, ok := f.jobs[id]
	if !ok {
		detail(w, http.StatusNotFound, "Customization job not found")
		return
	}
	done := float64(len(j.train)) * 25
	writeJSON(w, http.StatusOK, map[string]any{
		"created_at": "2025-04-04T15:24:29.220140", "updated_at": "2025-04-04T15:24:29.220140",
		"status": j.status, "steps_completed": len(j.train) * 10, "epochs_completed": len(j.train) / 2,
		"percentage_done": done, "elapsed_time": 12.5,
		"metrics": map[string]any{"keys": []string{"train_loss", "val_loss"},
			"metrics": map[string]any{"train_loss": j.train, "val_loss": j.val}},
		"status_logs": j.logs,
	})
	if j.status == "cancelled" || j.step+1 >= len(f.script) {
		return
	}
	j.step++
	j.status = f.script[j.step]
	switch j.status {
	case "running":
		if len(j.logs) == 0 {
			j.logs = append(j.logs, map[string]any{"updated_at": "2025-04-04T15:25:00", "message": "Running", "detail": "training started"})
		}
		step := (len(j.train) + 1) * 10
		j.train = append(j.train, map[string]any{"step": step, "value": 2.0 / float64(step), "timestamp": "2025-04-04T15:26:00"})
		if step%20 == 0 {
			j.val = append(j.val, map[string]any{"step": step, "value": 2.5 / float64(step), "timestamp": "2025-04-04T15:26:00"})
		}
	case "completed":
		j.logs = append(j.logs, map[string]any{"message": "Completed", "detail": f.completedDetail})
	case "failed":
		j.logs = append(j.logs, map[string]any{"message": "Failed", "detail": f.failedDetail})
	}
}

func TestNeMoUploadsRegistersAndTrains(t *testing.T) {
	for _, lfs := range []bool{false, true} {
		t.Run(fmt.Sprintf("lfs=%t", lfs), func(t *testing.T) {
			f := newFakeNeMo(t, "created", "pending", "running", "running", "running", "running", "completed")
			f.lfs = lfs
			// The final status, kept as the job's report, carries the key.
			f.completedDetail = "adapter uploaded with token " + testKey
			st := trainStore(t)
			stored, job := newJob(t, st, "nemo", "meta/llama-3.2-1b-instruct@v1.0.0+A100")
			job.Hyperparameters = config.Hyperparameters{Alpha: 16, Dropout: 0.1}
			got, err := Run(context.Background(), st, f.trainer(t), job, fastRun)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			name := nemoName("downshift-" + stored.ID)
			if got.Status != store.TuneSucceeded || got.Adapter != "downshift/"+name+"@v1" {
				t.Fatalf("Run = %s %q, adapter %q; want succeeded with the output model", got.Status, got.Error, got.Adapter)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if !f.namespaces["entity:downshift"] || !f.namespaces["datastore:downshift"] {
				t.Errorf("namespaces %v, want downshift in both stores", f.namespaces)
			}
			for local, remote := range map[string]string{exportTrain: "training/" + exportTrain, exportValidation: "validation/" + exportValidation} {
				want, _ := os.ReadFile(filepath.Join(job.DataDir, local))
				if got := f.files["downshift/"+name+"/"+remote]; string(got) != string(want) {
					t.Errorf("%s in the Data Store = %q, want the file's content", remote, got)
				}
			}
			if lfs {
				if f.verifiedObjects != 2 {
					t.Errorf("%d LFS objects verified, want 2", f.verifiedObjects)
				}
				for _, auth := range f.objectAuth {
					if auth != "" {
						t.Errorf("the object store got an Authorization header: %q", auth)
					}
				}
			}
			if ds := f.datasets["downshift/"+name]; ds["files_url"] != "hf://datasets/downshift/"+name {
				t.Errorf("registered dataset %v, want files_url hf://datasets/downshift/%s", ds, name)
			}
			want := map[string]any{
				"config":  "meta/llama-3.2-1b-instruct@v1.0.0+A100",
				"dataset": map[string]any{"name": name, "namespace": "downshift"},
				"hyperparameters": map[string]any{"training_type": "sft", "finetuning_type": "lora", "epochs": 2,
					"batch_size": 8, "learning_rate": 0.0002, "lora": map[string]any{"adapter_dim": 32, "alpha": 16, "adapter_dropout": 0.1}},
				"output_model": "downshift/" + name,
				"description":  fmt.Sprintf("downshift tune job %s (workload wl-billing)", stored.ID),
			}
			if len(f.creates) != 1 || !jsonEqual(f.creates[0], want) {
				t.Errorf("create body =\n%v\nwant\n%v", f.creates, want)
			}
			rep, _ := ParseReport(got.Metrics)
			if rep.Progress != 1 || rep.Metrics["train_loss"] == 0 || rep.Metrics["epochs_completed"] != 2 ||
				!strings.Contains(string(rep.Final), `"status_logs"`) {
				t.Errorf("report %+v, want progress 1 and the last figures", rep)
			}
			log := logText(t, st, stored.ID)
			for _, want := range []string{"Running: training started\n", "step 10 train_loss 0.2\n",
				"step 20 train_loss 0.1 val_loss 0.125\n", "step 40 train_loss 0.05 val_loss 0.0625\n",
				"Completed: adapter uploaded with token [REDACTED]\n"} {
				if strings.Count(log, want) != 1 {
					t.Errorf("log has %q %d times, want once:\n%s", want, strings.Count(log, want), log)
				}
			}
			var dsRec nemoDataset
			if err := json.Unmarshal(got.Dataset, &dsRec); err != nil || dsRec.Name != name || len(dsRec.Files) != 2 {
				t.Errorf("Dataset = %s", got.Dataset)
			}
			assertNoSecret(t, st, stored.ID)
		})
	}
}

func TestNeMoSecondJobReusesNamespacesAndRetries5xx(t *testing.T) {
	f := newFakeNeMo(t, "running", "completed")
	f.failFirst["POST /v1/customization/jobs"] = []int{http.StatusBadGateway, http.StatusServiceUnavailable}
	f.failFirst["GET /v1/customization/jobs/{id}/status"] = []int{http.StatusInternalServerError}
	f.failWith = "upstream connect error"
	st := trainStore(t)
	tr := f.trainer(t)
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, job := newJob(t, st, "nemo", "meta/llama-3.2-1b-instruct@v1.0.0+A100")
			got, err := Run(context.Background(), st, tr, job, fastRun)
			if err != nil || got.Status != store.TuneSucceeded {
				t.Fatalf("Run = %s %q, %v; want succeeded", got.Status, got.Error, err)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.hits["POST /v1/customization/jobs"]; n != 4 {
		t.Errorf("job creates: %d, want 4 (two 5xx retried, then two jobs)", n)
	}
	if n := f.hits["POST /v1/namespaces"]; n != 2 {
		t.Errorf("namespace creates: %d, want 2 (the second answered 409 and taken as done)", n)
	}
}

func TestNeMoRejectedUploadFailsTheJobWithoutTheKey(t *testing.T) {
	f := newFakeNeMo(t, "running")
	f.failFirst["POST /v1/hf/api/repos/create"] = []int{http.StatusForbidden}
	f.failWith = "token " + testKey + " may not write to namespace downshift"
	st := trainStore(t)
	logger, logged := capture()
	stored, job := newJob(t, st, "nemo", "meta/llama-3.2-1b-instruct@v1.0.0+A100")
	o := fastRun
	o.Logger = logger
	got, err := Run(context.Background(), st, f.trainer(t), job, o)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.TuneFailed || !strings.Contains(got.Error, "create dataset repository: HTTP 403: token [REDACTED] may not write") {
		t.Errorf("Run = %s %q; want failed naming the step and the service's message, keyless", got.Status, got.Error)
	}
	assertNoSecret(t, st, stored.ID, logged.String())
}

func TestNeMoFailedJobKeepsTheLastStatusLog(t *testing.T) {
	f := newFakeNeMo(t, "pending", "running", "failed")
	f.failedDetail = "NotEnoughResources: 0/4 nodes have a free GPU (auth Bearer " + testKey + ")"
	st := trainStore(t)
	stored, job := newJob(t, st, "nemo", "meta/llama-3.2-1b-instruct@v1.0.0+A100")
	got, err := Run(context.Background(), st, f.trainer(t), job, fastRun)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.TuneFailed || !strings.HasPrefix(got.Error, "Failed: NotEnoughResources: 0/4 nodes have a free GPU") {
		t.Errorf("Run = %s %q; want failed with the status log's detail", got.Status, got.Error)
	}
	assertNoSecret(t, st, stored.ID)
}

func TestNeMoCancelledRunCancelsTheJob(t *testing.T) {
	f := newFakeNeMo(t, "pending", "running", "running", "running", "running", "running", "running", "completed")
	st := trainStore(t)
	stored, job := newJob(t, st, "nemo", "meta/llama-3.2-1b-instruct@v1.0.0+A100")
	ctx, cancel := context.WithCancel(context.Background())
	o := fastRun
	o.OnUpdate = func(j store.TuneJob) {
		if j.Status == store.TuneRunning {
			cancel()
		}
	}
	got, err := Run(ctx, st, f.trainer(t), job, o)
	if !errors.Is(err, context.Canceled) || got.Status != store.TuneCanceled {
		t.Fatalf("Run = %s, %v; want canceled and context.Canceled", got.Status, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.canceled) != 1 || f.canceled[0] != got.ExternalID {
		t.Errorf("cancelled at Customizer: %v, want %s", f.canceled, got.ExternalID)
	}
	if s, _ := st.GetTuneJob(context.Background(), stored.ID); s.Status != store.TuneCanceled {
		t.Errorf("stored %s, want canceled", s.Status)
	}
}

func TestNeMoUnknownJob(t *testing.T) {
	f := newFakeNeMo(t, "running")
	tr := f.trainer(t)
	if _, err := tr.Poll(context.Background(), "cust-gone", ""); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("Poll(unknown) error = %v, want ErrUnknownJob", err)
	}
	if err := tr.Cancel(context.Background(), "cust-gone"); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("Cancel(unknown) error = %v, want ErrUnknownJob", err)
	}
}

func TestNeMoNamesAreWhatTheServicesTake(t *testing.T) {
	for in, want := range map[string]string{
		"downshift-01JZ8Q3N5V0W2X4Y6Z8A0B2C4D": "downshift-01jz8q3n5v0w2x4y6z8a0b2c4d",
		"Billing Agent / v2":                   "billing-agent---v2",
		strings.Repeat("a", 80):                strings.Repeat("a", 64),
	} {
		if got := nemoName(in); got != want {
			t.Errorf("nemoName(%q) = %q, want %q", in, got, want)
		}
	}
}
