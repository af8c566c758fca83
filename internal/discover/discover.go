// Package discover finds the workloads in recorded calls, on the cold path: explicit
// tags first, then template fingerprints (one agent node each), with the calls of
// templates too rare to stand alone pooled by the shape of their task (tools offered,
// and offline the form of the reference's answer), then content clustering within
// each template or pool on what the call asks (the last user or tool message and the
// conversation's stage) and, offline, on what the reference model did (the tool it
// called, or text, or JSON). It labels each workload and fits the model that
// package workload's Assigner uses to place new untagged calls online.
//
// It is for batch analysis over thousands to hundreds of thousands of calls, in
// seconds. It is not on the hot path (workload.Assigner is), it does no I/O of its
// own beyond an optional embeddings endpoint, and it does not store its result.
package discover

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/downshift-dev/downshift/internal/openai"
	"github.com/downshift-dev/downshift/internal/workload"
)

// Call is one recorded call as discovery reads it. It is a struct of its own so that
// discovery does not depend on how the store keeps calls; the caller copies fields in.
type Call struct {
	ID string
	// Workload is the client's explicit tag; tagged calls form one workload per tag
	// and are not clustered.
	Workload string
	// Fingerprint is the request's template fingerprint (workload.Fingerprint); it is
	// computed from Request when empty.
	Fingerprint string
	// Request is the chat-completion request body as the client sent it (plaintext
	// JSON: open sealed payloads before discovery).
	Request []byte
	// Response is the reference model's answer: a chat.completion, or nil. It gives the
	// call's action (see ReadAction).
	Response []byte
	// GroundTruth is read for the action when Response gives none: a chat.completion,
	// an assistant message, or an array of tool calls (imported datasets carry these).
	GroundTruth []byte
}

// Options tune discovery. The zero value is usable: every zero field takes the default
// documented on it.
type Options struct {
	// Seed makes clustering deterministic: the same calls, options and seed give the
	// same result.
	Seed uint64
	// RequestOnly leaves the reference's action out of the clustering features, as
	// online assignment must. Labels still report actions when answers are present.
	RequestOnly bool
	// MaxK caps the number of clusters tried within one group (default 40).
	MaxK int
	// MinSize is the fewest calls a discovered workload may have; smaller clusters are
	// merged into the nearest (default 5).
	MinSize int
	// PoolBelow: untagged templates with fewer calls are pooled, one pool per task
	// shape (see shapeKey) with at least PoolBelow calls and one for the rarer shapes,
	// and each pool is clustered with template features (tool names and their number,
	// system prompt words) added (default 20).
	PoolBelow int
	// SampleSize is how many calls of a group the choice of k looks at (default 3000);
	// every call is then assigned and the centroids refined on all of them.
	SampleSize int
	// MinSilhouette is the silhouette below which a group is not split (default 0.2:
	// groups of one task score 0.03 to 0.15 on the fixtures and tau-bench, groups of
	// distinct tasks 0.3 and up).
	MinSilhouette float64
	// Dim is the dimension of the dense vectors clustered (default 128).
	Dim int
	// ActionWeight and TemplateWeight are the norms of the action block and of the
	// template block (pooled calls only) beside the request block's norm 1 (defaults
	// 2 and 1). The action weighs more because what the reference did is the sharpest
	// evidence of which task a call is.
	ActionWeight   float64
	TemplateWeight float64
	// MinSimilarity goes into the model: the cosine below which online assignment
	// names no workload (default 0.05).
	MinSimilarity float64
	// Features configures the request featuriser (default workload.DefaultFeatureConfig).
	Features workload.FeatureConfig
	// Embedder, when set, gives the text block of the request features from an
	// embeddings endpoint instead of the built-in TF-IDF. The online model stays on
	// TF-IDF, which needs no network on the hot path.
	Embedder Embedder
	// Workers is how many goroutines featurise and cluster (default GOMAXPROCS).
	Workers int
}

func (o *Options) defaults() {
	if o.MaxK <= 0 {
		o.MaxK = 40
	}
	if o.MinSize <= 0 {
		o.MinSize = 5
	}
	if o.PoolBelow <= 0 {
		o.PoolBelow = 20
	}
	if o.SampleSize <= 0 {
		o.SampleSize = 3000
	}
	if o.MinSilhouette == 0 {
		o.MinSilhouette = 0.2
	}
	if o.Dim <= 0 {
		o.Dim = 128
	}
	if o.ActionWeight == 0 {
		o.ActionWeight = 2
	}
	if o.TemplateWeight == 0 {
		o.TemplateWeight = 1
	}
	if o.MinSimilarity == 0 {
		o.MinSimilarity = 0.05
	}
	if o.Features == (workload.FeatureConfig{}) {
		o.Features = workload.DefaultFeatureConfig()
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
}

// Result is what discovery found.
type Result struct {
	// Workloads, largest first (ties by ID).
	Workloads []Workload
	// Assignments maps each call's ID to its workload's ID.
	Assignments map[string]string
	// Model places new untagged calls online (see workload.NewAssigner).
	Model *workload.Model
}

// Workload is one discovered (or tagged) workload.
type Workload struct {
	// ID is stable for the same calls and options: a tag is its own ID; a discovered
	// workload's ID hashes its template group, dominant action and top terms. Across
	// analyses of different calls, KeepIDs carries IDs over.
	ID string
	// Tag is the client's tag, for tagged workloads.
	Tag string
	// Label is a short human name: the tag, or the dominant action and top terms.
	Label string
	// Fingerprints are the templates of the workload's calls, most calls first.
	Fingerprints []string
	// Terms are the words most distinctive of the workload's requests.
	Terms []string
	// Tools are the tools the reference called, most often first.
	Tools []Count
	// OutputTypes counts the reference's answers by output type.
	OutputTypes []Count
	// Representative is the ID of the call nearest the workload's centroid.
	Representative string
	// CallIDs are the workload's calls, in input order.
	CallIDs []string
}

// Count is a name and how often it occurs.
type Count struct {
	Name string
	N    int
}

// Embedder embeds texts; an OpenAI-compatible /v1/embeddings client is one.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// ErrNoCalls is returned by Discover when it is given no calls.
var ErrNoCalls = errors.New("discover: no calls")

// callInfo is what discovery keeps per call between passes.
type callInfo struct {
	fp     string
	action Action
	group  int
	tpl    template // read for pooled calls only
}

type group struct {
	key     string // "tag:<tag>", "fp:<fingerprint>", "pool:<shape>" or "pool"
	tag     string
	fp      string // the fingerprint for fp groups
	members []int  // call indexes, ascending
	pooled  bool
}

// Discover groups calls into workloads.
func Discover(ctx context.Context, calls []Call, opts Options) (*Result, error) {
	if len(calls) == 0 {
		return nil, ErrNoCalls
	}
	opts.defaults()
	seen := make(map[string]bool, len(calls))
	for _, c := range calls {
		if c.ID == "" || seen[c.ID] {
			return nil, fmt.Errorf("discover: call id %q is empty or repeated", c.ID)
		}
		seen[c.ID] = true
	}
	idf, err := fitIDF(calls, opts)
	if err != nil {
		return nil, err
	}
	fz, err := workload.NewFeaturizer(opts.Features, idf)
	if err != nil {
		return nil, err
	}
	info := make([]callInfo, len(calls))
	parallel(len(calls), opts.Workers, func(i int) {
		c := &calls[i]
		info[i].fp = c.Fingerprint
		if info[i].fp == "" {
			info[i].fp = fingerprintOf(c.Request)
		}
		info[i].action = ReadAction(c.Response)
		if info[i].action.Label == "" {
			info[i].action = ReadAction(c.GroundTruth)
		}
	})
	groups := groupCalls(calls, info, opts)
	pts, err := densify(ctx, calls, info, groups, fz, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Assignments: make(map[string]string, len(calls))}
	model := &workload.Model{Version: workload.ModelVersion, Features: opts.Features, IDF: idf, MinSimilarity: opts.MinSimilarity}
	var all []*built
	for gi := range groups {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		g := &groups[gi]
		assign, cent := clusterGroup(pts, g, opts)
		for k := range cent.n() {
			var members []int
			for i, a := range assign {
				if int(a) == k {
					members = append(members, g.members[i])
				}
			}
			if len(members) > 0 {
				all = append(all, &built{g: g, members: members, centroid: cent.row(k)})
			}
		}
	}
	describe(calls, info, pts, fz, all, opts)
	nameWorkloads(all)
	sort.Slice(all, func(i, j int) bool {
		if len(all[i].members) != len(all[j].members) {
			return len(all[i].members) > len(all[j].members)
		}
		return all[i].w.ID < all[j].w.ID
	})
	for _, b := range all {
		for _, m := range b.members {
			res.Assignments[calls[m].ID] = b.w.ID
		}
		res.Workloads = append(res.Workloads, b.w)
		model.Centroids = append(model.Centroids, b.centroids...)
	}
	res.Model = model
	return res, nil
}

func fingerprintOf(body []byte) string {
	h, err := openai.ScanChatRequest(body)
	if err != nil {
		return workload.Fingerprint(nil)
	}
	return workload.Fingerprint(h.Request())
}

// fitIDF learns the text features' IDF from up to 20,000 calls spread evenly over the
// input.
func fitIDF(calls []Call, opts Options) (workload.IDF, error) {
	fz, err := workload.NewFeaturizer(opts.Features, workload.IDF{})
	if err != nil {
		return workload.IDF{}, err
	}
	const maxDocs = 20000
	step := max(1, len(calls)/maxDocs)
	var idx []int
	for i := 0; i < len(calls); i += step {
		idx = append(idx, i)
	}
	dfs := make([]map[uint32]int, opts.Workers)
	var wg sync.WaitGroup
	for w := range opts.Workers {
		dfs[w] = map[uint32]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var terms []workload.Term
			for j := w; j < len(idx); j += opts.Workers {
				conv, err := workload.ReadConversation(calls[idx[j]].Request)
				if err != nil {
					continue
				}
				terms = fz.Terms(&conv, terms[:0])
				for _, t := range terms {
					dfs[w][t.Idx]++
				}
			}
		}()
	}
	wg.Wait()
	df := dfs[0]
	for _, m := range dfs[1:] {
		for k, n := range m {
			df[k] += n
		}
	}
	return workload.FitIDF(df, len(idx), 2), nil
}

// groupCalls puts calls into groups: one per tag, one per untagged template with at
// least PoolBelow calls, and for the rest one pool per task shape (see shapeKey) with
// at least PoolBelow calls and one pool for the rarest shapes. Groups come in a fixed
// order. It reads the template of each pooled call into info.
func groupCalls(calls []Call, info []callInfo, opts Options) []group {
	fpCount := map[string]int{}
	for i := range calls {
		if calls[i].Workload == "" {
			fpCount[info[i].fp]++
		}
	}
	var pooled []int
	for i := range calls {
		if calls[i].Workload == "" && fpCount[info[i].fp] < opts.PoolBelow {
			pooled = append(pooled, i)
		}
	}
	shapes := make([]string, len(calls))
	parallel(len(pooled), opts.Workers, func(j int) {
		i := pooled[j]
		info[i].tpl = readTemplate(calls[i].Request)
		shapes[i] = shapeKey(info[i].tpl, info[i].action, opts.RequestOnly)
	})
	shapeCount := map[string]int{}
	for _, i := range pooled {
		shapeCount[shapes[i]]++
	}
	byKey := map[string]*group{}
	var keys []string
	for i := range calls {
		var g group
		switch {
		case calls[i].Workload != "":
			g = group{key: "tag:" + calls[i].Workload, tag: calls[i].Workload}
		case fpCount[info[i].fp] >= opts.PoolBelow:
			g = group{key: "fp:" + info[i].fp, fp: info[i].fp}
		case shapeCount[shapes[i]] >= opts.PoolBelow:
			g = group{key: "pool:" + shapes[i], pooled: true}
		default:
			g = group{key: "pool", pooled: true}
		}
		p, ok := byKey[g.key]
		if !ok {
			p = &g
			byKey[g.key] = p
			keys = append(keys, g.key)
		}
		p.members = append(p.members, i)
	}
	slices.Sort(keys)
	out := make([]group, len(keys))
	for gi, k := range keys {
		out[gi] = *byKey[k]
		for _, m := range out[gi].members {
			info[m].group = gi
		}
	}
	return out
}

// densify computes each call's dense clustering vector: the request vector (norm 1),
// the action block (ActionWeight) unless RequestOnly, and for pooled calls the
// template block (TemplateWeight), projected to Dim dimensions.
func densify(ctx context.Context, calls []Call, info []callInfo, groups []group, fz *workload.Featurizer, opts Options) (points, error) {
	pts := points{dim: opts.Dim, data: make([]float32, len(calls)*opts.Dim)}
	pr := projector{dim: opts.Dim, s: 4}
	dimBits := opts.Features.DimBits
	// With an embedder, the text block is the embedding and the featuriser gives only
	// the stage block; the two keep the configured proportions and norm 1 together.
	var texts [][]float32
	textWeight := float32(0)
	if opts.Embedder != nil {
		var err error
		if texts, err = embedAll(ctx, calls, opts); err != nil {
			return points{}, err
		}
		cfg := opts.Features
		total := math.Hypot(cfg.TextWeight, cfg.StageWeight)
		textWeight = float32(cfg.TextWeight / total)
		cfg.TextWeight, cfg.StageWeight = 0, cfg.StageWeight/total
		if cfg.StageWeight == 0 {
			cfg.StageWeight = 1e-9 // a featuriser needs some weight; this one adds nothing
		}
		if fz, err = workload.NewFeaturizer(cfg, workload.IDF{}); err != nil {
			return points{}, err
		}
	}
	stageScale := float32(1)
	if texts != nil {
		stageScale = float32(math.Sqrt(max(0, 1-float64(textWeight*textWeight))))
	}
	// Pooled calls: their template and action names, kept where shared by two calls.
	pooledNames := map[int][2][]string{}
	df := map[string]int{}
	for gi := range groups {
		if !groups[gi].pooled {
			continue
		}
		for _, m := range groups[gi].members {
			var act []string
			if !opts.RequestOnly && info[m].action.Label != "" {
				act = actionNames(info[m].action, true)
			}
			tpl := templateNames(info[m].tpl)
			pooledNames[m] = [2][]string{act, tpl}
			seen := map[string]bool{}
			for _, n := range append(slices.Clone(act), tpl...) {
				if !seen[n] {
					seen[n] = true
					df[n]++
				}
			}
		}
	}
	parallelChunks(len(calls), opts.Workers, func(lo, hi int) {
		var v workload.Vector
		for i := lo; i < hi; i++ {
			row := pts.row(i)
			conv, err := workload.ReadConversation(calls[i].Request)
			if err == nil {
				v = fz.Vector(&conv, v)
				if texts != nil {
					pr.add(row, embeddingVector(texts[i]), textWeight)
				}
				pr.add(row, v, stageScale)
			}
			if groups[info[i].group].pooled {
				names := pooledNames[i]
				pr.add(row, oneHot(nsAction, keepShared(names[0], df), dimBits), float32(opts.ActionWeight))
				pr.add(row, oneHot(nsTemplate, keepShared(names[1], df), dimBits), float32(opts.TemplateWeight))
			} else if !opts.RequestOnly && info[i].action.Label != "" {
				pr.add(row, oneHot(nsAction, actionNames(info[i].action, false), dimBits), float32(opts.ActionWeight))
			}
		}
	})
	return pts, ctx.Err()
}

// clusterGroup clusters a group's calls and returns each member's cluster and the
// centroids. Tagged groups and groups too small to split are one cluster.
func clusterGroup(pts points, g *group, opts Options) ([]int32, points) {
	n := len(g.members)
	one := func() ([]int32, points) {
		c := points{dim: pts.dim, data: make([]float32, pts.dim)}
		meanInto(c.row(0), pts, g.members)
		return make([]int32, n), c
	}
	if g.tag != "" || n < 2*opts.MinSize {
		return one()
	}
	gseed := hashString(g.key)
	rng := rand.New(rand.NewPCG(opts.Seed, gseed))
	sample := g.members
	if n > opts.SampleSize {
		perm := rng.Perm(n)[:opts.SampleSize]
		slices.Sort(perm)
		sample = make([]int, len(perm))
		for i, p := range perm {
			sample[i] = g.members[p]
		}
	}
	// k stays within √n as well: on small groups the silhouette rewards many tiny
	// clusters of near-duplicate requests (the same two cities asked twice).
	var ks []int
	kmax := min(opts.MaxK, int(math.Sqrt(float64(len(sample)))), len(sample)/opts.MinSize)
	for _, k := range kGrid {
		if k <= kmax {
			ks = append(ks, k)
		}
	}
	if len(ks) == 0 {
		return one()
	}
	// The silhouette is scored on up to silhouetteSample points of the sample, with
	// their distances computed once for every k.
	sil := sample
	if len(sil) > silhouetteSample {
		step := float64(len(sil)) / silhouetteSample
		sub := make([]int, silhouetteSample)
		for i := range sub {
			sub[i] = int(float64(i) * step)
		}
		sil = sub
	} else {
		sil = make([]int, len(sample))
		for i := range sil {
			sil[i] = i
		}
	}
	silPoints := make([]int, len(sil))
	for i, s := range sil {
		silPoints[i] = sample[s]
	}
	dist := pairwise(pts, silPoints, opts.Workers)
	results := make([]clustering, len(ks))
	scores := make([]float64, len(ks))
	parallel(len(ks), opts.Workers, func(i int) {
		// Several k-means++ starts; the one with the least inertia stands for k.
		r := rand.New(rand.NewPCG(opts.Seed^uint64(ks[i])*0x9e3779b97f4a7c15, gseed))
		for range restarts {
			c := kmeans(pts, sample, ks[i], r, 30, 1)
			if results[i].k == 0 || c.inertia < results[i].inertia {
				results[i] = c
			}
		}
		labels := make([]int32, len(sil))
		for j, s := range sil {
			labels[j] = results[i].assign[s]
		}
		scores[i] = silhouette(dist, labels, ks[i])
	})
	best := 0
	for i := range ks {
		if scores[i] > scores[best]+1e-9 {
			best = i
		}
	}
	if scores[best] < opts.MinSilhouette {
		return one()
	}
	c := results[best]
	// Assign every member and refine the centroids on all of them.
	full := clustering{k: c.k, centroids: c.centroids, assign: make([]int32, n)}
	for i := range full.assign {
		full.assign[i] = -1
	}
	for it := 0; it < 10; it++ {
		moved, _ := assignNearest(pts, g.members, full.centroids, full.assign, opts.Workers)
		if moved == 0 {
			break
		}
		updateCentroids(pts, g.members, &full)
	}
	mergeSmall(pts, g.members, &full, opts.MinSize, opts.Workers)
	return full.assign, full.centroids
}

// silhouetteSample is how many points the silhouette of each k is scored on.
const silhouetteSample = 2000

// restarts is how many k-means++ starts are tried for each k.
const restarts = 3

// kGrid is the numbers of clusters tried: every k up to 12, then coarser steps.
var kGrid = []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64}

// mergeSmall removes the smallest cluster while it has fewer than minSize members,
// moving its members to their nearest remaining centroid, then renumbers clusters.
func mergeSmall(pts points, idx []int, c *clustering, minSize, workers int) {
	for c.k > 1 {
		counts := make([]int, c.k)
		for _, a := range c.assign {
			counts[a]++
		}
		small := -1
		for j, n := range counts {
			if n < minSize && (small < 0 || n < counts[small]) {
				small = j
			}
		}
		if small < 0 {
			break
		}
		// Drop centroid small and renumber the ones after it.
		data := slices.Delete(c.centroids.data, small*pts.dim, (small+1)*pts.dim)
		c.centroids = points{dim: pts.dim, data: data}
		c.k--
		for i, a := range c.assign {
			switch {
			case int(a) == small:
				c.assign[i] = -1
			case int(a) > small:
				c.assign[i] = a - 1
			}
		}
		assignNearest(pts, idx, c.centroids, c.assign, workers)
		updateCentroids(pts, idx, c)
	}
}

func meanInto(dst []float32, pts points, idx []int) {
	sum := make([]float64, len(dst))
	for _, i := range idx {
		for d, v := range pts.row(i) {
			sum[d] += float64(v)
		}
	}
	for d := range dst {
		dst[d] = float32(sum[d] / float64(max(1, len(idx))))
	}
}

// parallel runs fn(i) for i in [0, n) on up to workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// parallelChunks runs fn over [0, n) split into contiguous chunks, one per worker.
func parallelChunks(n, workers int, fn func(lo, hi int)) {
	var wg sync.WaitGroup
	workers = max(1, min(workers, n))
	chunk := (n + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func hashString(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 0x100000001b3
	}
	return h
}

func sqrt(x float64) float64 { return math.Sqrt(x) }
