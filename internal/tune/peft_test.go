package tune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// fakePEFT returns a PEFT trainer that runs testdata/fake_train.sh in mode.
func fakePEFT(t *testing.T, mode string, env ...string) *PEFT {
	t.Helper()
	script, err := filepath.Abs("testdata/fake_train.sh")
	if err != nil {
		t.Fatal(err)
	}
	return NewPEFT(PEFTOptions{Name: "gpu", Python: "/bin/sh", Script: script,
		Env:             append([]string{"FAKE_MODE=" + mode}, env...),
		Hyperparameters: config.Hyperparameters{Rank: 8, Epochs: 2}, KillGrace: 2 * time.Second})
}

func TestPEFTTrainsAndReportsTheAdapter(t *testing.T) {
	st := trainStore(t)
	argsFile := filepath.Join(t.TempDir(), "args")
	tr := fakePEFT(t, "ok", "FAKE_ARGS="+argsFile)
	stored, job := newJob(t, st, "gpu", TinyRandomLlama)
	job.Hyperparameters, job.MaxSteps, job.Seed = config.Hyperparameters{LearningRate: 1e-3, Dropout: 0.05}, 30, 7
	got, err := Run(context.Background(), st, tr, job, fastRun)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got.Status != store.TuneSucceeded || got.Adapter != filepath.Join(job.OutDir, "adapter") {
		t.Fatalf("Run = %s %q, adapter %q; want succeeded with OUT/adapter", got.Status, got.Error, got.Adapter)
	}
	args, _ := os.ReadFile(argsFile)
	want := []string{"--data", job.DataDir, "--out", job.OutDir, "--tiny-random-llama", "--rank", "8", "--alpha", "32",
		"--dropout", "0.05", "--epochs", "2", "--lr", "0.001", "--batch-size", "8", "--max-length", "2048",
		"--max-steps", "30", "--seed", "7"}
	if got := strings.Fields(string(args)); !slices.Equal(got, want) {
		t.Errorf("script arguments\n got %q\nwant %q", got, want)
	}
	rep, err := ParseReport(got.Metrics)
	if err != nil || rep.Progress != 1 || rep.Metrics["val_loss"] != 2.75 || rep.Metrics["step"] != 30 {
		t.Errorf("report %+v (%v), want progress 1 and the done event's figures", rep, err)
	}
	var final map[string]any
	if err := json.Unmarshal(rep.Final, &final); err != nil || final["status"] != "succeeded" || final["steps"] != 30.0 {
		t.Errorf("final report %s (%v), want metrics.json", rep.Final, err)
	}
	var ds map[string]string
	if json.Unmarshal(got.Dataset, &ds); ds["data_dir"] != job.DataDir {
		t.Errorf("Dataset = %s, want the data directory", got.Dataset)
	}
	log := logText(t, st, stored.ID)
	for _, want := range []string{`{"event": "start"`, `"step": 20`, "stderr: loading base model", "stderr: training: 30%|###  |",
		`{"event": "done"`} {
		if strings.Count(log, want) != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", want, strings.Count(log, want), log)
		}
	}
	if !strings.HasPrefix(log, "downshift: submitted to gpu as local-"+stored.ID+"-pid") {
		t.Errorf("log does not start with the submission:\n%s", log)
	}
}

func TestPEFTFailureKeepsTheErrorEventAndStderr(t *testing.T) {
	st := trainStore(t)
	stored, job := newJob(t, st, "gpu", "meta-llama/Llama-3.2-1B-Instruct")
	got, err := Run(context.Background(), st, fakePEFT(t, "fail"), job, fastRun)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"exit status 1: OutOfMemoryError: CUDA out of memory", "\nstderr: loading base model\nTraceback",
		"torch.OutOfMemoryError"} {
		if got.Status != store.TuneFailed || !strings.Contains(got.Error, want) {
			t.Errorf("Run = %s, error %q; want failed, with %q", got.Status, got.Error, want)
		}
	}
	rep, _ := ParseReport(got.Metrics)
	if rep.Metrics["loss"] != 4.1 || rep.Progress == 0 {
		t.Errorf("report %+v, want the last step's loss and progress", rep)
	}
	if !strings.Contains(logText(t, st, stored.ID), `{"event": "error"`) {
		t.Errorf("the error event is not in the log")
	}
}

func TestPEFTCrashWithoutEventsFailsWithStderrTail(t *testing.T) {
	for mode, want := range map[string]string{
		"crash":  "exit status 3\nstderr: loading base model\nerror: torch is not installed on this host",
		"silent": "the script exited without reporting done\nstderr: loading base model",
	} {
		t.Run(mode, func(t *testing.T) {
			st := trainStore(t)
			_, job := newJob(t, st, "gpu", TinyRandomLlama)
			got, err := Run(context.Background(), st, fakePEFT(t, mode), job, fastRun)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != store.TuneFailed || got.Error != want {
				t.Errorf("Run = %s %q; want failed %q", got.Status, got.Error, want)
			}
		})
	}
}

func TestPEFTCannotStartFailsTheJob(t *testing.T) {
	st := trainStore(t)
	_, job := newJob(t, st, "gpu", TinyRandomLlama)
	tr := NewPEFT(PEFTOptions{Name: "gpu", Python: filepath.Join(t.TempDir(), "no-python")})
	got, err := Run(context.Background(), st, tr, job, fastRun)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.TuneFailed || !strings.Contains(got.Error, "submit: peft: start") {
		t.Errorf("Run = %s %q; want failed at start", got.Status, got.Error)
	}
}

// stopped reports whether pid ends within a second: a process that has closed its
// output (which is what the driver waits for) may still be tearing down.
func stopped(pid int) bool {
	for range 100 {
		if !alive(pid) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// alive reports whether pid is a live process (a zombie is not).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		return len(fields) > 0 && fields[0] != "Z"
	}
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

func childPID(t *testing.T, out string) int {
	t.Helper()
	for range 200 {
		if b, err := os.ReadFile(filepath.Join(out, "child.pid")); err == nil && len(b) > 1 {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the script wrote no child.pid")
	return 0
}

func TestPEFTCancelStopsTheProcessGroup(t *testing.T) {
	for _, tt := range []struct {
		mode    string
		atLeast time.Duration // a stubborn script holds out until SIGKILL
		event   string        // what the script says last
	}{
		{"slow", 0, `{"event": "cancelled"`},
		{"stubborn", 2 * time.Second, ""},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			st := trainStore(t)
			stored, job := newJob(t, st, "gpu", TinyRandomLlama)
			ctx, cancel := context.WithCancel(context.Background())
			var child int
			o := fastRun
			o.PollInterval = 20 * time.Millisecond
			o.OnUpdate = func(j store.TuneJob) {
				if rep, _ := ParseReport(j.Metrics); rep.Metrics["step"] >= 3 && child == 0 {
					child = childPID(t, job.OutDir)
					cancel()
				}
			}
			start := time.Now()
			got, err := Run(ctx, st, fakePEFT(t, tt.mode), job, o)
			if !errors.Is(err, context.Canceled) || got.Status != store.TuneCanceled {
				t.Fatalf("Run = %s %q, %v; want canceled", got.Status, got.Error, err)
			}
			if d := time.Since(start); d < tt.atLeast {
				t.Errorf("stopped after %v, before the %v grace", d, tt.atLeast)
			}
			if child == 0 || !stopped(child) {
				t.Errorf("the script's child %d outlived the cancellation", child)
			}
			if log := logText(t, st, stored.ID); tt.event != "" && !strings.Contains(log, tt.event) {
				t.Errorf("log lacks the script's last event %s:\n%s", tt.event, log)
			}
		})
	}
}

func TestPEFTCancelJobFromAnotherProcess(t *testing.T) {
	st := trainStore(t)
	stored, job := newJob(t, st, "gpu", TinyRandomLlama)
	started := make(chan struct{})
	o := fastRun
	o.PollInterval = 20 * time.Millisecond
	o.OnUpdate = func(j store.TuneJob) {
		if rep, _ := ParseReport(j.Metrics); rep.Metrics["step"] >= 2 {
			select {
			case <-started:
			default:
				close(started)
			}
		}
	}
	done := make(chan store.TuneJob)
	go func() {
		got, err := Run(context.Background(), st, fakePEFT(t, "slow"), job, o)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- got
	}()
	<-started
	// `downshift tune cancel` in another process: a PEFT trainer that did not start
	// the job, so only the store carries the request.
	if _, err := CancelJob(context.Background(), st, fakePEFT(t, "slow"), stored.ID, time.Now()); err != nil {
		t.Fatalf("CancelJob: %v", err)
	}
	got := <-done
	if got.Status != store.TuneCanceled {
		t.Errorf("Run ended %s, want canceled", got.Status)
	}
	if child := childPID(t, job.OutDir); !stopped(child) {
		t.Errorf("the script's child %d outlived the cancellation", child)
	}
	if log := logText(t, st, stored.ID); !strings.Contains(log, "stopped at gpu") {
		t.Errorf("log lacks the supervisor stopping the process:\n%s", log)
	}
}

func TestPEFTUnknownRunAfterRestart(t *testing.T) {
	st := trainStore(t)
	stored, job := newJob(t, st, "gpu", TinyRandomLlama)
	// A job a previous downshift started: the store has its id, this process no run.
	j, _ := st.GetTuneJob(context.Background(), stored.ID)
	j.ExternalID, j.Status = "local-"+stored.ID+"-pid4242", store.TuneRunning
	if err := st.UpdateTuneJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	tr := fakePEFT(t, "ok")
	got, err := Run(context.Background(), st, tr, job, fastRun)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.TuneFailed || !strings.Contains(got.Error, "does not know this job") {
		t.Errorf("Run = %s %q; want failed: the process is gone", got.Status, got.Error)
	}
	if err := tr.Cancel(context.Background(), j.ExternalID); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("Cancel(unknown) = %v, want ErrUnknownJob", err)
	}
}

func TestPEFTDryRun(t *testing.T) {
	_, job := newJob(t, trainStore(t), "gpu", TinyRandomLlama)
	job.OutDir = ""
	res, err := fakePEFT(t, "ok").DryRun(context.Background(), job)
	if err != nil || !res.OK || !strings.Contains(string(res.Summary), `"total_steps": 3`) {
		t.Errorf("DryRun = %+v, %v; want an ok summary", res, err)
	}
	res, err = fakePEFT(t, "invalid").DryRun(context.Background(), job)
	if err != nil || res.OK || !strings.Contains(res.Stderr, "arguments is not a JSON string") {
		t.Errorf("DryRun(invalid) = %+v, %v; want a summary that is not ok, and the reason", res, err)
	}
	_, err = fakePEFT(t, "crash").DryRun(context.Background(), job)
	if err == nil || !strings.Contains(err.Error(), "exit status 2\nstderr: python3: can't open file") {
		t.Errorf("DryRun(crash) error = %v, want the exit status and stderr", err)
	}
}

func TestPEFTLogCursorDropsOnlyWhatOverflowed(t *testing.T) {
	r := &peftRun{}
	for i := range maxPendingLines + maxPendingLines/4 + 1 {
		r.log(strconv.Itoa(i))
	}
	st := r.status(0)
	if !strings.HasPrefix(st.Logs[0], "(") || st.Logs[1] != strconv.Itoa(r.base) {
		t.Fatalf("first lines %q, want a note of the dropped lines then line %d", st.Logs[:2], r.base)
	}
	next := r.status(mustAtoi(t, st.Cursor))
	if len(next.Logs) != 0 || next.Cursor != st.Cursor {
		t.Errorf("second status: %d lines, cursor %s; want none, same cursor", len(next.Logs), next.Cursor)
	}
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The driver's command line is the real script's: its dry run, which needs only
// python3, accepts every flag the driver passes and reads back the same values.
func TestPEFTDriverSpeaksTheRealScriptsFlags(t *testing.T) {
	if _, err := exec.LookPath(DefaultPython); err != nil {
		t.Skip("no python3 on this host")
	}
	script, _ := filepath.Abs(filepath.Join("..", "..", DefaultScript))
	data, _ := filepath.Abs("../../trainers/peft/testdata/ok")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("no PEFT script: %v", err)
	}
	tr := NewPEFT(PEFTOptions{Name: "gpu", Script: script, Hyperparameters: config.Hyperparameters{Rank: 8, Dropout: 0.1}})
	for _, base := range []string{TinyRandomLlama, "meta-llama/Llama-3.2-1B-Instruct"} {
		job := Job{ID: "tj-1", Base: base, DataDir: data, MaxSteps: 5, Seed: 3,
			Hyperparameters: config.Hyperparameters{LearningRate: 1e-3, MaxLength: 4096}}
		res, err := tr.DryRun(context.Background(), job)
		if err != nil || !res.OK {
			t.Fatalf("%s: DryRun = ok %t, %v\n%s\n%s", base, res.OK, err, res.Summary, res.Stderr)
		}
		var sum struct {
			Model           string         `json:"model"`
			Hyperparameters map[string]any `json:"hyperparameters"`
		}
		if err := json.Unmarshal(res.Summary, &sum); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"rank": 8.0, "alpha": 32.0, "dropout": 0.1, "epochs": 3.0, "max_steps": 5.0,
			"lr": 0.001, "batch_size": 8.0, "max_length": 4096.0, "seed": 3.0, "qlora": false}
		for k, v := range want {
			if sum.Hyperparameters[k] != v {
				t.Errorf("%s: the script read %s = %v, want %v", base, k, sum.Hyperparameters[k], v)
			}
		}
		if sum.Model != base {
			t.Errorf("the script's model = %q, want %q", sum.Model, base)
		}
	}
}
