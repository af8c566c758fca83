package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/workload"
)

// onlineAssigner puts each recorded call into a workload as the recorder writes it: the
// client's tag when there is one, else the nearest workload the last `downshift analyze`
// found, from request-side features only. It reloads the model when a new analysis is
// saved, so a running server follows without a restart.
type onlineAssigner struct {
	st  store.WorkloadStore
	log *slog.Logger
	cur atomic.Pointer[assignerState]
}

type assignerState struct {
	run      string
	assigner *workload.Assigner
}

// refresh loads the latest analysis' model if it is not the one in use.
func (o *onlineAssigner) refresh(ctx context.Context) error {
	run, err := o.st.LatestRun(ctx)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(run.Model) == 0) {
		return nil // nothing analysed yet: calls keep their tag only
	}
	if err != nil {
		return err
	}
	if cur := o.cur.Load(); cur != nil && cur.run == run.ID {
		return nil
	}
	m, err := workload.UnmarshalModel(run.Model)
	if err != nil {
		return fmt.Errorf("workload model of run %s: %w", run.ID, err)
	}
	a, err := workload.NewAssigner(m)
	if err != nil {
		return fmt.Errorf("workload model of run %s: %w", run.ID, err)
	}
	o.cur.Store(&assignerState{run: run.ID, assigner: a})
	o.log.Info("online workload assignment uses the latest analysis", "run", run.ID, "centroids", len(m.Centroids))
	return nil
}

// run refreshes every interval until ctx ends; a failed refresh keeps the model in use.
func (o *onlineAssigner) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := o.refresh(ctx); err != nil && ctx.Err() == nil {
				o.log.Warn("reloading the workload model failed; keeping the one in use", "err", err)
			}
		}
	}
}

// FindWorkload returns the nearest workload of the latest analysis for an untagged
// request, or "" (gateway.WorkloadFinder: the gateway asks before it decides a call's
// route, while some workload has a policy).
func (o *onlineAssigner) FindWorkload(fingerprint string, request []byte) string {
	cur := o.cur.Load()
	if cur == nil {
		return ""
	}
	id, _ := cur.assigner.Assign(fingerprint, request)
	return id
}

// assign sets c.WorkloadID unless the gateway has already. It runs in the recorder
// before redaction, on the request as the client sent it.
func (o *onlineAssigner) assign(c *store.Call) {
	if c.WorkloadID != "" {
		return
	}
	if c.Workload != "" {
		c.WorkloadID = c.Workload // a tagged workload's id is its tag
		return
	}
	cur := o.cur.Load()
	if cur == nil || c.Status >= 400 || len(c.Request) == 0 {
		return
	}
	c.WorkloadID, _ = cur.assigner.Assign(c.Fingerprint, c.Request)
}
