package ui

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// callRollups computes rollups by reading every call, following store.RollupFilter's
// contract. The tests use it where the store under test keeps no rollups yet, so
// that the pages' figures are checked either way; it is far too slow for a real
// store, which is why the dashboard never does this.
type callRollups struct{ calls CallReader }

func (c callRollups) Rollups(ctx context.Context, f store.RollupFilter) ([]store.Rollup, error) {
	calls, err := c.calls.ListCalls(ctx, store.Filter{Limit: 1 << 30, Ascending: true})
	if err != nil {
		return nil, err
	}
	type key struct {
		start           int64
		workload, model string
		route           store.Route
	}
	sums := map[key]*store.Rollup{}
	var first time.Time
	for i := range calls {
		call := &calls[i]
		if call.Source != store.SourceGateway {
			continue
		}
		bucket := call.StartedAt.Truncate(store.RollupStep)
		if (!f.Since.IsZero() && bucket.Before(f.Since)) || (!f.Until.IsZero() && !bucket.Before(f.Until)) {
			continue
		}
		wl := store.RollupKey(call)
		if f.Workload != "" && wl != f.Workload {
			continue
		}
		if first.IsZero() || bucket.Before(first) {
			first = bucket
		}
		k := key{route: call.Route}
		if f.Step > 0 {
			k.start = bucket.Unix() / int64(f.Step/time.Second) * int64(f.Step/time.Second)
		}
		if f.ByWorkload {
			k.workload = wl
		}
		if f.ByModel {
			k.model = call.ServedModel
		}
		if sums[k] == nil {
			sums[k] = &store.Rollup{Start: time.Unix(k.start, 0).UTC(), Workload: k.workload, Route: k.route, Model: k.model}
		}
		sums[k].AddCall(call)
	}
	var out []store.Rollup
	for _, r := range sums {
		if f.Step == 0 {
			r.Start = f.Since
			if r.Start.IsZero() {
				r.Start = first
			}
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		switch {
		case !a.Start.Equal(b.Start):
			return a.Start.Before(b.Start)
		case a.Workload != b.Workload:
			return a.Workload < b.Workload
		case a.Route != b.Route:
			return a.Route < b.Route
		}
		return a.Model < b.Model
	})
	return out, nil
}

// rollupsOf returns the store's own rollups, or else callRollups over it.
func rollupsOf(t testing.TB, s CallReader) store.RollupStore {
	if rs, ok := s.(store.RollupStore); ok {
		return rs
	}
	t.Logf("the store keeps no rollups yet: figures are computed from its calls for this test")
	return callRollups{s}
}
