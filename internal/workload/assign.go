package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
)

// ModelVersion is the version of the Model format this package reads and writes.
const ModelVersion = 1

// Model is what online assignment needs from workload discovery: how to featurise a
// request and one centroid per known workload and template, over request-side
// features only (the reference's answer is not known when a call arrives). Package
// discover fits it; it is saved as JSON (see MarshalJSON) and loaded into an Assigner.
type Model struct {
	Version  int           `json:"version"`
	Features FeatureConfig `json:"features"`
	IDF      IDF           `json:"idf"`
	// MinSimilarity is the cosine below which Assign names no workload.
	MinSimilarity float64    `json:"min_similarity"`
	Centroids     []Centroid `json:"centroids"`
}

// Centroid is the mean request vector of a workload's calls of one template,
// unit-normalised and pruned to its largest weights.
type Centroid struct {
	Workload string `json:"workload"`
	// Fingerprint is the template the calls share; "" stands for calls whose template
	// has no centroid of its own (templates too rare to cluster alone).
	Fingerprint string    `json:"fingerprint"`
	Idx         []uint32  `json:"idx"`
	Val         []float32 `json:"val"`
}

// Assigner assigns an untagged call to the nearest known workload, on the hot path:
// the call's template (fingerprint) picks the candidate centroids, and when there is
// more than one, the cosine of the request vector with each picks among them. It is
// safe for concurrent use and does not change after NewAssigner.
type Assigner struct {
	f         *Featurizer
	min       float64
	workloads []string       // per centroid
	byFP      map[string]int // fingerprint -> first index in cands
	cands     [][]int32      // candidate centroids per fingerprint; cands[0] is the pooled set
	single    []string       // per cands entry: the one workload when all candidates share it
	post      []posting      // postings, grouped by dimension (see Featurizer.slots)
	vecs      sync.Pool
}

type posting struct {
	centroid int32
	weight   float32
}

// NewAssigner builds an Assigner from a model.
func NewAssigner(m *Model) (*Assigner, error) {
	if m.Version != ModelVersion {
		return nil, fmt.Errorf("workload: model version %d, want %d", m.Version, ModelVersion)
	}
	f, err := NewFeaturizer(m.Features, m.IDF)
	if err != nil {
		return nil, err
	}
	a := &Assigner{f: f, min: m.MinSimilarity, byFP: map[string]int{}, cands: [][]int32{nil}}
	a.vecs.New = func() any { return &scoreScratch{} }
	counts := make([]uint32, len(f.slots))
	for ci, c := range m.Centroids {
		if c.Workload == "" {
			return nil, fmt.Errorf("workload: model centroid %d has no workload", ci)
		}
		if len(c.Idx) != len(c.Val) {
			return nil, fmt.Errorf("workload: model centroid %d: idx and val differ in length", ci)
		}
		for _, ix := range c.Idx {
			if ix > f.mask {
				return nil, fmt.Errorf("workload: model centroid %d: index %d outside the feature space", ci, ix)
			}
			counts[ix]++
		}
		a.workloads = append(a.workloads, c.Workload)
		k := 0
		if c.Fingerprint != "" {
			var ok bool
			if k, ok = a.byFP[c.Fingerprint]; !ok {
				k = len(a.cands)
				a.byFP[c.Fingerprint] = k
				a.cands = append(a.cands, nil)
			}
		}
		a.cands[k] = append(a.cands[k], int32(ci))
	}
	a.single = make([]string, len(a.cands))
	for k, cs := range a.cands {
		if len(cs) > 0 {
			a.single[k] = a.workloads[cs[0]]
			for _, c := range cs[1:] {
				if a.workloads[c] != a.single[k] {
					a.single[k] = ""
					break
				}
			}
		}
	}
	// Postings grouped by dimension: slots[d].start is where dimension d's begin.
	var total uint32
	for d := range counts {
		f.slots[d].start = total
		total += counts[d]
	}
	f.slots[len(f.slots)-1].start = total
	a.post = make([]posting, total)
	next := make([]uint32, len(counts))
	for d := range counts {
		next[d] = f.slots[d].start
	}
	for ci, c := range m.Centroids {
		for i, ix := range c.Idx {
			a.post[next[ix]] = posting{centroid: int32(ci), weight: c.Val[i]}
			next[ix]++
		}
	}
	return a, nil
}

type scoreScratch struct {
	v      Vector
	scores []float32
}

// Assign returns the workload of an untagged call with template fingerprint fp and
// request body body, and the cosine similarity of its request vector with that
// workload's centroid. A template with one known workload gives that workload and
// similarity 1 without reading the body. A template without centroids of its own is
// compared with the pooled centroids. It returns "" when no centroid is a candidate,
// the body is not a chat request, or the best similarity is below the model's
// MinSimilarity.
func (a *Assigner) Assign(fp string, body []byte) (workload string, similarity float64) {
	k := a.byFP[fp] // 0, the pooled set, when fp has no centroids of its own
	cands := a.cands[k]
	if len(cands) == 0 {
		return "", 0
	}
	if a.single[k] != "" {
		return a.single[k], 1
	}
	c, err := ReadConversation(body)
	if err != nil {
		return "", 0
	}
	return a.nearest(&c, cands)
}

// AssignConversation is Assign for a request already read into a Conversation.
func (a *Assigner) AssignConversation(fp string, c *Conversation) (string, float64) {
	k := a.byFP[fp]
	cands := a.cands[k]
	if len(cands) == 0 {
		return "", 0
	}
	if a.single[k] != "" {
		return a.single[k], 1
	}
	return a.nearest(c, cands)
}

func (a *Assigner) nearest(c *Conversation, cands []int32) (string, float64) {
	s := a.vecs.Get().(*scoreScratch)
	defer a.vecs.Put(s)
	s.v = a.f.Vector(c, s.v)
	if cap(s.scores) < len(a.workloads) {
		s.scores = make([]float32, len(a.workloads))
	}
	scores := s.scores[:len(a.workloads)]
	clear(scores)
	slots := a.f.slots
	for i, ix := range s.v.Idx {
		w := s.v.Val[i]
		for _, p := range a.post[slots[ix].start:slots[ix+1].start] {
			scores[p.centroid] += w * p.weight
		}
	}
	best, bestScore := int32(-1), float32(math.Inf(-1))
	for _, ci := range cands {
		if scores[ci] > bestScore {
			best, bestScore = ci, scores[ci]
		}
	}
	if best < 0 || float64(bestScore) < a.min {
		return "", float64(max(bestScore, 0))
	}
	return a.workloads[best], float64(bestScore)
}

// Featurizer returns the Assigner's featuriser.
func (a *Assigner) Featurizer() *Featurizer { return a.f }

// MarshalModel encodes a model as JSON.
func MarshalModel(m *Model) ([]byte, error) { return json.Marshal(m) }

// UnmarshalModel decodes a model written by MarshalModel.
func UnmarshalModel(b []byte) (*Model, error) {
	var m Model
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("workload: decode model: %w", err)
	}
	if m.Version != ModelVersion {
		return nil, errors.New("workload: model version " + fmt.Sprint(m.Version) + " is not supported")
	}
	return &m, nil
}
