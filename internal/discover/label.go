package discover

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/downshift-dev/downshift/internal/workload"
)

// built is a workload while it is being described.
type built struct {
	g         *group
	members   []int // call indexes, ascending
	centroid  []float32
	w         Workload
	termDF    map[string]int // sampled calls holding each term
	sampled   int
	centroids []workload.Centroid
}

const (
	// labelSample is how many calls per workload feed its terms and its online centroid.
	labelSample = 300
	// centroidTerms is how many of a centroid's largest weights the model keeps.
	centroidTerms = 384
	// maxTerms is how many distinctive terms a workload lists.
	maxTerms = 6
)

// describe fills in each workload's terms, tools, output types, representative and
// online centroids.
func describe(calls []Call, info []callInfo, pts points, fz *workload.Featurizer, all []*built, opts Options) {
	parallel(len(all), opts.Workers, func(bi int) {
		b := all[bi]
		w := &b.w
		w.Tag = b.g.tag
		fps := map[string]int{}
		tools := map[string]int{}
		outs := map[string]int{}
		best, bestD := -1, float32(math.MaxFloat32)
		for _, m := range b.members {
			w.CallIDs = append(w.CallIDs, calls[m].ID)
			fps[info[m].fp]++
			a := info[m].action
			for _, t := range a.Tools {
				tools[t]++
			}
			if a.Output != "" {
				outs[a.Output]++
			}
			if d := sqDist(pts.row(m), b.centroid); d < bestD {
				best, bestD = m, d
			}
		}
		w.Representative = calls[best].ID
		w.Fingerprints = sortedKeys(fps)
		w.Tools = counts(tools)
		w.OutputTypes = counts(outs)

		// Terms and the online centroid come from an even sample of the members.
		step := max(1, len(b.members)/labelSample)
		b.termDF = map[string]int{}
		vecs := map[string][]workload.Vector{} // per fingerprint key of the model
		for j := 0; j < len(b.members); j += step {
			m := b.members[j]
			conv, err := workload.ReadConversation(calls[m].Request)
			if err != nil {
				continue
			}
			b.sampled++
			seen := map[string]bool{}
			for _, t := range tokens(conv.LastText, 200) {
				if !seen[t] {
					seen[t] = true
					b.termDF[t]++
				}
			}
			key := ""
			if !b.g.pooled {
				key = info[m].fp
			}
			vecs[key] = append(vecs[key], fz.Vector(&conv, workload.Vector{}))
		}
		for _, key := range sortedKeys(countsOf(vecs)) {
			b.centroids = append(b.centroids, prototypes(key, vecs[key], opts)...)
		}
	})
	// Distinctive terms: share of the workload's sampled calls holding the term, times
	// its inverse frequency over all sampled calls (a class-based TF-IDF).
	df := map[string]int{}
	total := 0
	for _, b := range all {
		total += b.sampled
		for t, n := range b.termDF {
			df[t] += n
		}
	}
	for _, b := range all {
		type scored struct {
			t string
			s float64
		}
		var ss []scored
		for t, n := range b.termDF {
			share := float64(n) / float64(max(1, b.sampled))
			if share < 0.1 {
				continue
			}
			ss = append(ss, scored{t, share * math.Log(float64(1+total)/float64(1+df[t]))})
		}
		slices.SortFunc(ss, func(x, y scored) int {
			if c := cmp.Compare(y.s, x.s); c != 0 {
				return c
			}
			return strings.Compare(x.t, y.t)
		})
		for _, s := range ss[:min(len(ss), maxTerms)] {
			b.w.Terms = append(b.w.Terms, s.t)
		}
		b.w.Label = label(&b.w)
	}
}

// prototypes returns the online centroids of one workload's calls of one template. A
// workload is often several kinds of request that lead to one action (a text answer
// follows a greeting, a tool result or a refusal alike), and one mean would sit
// between them near none, so its sampled request vectors are clustered into up to
// maxPrototypes groups (one per protoSize calls) and each group gives a centroid.
func prototypes(fp string, vecs []workload.Vector, opts Options) []workload.Centroid {
	k := max(1, min(maxPrototypes, len(vecs)/protoSize))
	assign := make([]int32, len(vecs))
	if k > 1 {
		pr := projector{dim: opts.Dim, s: 4}
		pts := points{dim: opts.Dim, data: make([]float32, len(vecs)*opts.Dim)}
		idx := make([]int, len(vecs))
		for i, v := range vecs {
			pr.add(pts.row(i), v, 1)
			idx[i] = i
		}
		rng := rand.New(rand.NewPCG(opts.Seed, hashString(fp)))
		assign = kmeans(pts, idx, k, rng, 20, 1).assign
	}
	sums := make([]map[uint32]float64, k)
	for i, v := range vecs {
		a := assign[i]
		if sums[a] == nil {
			sums[a] = map[uint32]float64{}
		}
		for j, ix := range v.Idx {
			sums[a][ix] += float64(v.Val[j])
		}
	}
	var out []workload.Centroid
	for _, sum := range sums {
		if len(sum) > 0 {
			out = append(out, sparseCentroid(fp, sum))
		}
	}
	return out
}

const (
	maxPrototypes = 32
	protoSize     = 10
)

// sparseCentroid keeps the largest weights of a summed request vector, unit-normalised.
func sparseCentroid(fp string, sum map[uint32]float64) workload.Centroid {
	type kv struct {
		ix uint32
		v  float64
	}
	kvs := make([]kv, 0, len(sum))
	for ix, v := range sum {
		kvs = append(kvs, kv{ix, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int {
		if c := cmp.Compare(math.Abs(b.v), math.Abs(a.v)); c != 0 {
			return c
		}
		return cmp.Compare(a.ix, b.ix)
	})
	kvs = kvs[:min(len(kvs), centroidTerms)]
	slices.SortFunc(kvs, func(a, b kv) int { return cmp.Compare(a.ix, b.ix) })
	var norm float64
	for _, e := range kvs {
		norm += e.v * e.v
	}
	norm = math.Sqrt(norm)
	c := workload.Centroid{Fingerprint: fp}
	for _, e := range kvs {
		c.Idx = append(c.Idx, e.ix)
		c.Val = append(c.Val, float32(e.v/norm))
	}
	return c
}

// label names a workload for people: its tag, or its dominant action and top terms.
func label(w *Workload) string {
	if w.Tag != "" {
		return w.Tag
	}
	head := "calls"
	calls := 0
	for _, t := range w.Tools {
		calls += t.N
	}
	switch {
	case len(w.Tools) > 0 && (len(w.OutputTypes) == 0 || w.OutputTypes[0].Name == OutputToolCalls):
		// Name the tool when it is most of the calls; a pool of templates calls many.
		head = w.Tools[0].Name
		if 2*w.Tools[0].N < calls {
			head = "mixed tool calls"
		}
	case len(w.OutputTypes) > 0:
		head = w.OutputTypes[0].Name + " answers"
	}
	if len(w.Terms) == 0 {
		return head
	}
	return head + ": " + strings.Join(w.Terms[:min(3, len(w.Terms))], ", ")
}

// nameWorkloads gives each workload its ID: the tag, or "wl-" and 12 hex digits of a
// hash of its group, label and terms, with "-2", "-3"... for the rare clash.
func nameWorkloads(all []*built) {
	used := map[string]int{}
	// Tags first, so that a discovered workload never takes a tag's name.
	for _, b := range all {
		if b.g.tag != "" {
			b.w.ID = b.g.tag
			used[b.w.ID]++
		}
	}
	for _, b := range all {
		if b.g.tag != "" {
			continue
		}
		h := hashString(b.g.key + "\x00" + b.w.Label + "\x00" + strings.Join(b.w.Terms, " "))
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], h)
		id := "wl-" + hex.EncodeToString(buf[:6])
		used[id]++
		if n := used[id]; n > 1 {
			id += "-" + strconv.Itoa(n)
		}
		b.w.ID = id
	}
	for _, b := range all {
		for i := range b.centroids {
			b.centroids[i].Workload = b.w.ID
		}
	}
}

// counts returns a count map as Counts, most first (ties by name).
func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{k, n})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if c := cmp.Compare(b.N, a.N); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// sortedKeys returns a count map's keys, most first (ties by name).
func sortedKeys(m map[string]int) []string {
	var out []string
	for _, c := range counts(m) {
		out = append(out, c.Name)
	}
	return out
}

func countsOf[V any](m map[string]V) map[string]int {
	out := make(map[string]int, len(m))
	for k := range m {
		out[k] = 1
	}
	return out
}
