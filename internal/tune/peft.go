package tune

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// PEFT runs the bundled LoRA script (trainers/peft/train.py, see its README) as a
// subprocess of this process, one process per job, each in its own process group so
// that cancelling stops the script and whatever it started.
//
// The script prints one JSON object a line on stdout ({"event": "start" | "step" |
// "eval" | "done" | "error" | "cancelled" | "dry_run", ...}) and everything for people
// on stderr; it writes the adapter, metrics.json and loss.csv to --out, and exits 0
// (done), 1 (failed), 2 (invalid data or configuration), 3 (the host lacks torch or
// CUDA) or 143 (stopped by SIGTERM). PEFT turns the events into metrics and log lines
// and keeps the last of stderr for the error of a job that failed.
//
// A job lives as long as its process and this PEFT: a downshift that restarts no
// longer knows the jobs its predecessor started, and Poll says ErrUnknownJob.
type PEFT struct {
	o PEFTOptions

	mu   sync.Mutex
	runs map[string]*peftRun // by external id
}

var _ Trainer = (*PEFT)(nil)

// PEFTOptions configure a PEFT trainer.
type PEFTOptions struct {
	Name string
	// Python runs the script; "" means DefaultPython.
	Python string
	// Script is the training script; "" means DefaultScript.
	Script string
	// Dir is the processes' working directory; "" means this process's.
	Dir string
	// Env is added to this process's environment for the script (KEY=value).
	Env []string
	// Hyperparameters are the configured ones; zero fields take
	// config.DefaultHyperparameters.
	Hyperparameters config.Hyperparameters
	// PollInterval is how often Run asks; 0 means DefaultLocalPollInterval.
	PollInterval time.Duration
	// KillGrace is how long a cancelled script has to stop after SIGTERM (it stops at
	// the next step boundary) before its process group gets SIGKILL. Default 30s.
	KillGrace time.Duration
	// Logger receives the driver's own diagnostics; nil discards them.
	Logger *slog.Logger
}

// NewPEFT returns a trainer that runs the PEFT script on this host.
func NewPEFT(o PEFTOptions) *PEFT {
	if o.Python == "" {
		o.Python = DefaultPython
	}
	if o.Script == "" {
		o.Script = DefaultScript
	}
	if o.KillGrace <= 0 {
		o.KillGrace = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = discard
	}
	return &PEFT{o: o, runs: map[string]*peftRun{}}
}

// Name returns the configured trainer's name.
func (t *PEFT) Name() string { return t.o.Name }

func (t *PEFT) pollInterval() time.Duration {
	if t.o.PollInterval > 0 {
		return t.o.PollInterval
	}
	return DefaultLocalPollInterval
}

func (t *PEFT) hyperparameters(h config.Hyperparameters) config.Hyperparameters {
	h = h.Or(t.o.Hyperparameters).Or(config.DefaultHyperparameters())
	h.LearningRateMultiplier = 0
	return h
}

// TinyRandomLlama is the base that makes the script build a tiny, randomly
// initialised Llama from a config instead of loading a model: nothing is downloaded.
const TinyRandomLlama = "tiny-random-llama"

// args returns the script's command line for job, without the interpreter.
func (t *PEFT) args(job Job) []string {
	h := t.hyperparameters(job.Hyperparameters)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	args := []string{t.o.Script, "--data", job.DataDir}
	if job.OutDir != "" {
		args = append(args, "--out", job.OutDir)
	}
	if job.Base == TinyRandomLlama {
		args = append(args, "--tiny-random-llama")
	} else {
		args = append(args, "--base", job.Base)
	}
	args = append(args,
		"--rank", strconv.Itoa(h.Rank), "--alpha", strconv.Itoa(h.Alpha), "--dropout", f(h.Dropout),
		"--epochs", strconv.Itoa(h.Epochs), "--lr", f(h.LearningRate),
		"--batch-size", strconv.Itoa(h.BatchSize), "--max-length", strconv.Itoa(h.MaxLength))
	if job.MaxSteps > 0 {
		args = append(args, "--max-steps", strconv.Itoa(job.MaxSteps))
	}
	if job.Seed != 0 {
		args = append(args, "--seed", strconv.Itoa(job.Seed))
	}
	if job.QLoRA {
		args = append(args, "--qlora")
	}
	return args
}

// command returns the script's process for args, in its own process group.
func (t *PEFT) command(ctx context.Context, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, t.o.Python, args...)
	cmd.Dir = t.o.Dir
	cmd.Env = append(os.Environ(), t.o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// signalGroup sends sig to the process group led by pid. A group already gone is not
// an error.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Submit starts the script for job and returns once it runs.
func (t *PEFT) Submit(_ context.Context, job Job) (Submission, error) {
	switch {
	case job.DataDir == "":
		return Submission{}, errors.New("peft: the job has no data directory")
	case job.OutDir == "":
		return Submission{}, errors.New("peft: the job has no output directory")
	case job.Base == "":
		return Submission{}, errors.New("peft: the job has no base model")
	}
	if err := os.MkdirAll(job.OutDir, 0o755); err != nil {
		return Submission{}, fmt.Errorf("peft: %w", err)
	}
	// The process belongs to the job, not to the Submit call: it runs until it ends or
	// Cancel stops it.
	runCtx, stop := context.WithCancel(context.Background())
	cmd := t.command(runCtx, t.args(job))
	r := &peftRun{outDir: job.OutDir, stop: stop, done: make(chan struct{}), state: store.TuneRunning}
	// Cancelling runCtx asks the script to stop (SIGTERM to its group); after
	// KillGrace the group gets SIGKILL. WaitDelay is the backstop for the leader.
	cmd.Cancel = func() error {
		pid := cmd.Process.Pid
		r.mu.Lock()
		r.killTimer = time.AfterFunc(t.o.KillGrace, func() { signalGroup(pid, syscall.SIGKILL) })
		r.mu.Unlock()
		return signalGroup(pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = t.o.KillGrace + 5*time.Second
	// Our own pipes, not cmd's: Wait then does not close them under the readers, and
	// output that children write after the script exits is still read.
	outR, outW, err := os.Pipe()
	if err != nil {
		stop()
		return Submission{}, fmt.Errorf("peft: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		stop()
		outR.Close()
		outW.Close()
		return Submission{}, fmt.Errorf("peft: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		stop()
		outR.Close()
		errR.Close()
		return Submission{}, fmt.Errorf("peft: start %s: %w", t.o.Python, err)
	}
	r.pid = cmd.Process.Pid
	id := fmt.Sprintf("local-%s-pid%d", job.ID, r.pid)
	t.mu.Lock()
	t.runs[id] = r
	t.mu.Unlock()
	t.o.Logger.Info("peft: started", "job", job.ID, "pid", r.pid, "out", job.OutDir)

	var readers sync.WaitGroup
	readers.Go(func() { r.readStdout(outR) })
	readers.Go(func() { r.readStderr(errR) })
	go r.wait(cmd, &readers, []*os.File{outR, errR}, t.o.KillGrace)

	dataset, _ := json.Marshal(map[string]string{"data_dir": job.DataDir, "out_dir": job.OutDir})
	return Submission{ExternalID: id, Dataset: dataset}, nil
}

// Poll reports the run's state and the log lines after cursor (a line count).
func (t *PEFT) Poll(_ context.Context, externalID, cursor string) (Status, error) {
	r := t.run(externalID)
	if r == nil {
		return Status{}, fmt.Errorf("peft: %s: %w (not started by this process)", externalID, ErrUnknownJob)
	}
	after, _ := strconv.Atoi(cursor)
	return r.status(after), nil
}

// Cancel stops the run: SIGTERM to its process group, SIGKILL after KillGrace. It
// returns once the process has exited, or ctx is done. A run that already ended is
// left as it ended.
func (t *PEFT) Cancel(ctx context.Context, externalID string) error {
	r := t.run(externalID)
	if r == nil {
		return fmt.Errorf("peft: %s: %w (not started by this process)", externalID, ErrUnknownJob)
	}
	r.mu.Lock()
	if !store.TuneTerminal(r.state) {
		r.canceled = true
	}
	r.mu.Unlock()
	r.stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peft: cancel %s: %w", externalID, ctx.Err())
	}
}

func (t *PEFT) run(id string) *peftRun {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs[id]
}

// Limits on what a run keeps in memory.
const (
	maxLineBytes    = 64 << 10 // a longer line is cut
	maxPendingLines = 10000    // log lines not yet polled; older ones are dropped
	stderrTailBytes = 8 << 10  // the end of stderr kept for the error
	errorTailBytes  = 2 << 10  // how much of it goes into the job's error
)

// peftRun is one script process and what it reported.
type peftRun struct {
	outDir string
	pid    int
	stop   context.CancelFunc
	done   chan struct{} // closed when the process exited and its output was read

	mu        sync.Mutex
	killTimer *time.Timer // SIGKILL for the group, armed when the run is cancelled
	state     string
	canceled  bool
	progress  float64
	total     float64 // total_steps, from the start event
	metrics   map[string]float64
	lines     []string // log lines not yet dropped; lines[i] is line number base+i+1
	base      int
	doneEvent map[string]any
	errEvent  string // the message of an error event
	stderr    []byte // the last stderrTailBytes of stderr
	final     json.RawMessage
	adapter   string
	errMsg    string
}

func (r *peftRun) log(line string) {
	r.lines = append(r.lines, line)
	// Drop in chunks, so that a flood of lines costs a copy per thousands of lines.
	if len(r.lines) > maxPendingLines+maxPendingLines/4 {
		over := len(r.lines) - maxPendingLines
		r.lines = append(r.lines[:0:0], r.lines[over:]...)
		r.base += over
	}
}

// status returns the run's state and the lines numbered above after.
func (r *peftRun) status(after int) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{State: r.state, Progress: r.progress, Adapter: r.adapter, Error: r.errMsg, Final: r.final}
	if len(r.metrics) > 0 {
		st.Metrics = make(map[string]float64, len(r.metrics))
		for k, v := range r.metrics {
			st.Metrics[k] = v
		}
	}
	if after < r.base {
		st.Logs = append(st.Logs, fmt.Sprintf("(%d log lines dropped)", r.base-after))
		after = r.base
	}
	end := r.base + len(r.lines)
	if after < end {
		st.Logs = append(st.Logs, r.lines[after-r.base:]...)
	}
	st.Cursor = strconv.Itoa(max(after, end))
	return st
}

// readStdout reads the event stream.
func (r *peftRun) readStdout(f *os.File) {
	defer f.Close()
	sc := lineScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		r.mu.Lock()
		r.event(line)
		r.mu.Unlock()
	}
}

// event takes one stdout line; r.mu is held.
func (r *peftRun) event(line string) {
	r.log(line)
	var ev map[string]any
	if json.Unmarshal([]byte(line), &ev) != nil {
		return // not the protocol: kept as a log line only
	}
	if r.metrics == nil {
		r.metrics = map[string]float64{}
	}
	nums := numbers(ev)
	delete(nums, "elapsed_s")
	name, _ := ev["event"].(string)
	switch name {
	case "start":
		r.total = nums["total_steps"]
	case "step", "eval", "done":
		for k, v := range nums {
			r.metrics[k] = v
		}
		if step, ok := nums["step"]; ok && r.total > 0 {
			r.progress = min(step/r.total, 1)
		}
		if name == "done" {
			r.doneEvent = ev
		}
	case "error":
		r.errEvent, _ = ev["message"].(string)
	}
}

// readStderr keeps stderr as log lines and its end for the error.
func (r *peftRun) readStderr(f *os.File) {
	defer f.Close()
	sc := lineScanner(f)
	for sc.Scan() {
		line := sc.Text()
		r.mu.Lock()
		if strings.TrimSpace(line) != "" {
			r.log("stderr: " + line)
		}
		r.stderr = append(r.stderr, line...)
		r.stderr = append(r.stderr, '\n')
		if over := len(r.stderr) - stderrTailBytes; over > 0 {
			r.stderr = append(r.stderr[:0:0], r.stderr[over:]...)
		}
		r.mu.Unlock()
	}
}

// lineScanner splits on \n and on \r (progress bars redraw with \r), cutting lines
// longer than maxLineBytes instead of failing on them.
func lineScanner(rd io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if len(data) >= maxLineBytes {
			return len(data), data, nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	return sc
}

// wait reaps the process, waits for its output to be read, and settles the run.
func (r *peftRun) wait(cmd *exec.Cmd, readers *sync.WaitGroup, pipes []*os.File, grace time.Duration) {
	defer close(r.done)
	defer r.stop()
	werr := cmd.Wait()
	read := make(chan struct{})
	go func() { readers.Wait(); close(read) }()
	select {
	case <-read:
	case <-time.After(grace):
		// Something the script started still holds its output open: stop reading.
		for _, p := range pipes {
			p.Close()
		}
		<-read
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killTimer != nil {
		r.killTimer.Stop() // the output is closed: nothing of the group is left to kill
	}
	r.settle(werr)
}

// settle sets the run's final state from how the process ended; r.mu is held.
func (r *peftRun) settle(werr error) {
	switch {
	case r.canceled:
		r.state = store.TuneCanceled
	case werr == nil && r.doneEvent != nil:
		r.state, r.progress = store.TuneSucceeded, 1
		r.adapter, _ = r.doneEvent["adapter"].(string)
		if r.adapter == "" {
			r.adapter = filepath.Join(r.outDir, "adapter")
		}
		data, err := os.ReadFile(filepath.Join(r.outDir, "metrics.json"))
		switch {
		case err != nil:
			r.log("metrics.json: " + err.Error())
		case !json.Valid(data):
			r.log("metrics.json is not valid JSON")
		default:
			r.final = bytes.TrimSpace(data)
		}
		if r.final == nil {
			r.final, _ = json.Marshal(r.doneEvent)
		}
	default:
		r.state = store.TuneFailed
		var why string
		switch {
		case werr == nil:
			why = "the script exited without reporting done"
		default:
			why = werr.Error() // "exit status 2", "signal: killed"
		}
		if r.errEvent != "" {
			why += ": " + r.errEvent
		}
		if tail := strings.TrimSpace(string(r.stderr)); tail != "" {
			why += "\nstderr: " + tailOf(tail, errorTailBytes)
		}
		r.errMsg = why
	}
}

// tailOf returns the last n bytes of s, from a line start where there is one.
func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		return "…" + s[i+1:]
	}
	return "…" + s
}

// DryRunResult is what the script's --dry-run reported.
type DryRunResult struct {
	// OK is the summary's verdict: the data and the configuration would train.
	OK bool
	// Summary is the script's summary object ({"event": "dry_run", "ok", "files",
	// "plan", "errors", "warnings", ...}).
	Summary json.RawMessage
	// Stderr is what the script said to people, shortened.
	Stderr string
}

// DryRun runs the script with --dry-run for job and returns its summary: it validates
// the data and the hyperparameters without importing torch, so it runs on any host
// with python3. A summary that says the job would not train is a result, not an
// error; a script that printed no summary is an error.
func (t *PEFT) DryRun(ctx context.Context, job Job) (DryRunResult, error) {
	if job.DataDir == "" {
		return DryRunResult{}, errors.New("peft: dry run: the job has no data directory")
	}
	cmd := t.command(ctx, append(t.args(job), "--dry-run"))
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	werr := cmd.Run()
	res := DryRunResult{Stderr: tailOf(strings.TrimSpace(stderr.String()), errorTailBytes)}
	for _, line := range strings.Split(stdout.String(), "\n") {
		var ev struct {
			Event string `json:"event"`
			OK    bool   `json:"ok"`
		}
		line = strings.TrimSpace(line)
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "dry_run" {
			res.OK, res.Summary = ev.OK, json.RawMessage(line)
		}
	}
	if res.Summary == nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("peft: dry run: %w", ctx.Err())
		}
		why := "no summary printed"
		if werr != nil {
			why = werr.Error()
		}
		if res.Stderr != "" {
			why += "\nstderr: " + res.Stderr
		}
		return res, fmt.Errorf("peft: dry run: %s", why)
	}
	return res, nil
}
