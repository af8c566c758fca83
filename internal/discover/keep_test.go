package discover

import (
	"fmt"
	"slices"
	"testing"

	"github.com/downshift-dev/downshift/internal/workload"
)

// result builds a Result from workload ID -> number of calls; calls are named
// "<id>#<i>". Tagged workloads are given as "tag:<name>".
func result(sizes map[string]int) *Result {
	res := &Result{Assignments: map[string]string{}, Model: &workload.Model{}}
	for id, n := range sizes {
		w := Workload{ID: id}
		if tag, ok := cutPrefix(id, "tag:"); ok {
			w.ID, w.Tag = tag, tag
		}
		for i := range n {
			call := fmt.Sprintf("%s#%d", id, i)
			w.CallIDs = append(w.CallIDs, call)
			res.Assignments[call] = w.ID
		}
		res.Workloads = append(res.Workloads, w)
		res.Model.Centroids = append(res.Model.Centroids, workload.Centroid{Workload: w.ID})
	}
	return res
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// was says that calls [from, to) of the new workload id were in workload prev before.
func was(previous map[string]string, id string, from, to int, prev string) {
	for i := from; i < to; i++ {
		previous[fmt.Sprintf("%s#%d", id, i)] = prev
	}
}

func ids(res *Result) []string {
	var out []string
	for _, w := range res.Workloads {
		out = append(out, w.ID)
	}
	slices.Sort(out)
	return out
}

func TestKeepIDsFollowsTheMajority(t *testing.T) {
	res := result(map[string]int{"wl-a": 10, "wl-b": 10, "tag:triage": 5})
	prev := map[string]string{}
	was(prev, "wl-a", 0, 8, "wl-old1")
	was(prev, "wl-a", 8, 10, "wl-old2") // a few moved in from elsewhere
	was(prev, "wl-b", 1, 10, "wl-old3") // call 0 is new: no earlier workload
	was(prev, "tag:triage", 0, 5, "triage")
	if n := KeepIDs(res, prev); n != 2 {
		t.Errorf("kept %d, want 2", n)
	}
	if got, want := ids(res), []string{"triage", "wl-old1", "wl-old3"}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	for call, id := range res.Assignments {
		want := map[string]string{"wl-a": "wl-old1", "wl-b": "wl-old3", "tag:triage": "triage"}[call[:len(call)-2]]
		if id != want {
			t.Errorf("call %s assigned to %s, want %s", call, id, want)
		}
	}
	var cents []string
	for _, c := range res.Model.Centroids {
		cents = append(cents, c.Workload)
	}
	slices.Sort(cents)
	if want := []string{"triage", "wl-old1", "wl-old3"}; !slices.Equal(cents, want) {
		t.Errorf("centroids name %v, want %v", cents, want)
	}
}

func TestKeepIDsNeedsAMajorityOnBothSides(t *testing.T) {
	t.Run("split", func(t *testing.T) {
		// An earlier workload split evenly in two: neither half is it.
		res := result(map[string]int{"wl-a": 10, "wl-b": 10})
		prev := map[string]string{}
		was(prev, "wl-a", 0, 10, "wl-old")
		was(prev, "wl-b", 0, 10, "wl-old")
		if n := KeepIDs(res, prev); n != 0 {
			t.Errorf("kept %d, want 0", n)
		}
		if got := ids(res); !slices.Equal(got, []string{"wl-a", "wl-b"}) {
			t.Errorf("ids %v", got)
		}
	})
	t.Run("merge", func(t *testing.T) {
		// Two earlier workloads merged: the new one is the larger of them.
		res := result(map[string]int{"wl-a": 10})
		prev := map[string]string{}
		was(prev, "wl-a", 0, 6, "wl-big")
		was(prev, "wl-a", 6, 10, "wl-small")
		KeepIDs(res, prev)
		if got := ids(res); !slices.Equal(got, []string{"wl-big"}) {
			t.Errorf("ids %v, want [wl-big]", got)
		}
	})
	t.Run("a tag is never taken", func(t *testing.T) {
		res := result(map[string]int{"wl-a": 4, "tag:triage": 2})
		prev := map[string]string{}
		was(prev, "wl-a", 0, 4, "triage")
		if n := KeepIDs(res, prev); n != 0 {
			t.Errorf("kept %d, want 0", n)
		}
		if got := ids(res); !slices.Equal(got, []string{"triage", "wl-a"}) {
			t.Errorf("ids %v", got)
		}
	})
	t.Run("nothing before", func(t *testing.T) {
		res := result(map[string]int{"wl-a": 3})
		if n := KeepIDs(res, nil); n != 0 || !slices.Equal(ids(res), []string{"wl-a"}) {
			t.Errorf("kept %d, ids %v", n, ids(res))
		}
	})
}

func TestKeepIDsAvoidsClashes(t *testing.T) {
	// wl-b takes wl-a's earlier ID... which is also what the new wl-a is called.
	res := result(map[string]int{"wl-a": 5, "wl-b": 5, "wl-a-2": 1})
	prev := map[string]string{}
	was(prev, "wl-b", 0, 5, "wl-a")
	if n := KeepIDs(res, prev); n != 1 {
		t.Errorf("kept %d, want 1", n)
	}
	if got, want := ids(res), []string{"wl-a", "wl-a-2", "wl-a-3"}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	for call, id := range res.Assignments {
		if want := map[string]string{"wl-a": "wl-a-3", "wl-b": "wl-a", "wl-a-2": "wl-a-2"}[call[:len(call)-2]]; id != want {
			t.Errorf("call %s assigned to %s, want %s", call, id, want)
		}
	}
	var order []string
	for _, w := range res.Workloads {
		order = append(order, w.ID)
	}
	if want := []string{"wl-a", "wl-a-3", "wl-a-2"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v (largest first, ties by ID)", order, want)
	}
}
