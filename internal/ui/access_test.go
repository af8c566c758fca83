package ui

import (
	"context"
	"sync"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
)

// recording is a store that remembers how calls were read.
type recording struct {
	Store
	mu      sync.Mutex
	lists   []store.Filter
	gets    int
	rollups []store.RollupFilter
	inner   store.RollupStore
}

func (r *recording) ListCalls(ctx context.Context, f store.Filter) ([]store.Call, error) {
	r.mu.Lock()
	r.lists = append(r.lists, f)
	r.mu.Unlock()
	return r.Store.ListCalls(ctx, f)
}

func (r *recording) GetCall(ctx context.Context, id string) (store.Call, error) {
	r.mu.Lock()
	r.gets++
	r.mu.Unlock()
	return r.Store.GetCall(ctx, id)
}

func (r *recording) Rollups(ctx context.Context, f store.RollupFilter) ([]store.Rollup, error) {
	r.mu.Lock()
	r.rollups = append(r.rollups, f)
	r.mu.Unlock()
	return r.inner.Rollups(ctx, f)
}

func (r *recording) take() (lists []store.Filter, gets int, rollups []store.RollupFilter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lists, gets, rollups = r.lists, r.gets, r.rollups
	r.lists, r.gets, r.rollups = nil, 0, nil
	return
}

// Pages must stay fast on a store of millions of calls: figures come from rollups,
// with a step that gives a few hundred buckets at most, and the only calls read are a
// workload's latest few, without payloads, and the one call a call page shows.
func TestPagesReadRollupsNotCalls(t *testing.T) {
	rec := &recording{}
	e := newEnv(t, true, func(e *env, o *Options) {
		rec.Store, rec.inner = e.db, rollupsOf(t, e.db)
		e.store, o.Rollups = rec, rec
	})
	b := e.browser()
	b.login("viewer")
	rec.take()
	for _, p := range pages {
		for _, period := range periods {
			b.ok(p.path + "?period=" + period.Name)
			lists, gets, rollups := rec.take()
			if gets != 0 {
				t.Errorf("%s read %d calls one by one", p.path, gets)
			}
			for _, f := range lists {
				if f.WithPayloads || f.WorkloadID == "" || f.Limit <= 0 || f.Limit > recentCalls {
					t.Errorf("%s listed calls with %+v; want a workload's latest %d without payloads", p.path, f, recentCalls)
				}
			}
			for _, f := range rollups {
				if f.Step > 0 && (f.Since.IsZero() || f.Until.Sub(f.Since)/f.Step > 300) {
					t.Errorf("%s asked for rollups %+v: more than 300 buckets", p.path, f)
				}
			}
			if len(rollups) == 0 {
				t.Errorf("%s read no rollups", p.path)
			}
		}
	}
	b.ok("/ui/calls/" + seedCalls()[0].ID)
	if lists, gets, _ := rec.take(); gets != 1 || len(lists) != 0 {
		t.Errorf("the call page read %d calls and listed %d; want 1 and none", gets, len(lists))
	}
}
