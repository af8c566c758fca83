package discover

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
)

// KeepIDs gives a discovered workload the ID it had in an earlier analysis when it is
// the same workload: policies, eval sets, tuning jobs and dashboards name workloads by
// ID, and a new analysis (more calls, another time window) must not cut them off from
// a workload that is still there. A discovered workload's own ID hashes its label and
// terms, which move with the calls analysed.
//
// previous maps a call's ID to the workload it was in before (discovery's or the
// online assigner's; "" or absent for none). A new workload takes an earlier ID when
// the two are each other's majority: more than half of the new workload's calls that
// had a workload before had that one, and more than half of that workload's calls in
// this analysis are in the new one. A majority on both sides makes the match one to
// one. Tagged workloads keep their tags; an earlier ID that a tag now names is not
// taken. KeepIDs rewrites res's workloads, assignments and model, and returns how many
// workloads kept an earlier ID.
func KeepIDs(res *Result, previous map[string]string) int {
	if len(previous) == 0 {
		return 0
	}
	prevTotal := map[string]int{} // earlier workload -> its calls in this analysis
	for call := range res.Assignments {
		if p := previous[call]; p != "" {
			prevTotal[p]++
		}
	}
	taken := map[string]bool{}
	for _, w := range res.Workloads {
		if w.Tag != "" {
			taken[w.ID] = true
		}
	}
	rename := map[string]string{}
	kept := 0
	for _, w := range res.Workloads {
		if w.Tag != "" {
			continue
		}
		counts := map[string]int{}
		known := 0
		for _, call := range w.CallIDs {
			if p := previous[call]; p != "" {
				counts[p]++
				known++
			}
		}
		for p, n := range counts {
			if 2*n > known && 2*n > prevTotal[p] && !taken[p] {
				rename[w.ID] = p
				taken[p] = true
				kept++
				break // a majority is unique
			}
		}
	}
	if kept == 0 {
		return 0
	}
	// A workload that keeps its new ID must not collide with one that took an earlier
	// ID; it takes the next free suffix.
	used := maps.Clone(taken)
	for _, w := range res.Workloads {
		if _, ok := rename[w.ID]; !ok {
			used[w.ID] = true
		}
	}
	for _, w := range res.Workloads {
		if _, ok := rename[w.ID]; ok || w.Tag != "" || !taken[w.ID] {
			continue
		}
		for n := 2; ; n++ {
			if id := w.ID + "-" + strconv.Itoa(n); !used[id] {
				rename[w.ID] = id
				used[id] = true
				break
			}
		}
	}
	for i := range res.Workloads {
		if id, ok := rename[res.Workloads[i].ID]; ok {
			res.Workloads[i].ID = id
		}
	}
	for call, id := range res.Assignments {
		if to, ok := rename[id]; ok {
			res.Assignments[call] = to
		}
	}
	if res.Model != nil {
		for i := range res.Model.Centroids {
			if to, ok := rename[res.Model.Centroids[i].Workload]; ok {
				res.Model.Centroids[i].Workload = to
			}
		}
	}
	// Largest first, ties by ID, as Discover orders them.
	slices.SortStableFunc(res.Workloads, func(a, b Workload) int {
		if c := cmp.Compare(len(b.CallIDs), len(a.CallIDs)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return kept
}
