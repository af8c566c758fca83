package eval

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// SetOptions says how an eval set is drawn. The zero value is ready to use.
type SetOptions struct {
	// Seed fixes the draw: the same calls and seed give the same set. Default 1.
	Seed uint64 `json:"seed"`
	// TestSize is how many calls the test split should hold. Default 200. It is capped
	// at MaxTestShare of the workload's calls, so that tuning has calls left.
	TestSize int `json:"test_size"`
	// MaxTestShare caps the test split's share of the calls. Default 0.5.
	MaxTestShare float64 `json:"max_test_share"`
	// ValidationShare is the share of the calls left after the test split that goes to
	// validation; the rest is train. Default 0.1.
	ValidationShare float64 `json:"validation_share"`
}

func (o SetOptions) withDefaults() SetOptions {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.TestSize <= 0 {
		o.TestSize = 200
	}
	if o.MaxTestShare <= 0 || o.MaxTestShare > 1 {
		o.MaxTestShare = 0.5
	}
	if o.ValidationShare <= 0 || o.ValidationShare >= 1 {
		o.ValidationShare = 0.1
	}
	return o
}

// SetParams is what an eval set records about how it was drawn (store.EvalSet.Params).
type SetParams struct {
	SetOptions
	Calls        int            `json:"calls"`        // evaluable calls offered
	Duplicates   int            `json:"duplicates"`   // left out as copies of another call
	Groups       int            `json:"groups"`       // conversations among the calls kept
	StrataCounts map[string]int `json:"strata"`       // calls kept per reference action
	TestStrata   map[string]int `json:"test_strata"`  // test calls per reference action
	Split        map[string]int `json:"split_counts"` // calls per split
}

// DrawSet draws an eval set from a workload's evaluable calls: duplicates are left
// out (the earliest id of each is kept), then whole conversations are dealt, in a
// seeded order, to the test split until it holds TestSize calls in the proportions
// of the reference's actions (largest remainder), then to validation, then to train.
//
// Conversations are never split across splits, so a test call's earlier turns are
// not in train; the price is that the test split's proportions are met as closely
// as whole conversations allow (a second pass fills the test split from the strata
// furthest below their quota).
func DrawSet(id, workloadID string, calls []*Call, o SetOptions, now time.Time) (store.EvalSet, SetParams, error) {
	o = o.withDefaults()
	if len(calls) < 2 {
		return store.EvalSet{}, SetParams{}, fmt.Errorf("eval: workload %s has %d evaluable calls; an eval set needs at least 2", workloadID, len(calls))
	}
	sorted := slices.Clone(calls)
	slices.SortFunc(sorted, func(a, b *Call) int { return cmp.Compare(a.ID, b.ID) })
	seen := make(map[string]bool, len(sorted))
	kept := sorted[:0:0]
	for _, c := range sorted {
		k := dedupKey(c)
		if seen[k] {
			continue
		}
		seen[k] = true
		kept = append(kept, c)
	}
	p := SetParams{SetOptions: o, Calls: len(calls), Duplicates: len(calls) - len(kept),
		StrataCounts: map[string]int{}, TestStrata: map[string]int{}, Split: map[string]int{}}

	// Conversations, in a seeded order that does not depend on the input's order.
	byGroup := map[string][]*Call{}
	var groups []string
	for _, c := range kept {
		if byGroup[c.Group] == nil {
			groups = append(groups, c.Group)
		}
		byGroup[c.Group] = append(byGroup[c.Group], c)
		p.StrataCounts[c.Stratum]++
	}
	p.Groups = len(groups)
	slices.Sort(groups)
	rng := rand.New(rand.NewPCG(o.Seed, 0x65766174)) // "evat"
	rng.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })

	testSize := min(o.TestSize, int(float64(len(kept))*o.MaxTestShare))
	testSize = max(testSize, 1)
	split := map[string]string{} // group -> split
	deal(groups, byGroup, split, store.SplitTest, quotas(p.StrataCounts, len(kept), testSize), testSize)
	rest := 0
	for _, g := range groups {
		if split[g] == "" {
			rest += len(byGroup[g])
		}
	}
	valSize := int(float64(rest)*o.ValidationShare + 0.5)
	restCounts := map[string]int{}
	for _, g := range groups {
		if split[g] == "" {
			for _, c := range byGroup[g] {
				restCounts[c.Stratum]++
			}
		}
	}
	if valSize > 0 && rest-valSize > 0 {
		deal(groups, byGroup, split, store.SplitValidation, quotas(restCounts, rest, valSize), valSize)
	}

	set := store.EvalSet{ID: id, WorkloadID: workloadID, CreatedAt: now}
	for _, g := range groups {
		s := split[g]
		if s == "" {
			s = store.SplitTrain
		}
		for _, c := range byGroup[g] {
			set.Members = append(set.Members, store.EvalMember{CallID: c.ID, Split: s, Stratum: c.Stratum})
			p.Split[s]++
			if s == store.SplitTest {
				p.TestStrata[c.Stratum]++
			}
		}
	}
	slices.SortFunc(set.Members, func(a, b store.EvalMember) int {
		return cmp.Or(cmp.Compare(a.Split, b.Split), cmp.Compare(a.CallID, b.CallID))
	})
	params, err := json.Marshal(p)
	if err != nil {
		return store.EvalSet{}, SetParams{}, err
	}
	set.Params = params
	return set, p, nil
}

// quotas shares size among strata in proportion to counts (of total), by largest
// remainder, so that the quotas sum to size exactly.
func quotas(counts map[string]int, total, size int) map[string]int {
	type rem struct {
		s string
		r float64
	}
	q := make(map[string]int, len(counts))
	var rems []rem
	given := 0
	for s, n := range counts {
		exact := float64(size) * float64(n) / float64(total)
		q[s] = int(exact)
		given += q[s]
		rems = append(rems, rem{s, exact - float64(q[s])})
	}
	slices.SortFunc(rems, func(a, b rem) int { return cmp.Or(cmp.Compare(b.r, a.r), cmp.Compare(a.s, b.s)) })
	for i := 0; given < size && i < len(rems); i++ {
		q[rems[i].s]++
		given++
	}
	return q
}

// deal gives groups not yet dealt to split, in order, while they fit the strata
// quotas, then fills what is still short of size from the groups whose calls are
// furthest below quota. It returns how many calls it dealt.
func deal(groups []string, byGroup map[string][]*Call, split map[string]string, name string, quota map[string]int, size int) int {
	got := map[string]int{}
	n := 0
	fits := func(g string) bool {
		need := map[string]int{}
		for _, c := range byGroup[g] {
			need[c.Stratum]++
		}
		for s, k := range need {
			if got[s]+k > quota[s] {
				return false
			}
		}
		return true
	}
	take := func(g string) {
		split[g] = name
		for _, c := range byGroup[g] {
			got[c.Stratum]++
		}
		n += len(byGroup[g])
	}
	for _, g := range groups {
		if n >= size {
			return n
		}
		if split[g] == "" && fits(g) {
			take(g)
		}
	}
	for n < size {
		best, bestGain := "", 0
		for _, g := range groups {
			if split[g] != "" || n+len(byGroup[g]) > size+len(byGroup[g])/2 {
				continue
			}
			gain := 0
			for _, c := range byGroup[g] {
				if got[c.Stratum] < quota[c.Stratum] {
					gain++
				}
			}
			if gain > bestGain {
				best, bestGain = g, gain
			}
		}
		if best == "" {
			break
		}
		take(best)
	}
	return n
}
