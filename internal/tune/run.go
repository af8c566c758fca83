package tune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// Report is what Run keeps in store.TuneJob.Metrics, as JSON.
type Report struct {
	// Progress is the fraction of training done, in [0, 1]; 0 when unknown.
	Progress float64 `json:"progress"`
	// Metrics are the latest training figures (step, loss, val_loss, lr, ...).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Final is the trainer's final report once the job succeeded (peft's
	// metrics.json, the service's result).
	Final json.RawMessage `json:"final,omitempty"`
	// LogCursor is the trainer's log cursor, so that a resumed Run does not log the
	// same lines twice.
	LogCursor string `json:"log_cursor,omitempty"`
}

// ParseReport reads a job's Metrics; nil or empty gives the zero Report.
func ParseReport(raw json.RawMessage) (Report, error) {
	var r Report
	if len(raw) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return Report{}, fmt.Errorf("tune: job metrics: %w", err)
	}
	return r, nil
}

// RunOptions tune Run. The zero value is useful.
type RunOptions struct {
	// PollInterval is how often the trainer is asked about the job; 0 means
	// PollInterval(tr).
	PollInterval time.Duration
	// MaxBackoff caps the wait after a failed poll, which doubles from PollInterval
	// with each failure in a row, with full jitter. Default 5m.
	MaxBackoff time.Duration
	// MaxPollErrors is how many polls in a row may fail (connection errors, 5xx after
	// the client's own retries) before the job is marked failed. Default 20. A trainer
	// that no longer knows the job (ErrUnknownJob) fails it at once.
	MaxPollErrors int
	// Detach leaves the job running at the trainer when ctx ends, with its stored
	// status as it was, so that a later Run resumes it (remote trainers). By default
	// the end of ctx cancels the job. A PEFT process belongs to the downshift that
	// started it either way.
	Detach bool
	// StopTimeout bounds cancelling the job and writing its last state after ctx
	// ended. Default 1m, longer than PEFT's grace before SIGKILL.
	StopTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives warnings about failed polls and cancellations; nil discards.
	Logger *slog.Logger
	// OnUpdate, when set, is called with the job after each change Run stores.
	OnUpdate func(store.TuneJob)
}

func (o RunOptions) withDefaults(tr Trainer) RunOptions {
	if o.PollInterval <= 0 {
		o.PollInterval = PollInterval(tr)
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.MaxBackoff < o.PollInterval {
		o.MaxBackoff = o.PollInterval
	}
	if o.MaxPollErrors <= 0 {
		o.MaxPollErrors = 20
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discard
	}
	return o
}

// maxStoredLine bounds one stored log line.
const maxStoredLine = 4 << 10

// Run supervises the stored job job.ID on tr until it ends: it submits the job (or
// resumes one the trainer already has), polls it, appends what the trainer logs to
// the job's log, keeps its status and latest metrics in st, and ends with the job in
// a terminal status, with the adapter's name when it succeeded.
//
// The job must be stored (CreateTuneJob) with tr's name as its trainer. A job already
// finished is returned as it is. A job someone else marks canceled in the store
// (`downshift tune cancel` from another process) is cancelled at the trainer on the
// next poll. When ctx ends, Run cancels the job at the trainer and marks it canceled
// (unless o.Detach) and returns ctx's error.
//
// A job that fails is not an error of Run: it returns the job, with Status failed and
// Error saying why, and a nil error. Errors are for what kept Run from supervising:
// the store failing, or ctx ending.
func Run(ctx context.Context, st store.TuneJobStore, tr Trainer, job Job, o RunOptions) (store.TuneJob, error) {
	o = o.withDefaults(tr)
	j, err := st.GetTuneJob(ctx, job.ID)
	if err != nil {
		return store.TuneJob{}, fmt.Errorf("tune: %w", err)
	}
	if store.TuneTerminal(j.Status) {
		return j, nil
	}
	if j.Trainer != tr.Name() {
		return j, fmt.Errorf("tune: job %s is for trainer %q, not %q", j.ID, j.Trainer, tr.Name())
	}
	report, err := ParseReport(j.Metrics)
	if err != nil {
		report = Report{} // a resumed job may log some lines twice
	}
	s := &supervisor{st: st, tr: tr, o: o, job: j, report: report}
	return s.run(ctx, job)
}

// supervisor is one Run.
type supervisor struct {
	st     store.TuneJobStore
	tr     Trainer
	o      RunOptions
	job    store.TuneJob // as last stored
	report Report
}

func (s *supervisor) run(ctx context.Context, job Job) (store.TuneJob, error) {
	if s.job.ExternalID == "" {
		sub, err := s.tr.Submit(ctx, job)
		if err != nil {
			if ctx.Err() != nil {
				return s.stop(ctx)
			}
			return s.finish(store.TuneFailed, "submit: "+err.Error())
		}
		next := s.job
		next.ExternalID, next.Dataset = sub.ExternalID, sub.Dataset
		if err := s.save(ctx, next); err != nil {
			if errors.Is(err, store.ErrTuneJobFinished) {
				// Cancelled in the store while the files went up: stop what was submitted.
				cur, gerr := s.st.GetTuneJob(ctx, s.job.ID)
				if gerr != nil {
					return s.job, fmt.Errorf("tune: %w", gerr)
				}
				cur.ExternalID = sub.ExternalID
				return s.ended(ctx, cur)
			}
			s.job.ExternalID = sub.ExternalID // so that lost cancels it
			return s.lost(ctx, err)
		}
		s.logf("submitted to %s as %s", s.tr.Name(), sub.ExternalID)
	} else {
		s.logf("resumed %s on %s", s.job.ExternalID, s.tr.Name())
	}

	wait := time.Duration(0) // the first poll at once
	failures := 0
	var lastErr error
	for {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return s.stop(ctx)
		case <-timer.C:
		}
		// Someone may have cancelled the job in the store meanwhile.
		if cur, err := s.st.GetTuneJob(ctx, s.job.ID); err == nil && store.TuneTerminal(cur.Status) {
			return s.ended(ctx, cur)
		}
		status, err := s.tr.Poll(ctx, s.job.ExternalID, s.report.LogCursor)
		if err != nil {
			if ctx.Err() != nil {
				continue // stop at the top of the loop
			}
			if errors.Is(err, ErrUnknownJob) {
				return s.finish(store.TuneFailed, err.Error())
			}
			failures++
			lastErr = err
			if failures >= s.o.MaxPollErrors {
				return s.finish(store.TuneFailed, fmt.Sprintf("lost track of the job: %d polls in a row failed; the last: %v", failures, lastErr))
			}
			wait = s.backoff(failures)
			s.o.Logger.Warn("tune: poll failed", "job", s.job.ID, "trainer", s.tr.Name(), "failures", failures, "retry_in", wait, "err", err)
			continue
		}
		failures, wait = 0, s.o.PollInterval
		if err := s.apply(ctx, status); err != nil {
			if errors.Is(err, store.ErrTuneJobFinished) {
				cur, gerr := s.st.GetTuneJob(ctx, s.job.ID)
				if gerr != nil {
					return s.job, fmt.Errorf("tune: %w", gerr)
				}
				return s.ended(ctx, cur)
			}
			return s.lost(ctx, err)
		}
		if store.TuneTerminal(s.job.Status) {
			return s.job, nil
		}
	}
}

// backoff is the wait after the n-th failed poll in a row.
func (s *supervisor) backoff(n int) time.Duration {
	d := s.o.PollInterval << min(n, 20)
	if d > s.o.MaxBackoff || d <= 0 {
		d = s.o.MaxBackoff
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// apply stores what one poll said: the log lines, then the status and metrics.
func (s *supervisor) apply(ctx context.Context, status Status) error {
	if err := s.appendLog(ctx, status.Logs); err != nil {
		return err
	}
	next := s.job
	state := status.State
	if state == store.TuneSubmitted && s.job.Status == store.TuneRunning {
		state = store.TuneRunning // a job never goes back to waiting
	}
	next.Status = state
	r := s.report
	if status.Progress > 0 || store.TuneTerminal(state) {
		r.Progress = status.Progress
	}
	if len(status.Metrics) > 0 {
		r.Metrics = status.Metrics
	}
	if status.Final != nil {
		r.Final = status.Final
	}
	r.LogCursor = status.Cursor
	if status.Adapter != "" {
		next.Adapter = status.Adapter
	}
	if state == store.TuneFailed {
		next.Error = shorten(status.Error, maxStoredLine)
		if next.Error == "" {
			next.Error = "the trainer reports the job failed"
		}
	}
	if store.TuneTerminal(state) {
		next.FinishedAt = s.o.Now()
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	next.Metrics = raw
	if next.Status == s.job.Status && string(next.Metrics) == string(s.job.Metrics) &&
		next.Adapter == s.job.Adapter && next.Error == s.job.Error {
		s.report = r
		return nil // nothing new to store
	}
	if err := s.save(ctx, next); err != nil {
		return err
	}
	s.report = r
	return nil
}

// save stores next as the job's new state.
func (s *supervisor) save(ctx context.Context, next store.TuneJob) error {
	next.UpdatedAt = s.o.Now()
	if err := s.st.UpdateTuneJob(ctx, next); err != nil {
		return err
	}
	s.job = next
	if s.o.OnUpdate != nil {
		s.o.OnUpdate(next)
	}
	return nil
}

func (s *supervisor) appendLog(ctx context.Context, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = shorten(l, maxStoredLine)
	}
	return s.st.AppendTuneLog(ctx, s.job.ID, s.o.Now(), out)
}

// logf adds a line of Run's own to the job's log, best effort.
func (s *supervisor) logf(format string, args ...any) {
	line := "downshift: " + fmt.Sprintf(format, args...)
	if err := s.st.AppendTuneLog(context.Background(), s.job.ID, s.o.Now(), []string{line}); err != nil {
		s.o.Logger.Warn("tune: log", "job", s.job.ID, "err", err)
	}
}

// finish stores the job as ended with status and, for a failure, why.
func (s *supervisor) finish(status, why string) (store.TuneJob, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.StopTimeout)
	defer cancel()
	next := s.job
	next.Status, next.FinishedAt = status, s.o.Now()
	if status == store.TuneFailed {
		next.Error = shorten(why, maxStoredLine)
	}
	if raw, err := json.Marshal(s.report); err == nil {
		next.Metrics = raw
	}
	if err := s.save(ctx, next); err != nil {
		if errors.Is(err, store.ErrTuneJobFinished) {
			cur, gerr := s.st.GetTuneJob(ctx, s.job.ID)
			if gerr == nil {
				return cur, nil
			}
		}
		return s.job, fmt.Errorf("tune: job %s: %w", s.job.ID, err)
	}
	return s.job, nil
}

// ended handles a job that finished in the store behind Run's back: when it was
// cancelled there, the trainer is told to stop.
func (s *supervisor) ended(ctx context.Context, cur store.TuneJob) (store.TuneJob, error) {
	s.job = cur
	if cur.Status == store.TuneCanceled && cur.ExternalID != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.StopTimeout)
		defer cancel()
		if err := s.tr.Cancel(cctx, cur.ExternalID); err != nil {
			s.o.Logger.Warn("tune: cancel at the trainer", "job", cur.ID, "err", err)
			s.logf("cancelled in the store; the trainer did not confirm: %v", err)
		} else {
			s.logf("cancelled in the store; stopped at %s", s.tr.Name())
		}
		s.lastWords(cctx)
	}
	return cur, nil
}

// lastWords polls the trainer once more for the lines it logged while stopping, and
// returns what it said.
func (s *supervisor) lastWords(ctx context.Context) (Status, bool) {
	st, err := s.tr.Poll(ctx, s.job.ExternalID, s.report.LogCursor)
	if err != nil {
		return Status{}, false
	}
	if s.appendLog(ctx, st.Logs) == nil {
		s.report.LogCursor = st.Cursor
	}
	return st, true
}

// stop handles the end of ctx: cancel the job at the trainer and store it canceled,
// or with o.Detach leave it as it is.
func (s *supervisor) stop(ctx context.Context) (store.TuneJob, error) {
	cause := context.Cause(ctx)
	if s.o.Detach && s.job.ExternalID != "" {
		s.logf("detached from %s: %v", s.job.ExternalID, cause)
		return s.job, cause
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.StopTimeout)
	defer cancel()
	status := store.TuneCanceled
	if s.job.ExternalID != "" {
		if err := s.tr.Cancel(cctx, s.job.ExternalID); err != nil {
			s.o.Logger.Warn("tune: cancel at the trainer", "job", s.job.ID, "err", err)
			s.logf("cancel at %s failed: %v", s.tr.Name(), err)
		}
		// The trainer's last words, and whether it finished first.
		if st, ok := s.lastWords(cctx); ok && st.State == store.TuneSucceeded {
			st.Logs = nil // logged already
			if err := s.apply(cctx, st); err == nil {
				return s.job, cause
			}
		}
	}
	s.logf("cancelled: %v", cause)
	j, err := s.finish(status, "")
	if err != nil {
		return j, err
	}
	return j, cause
}

// lost handles a store that failed mid-run: without a place to keep the job's state,
// the job is cancelled at the trainer (unless o.Detach) rather than left running
// unwatched.
func (s *supervisor) lost(ctx context.Context, err error) (store.TuneJob, error) {
	if !s.o.Detach && s.job.ExternalID != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.StopTimeout)
		defer cancel()
		if cerr := s.tr.Cancel(cctx, s.job.ExternalID); cerr != nil {
			s.o.Logger.Warn("tune: cancel at the trainer", "job", s.job.ID, "err", cerr)
		}
	}
	return s.job, fmt.Errorf("tune: job %s: %w", s.job.ID, err)
}

// CancelJob asks the job's trainer to stop it and marks the stored job canceled:
// what `downshift tune cancel` does. The trainer is asked first, so that a trainer
// that refuses (the job finished meanwhile) leaves the job's status to the trainer's
// word. A trainer that does not know the job is not an error here: a PEFT process
// belongs to the downshift that started it, and that process's Run sees the status in
// the store on its next poll and stops the process. A job already finished gives an
// error wrapping store.ErrTuneJobFinished.
func CancelJob(ctx context.Context, st store.TuneJobStore, tr Trainer, id string, now time.Time) (store.TuneJob, error) {
	j, err := st.GetTuneJob(ctx, id)
	if err != nil {
		return store.TuneJob{}, fmt.Errorf("tune: %w", err)
	}
	if store.TuneTerminal(j.Status) {
		return j, fmt.Errorf("tune: job %s is %s: %w", id, j.Status, store.ErrTuneJobFinished)
	}
	line := "downshift: cancelled by request"
	if j.ExternalID != "" {
		err := tr.Cancel(ctx, j.ExternalID)
		switch {
		case errors.Is(err, ErrUnknownJob):
			line += "; the process supervising it stops it"
		case err != nil:
			return j, fmt.Errorf("tune: cancel job %s: %w", id, err)
		}
	}
	next := j
	next.Status, next.UpdatedAt, next.FinishedAt = store.TuneCanceled, now, now
	if err := st.UpdateTuneJob(ctx, next); err != nil {
		// A Run saw the trainer's cancellation first and stored it.
		if cur, gerr := st.GetTuneJob(ctx, id); gerr == nil && cur.Status == store.TuneCanceled {
			return cur, nil
		}
		return j, fmt.Errorf("tune: %w", err)
	}
	if err := st.AppendTuneLog(ctx, id, now, []string{line}); err != nil {
		return next, fmt.Errorf("tune: job %s canceled, but: %w", id, err)
	}
	return next, nil
}
