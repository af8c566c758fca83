package discover

import (
	"math"
	"math/rand/v2"
	"sync"
)

// points is a dense matrix: n rows of dim float32 each, one row per call.
type points struct {
	dim  int
	data []float32
}

func (p points) n() int              { return len(p.data) / p.dim }
func (p points) row(i int) []float32 { return p.data[i*p.dim : (i+1)*p.dim] }

func sqDist(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return s0 + s1 + s2 + s3
}

// clustering is k centroids over points and each point's cluster.
type clustering struct {
	k         int
	centroids points
	assign    []int32
	inertia   float64
}

// kmeans clusters the rows idx of p into k clusters: k-means++ seeding from rng, then
// Lloyd iterations until no point moves or maxIter. It is deterministic for an rng.
func kmeans(p points, idx []int, k int, rng *rand.Rand, maxIter, workers int) clustering {
	n := len(idx)
	c := clustering{k: k, centroids: points{dim: p.dim, data: make([]float32, k*p.dim)}, assign: make([]int32, n)}
	// Greedy k-means++ (as in scikit-learn): each next seed is the best, by the total
	// squared distance it leaves, of a few candidates drawn with probability
	// proportional to the squared distance to the nearest seed so far. The greedy pick
	// finds small, far-off groups (a rare tool) that plain k-means++ often misses.
	d2 := make([]float64, n)
	first := rng.IntN(n)
	copy(c.centroids.row(0), p.row(idx[first]))
	var sum float64
	for i, pi := range idx {
		d2[i] = float64(sqDist(p.row(pi), c.centroids.row(0)))
		sum += d2[i]
	}
	tries := 2 + int(math.Log(float64(k)))
	cand := make([]float64, n)
	bestD := make([]float64, n)
	for j := 1; j < k; j++ {
		bestPick, bestSum := -1, math.Inf(1)
		for range tries {
			pick := rng.IntN(n)
			if sum > 0 {
				r := rng.Float64() * sum
				for pick = 0; pick < n-1; pick++ {
					r -= d2[pick]
					if r < 0 {
						break
					}
				}
			}
			x := p.row(idx[pick])
			var s float64
			for i, pi := range idx {
				cand[i] = min(d2[i], float64(sqDist(p.row(pi), x)))
				s += cand[i]
			}
			if s < bestSum {
				bestPick, bestSum = pick, s
				copy(bestD, cand)
			}
		}
		copy(c.centroids.row(j), p.row(idx[bestPick]))
		copy(d2, bestD)
		sum = bestSum
	}
	for i := range c.assign {
		c.assign[i] = -1
	}
	for it := 0; it < maxIter; it++ {
		moved, inertia := assignNearest(p, idx, c.centroids, c.assign, workers)
		c.inertia = inertia
		if moved == 0 {
			break
		}
		updateCentroids(p, idx, &c)
	}
	return c
}

// assignNearest sets each point's cluster to its nearest centroid and returns how many
// points moved and the sum of squared distances.
func assignNearest(p points, idx []int, cent points, assign []int32, workers int) (int, float64) {
	k := cent.n()
	workers = max(1, min(workers, len(idx)/2048+1))
	var mu sync.Mutex
	moved, inertia := 0, 0.0
	var wg sync.WaitGroup
	chunk := (len(idx) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(idx))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, in := 0, 0.0
			for i := lo; i < hi; i++ {
				x := p.row(idx[i])
				best, bd := int32(0), float32(math.MaxFloat32)
				for j := range k {
					if d := sqDist(x, cent.row(j)); d < bd {
						best, bd = int32(j), d
					}
				}
				if assign[i] != best {
					assign[i] = best
					m++
				}
				in += float64(bd)
			}
			mu.Lock()
			moved += m
			inertia += in
			mu.Unlock()
		}()
	}
	wg.Wait()
	return moved, inertia
}

// updateCentroids sets each centroid to the mean of its points; an empty cluster keeps
// its centroid.
func updateCentroids(p points, idx []int, c *clustering) {
	sums := make([]float64, c.k*p.dim)
	counts := make([]int, c.k)
	for i, pi := range idx {
		a := int(c.assign[i])
		counts[a]++
		s := sums[a*p.dim : (a+1)*p.dim]
		for d, v := range p.row(pi) {
			s[d] += float64(v)
		}
	}
	for j := range c.k {
		if counts[j] == 0 {
			continue
		}
		cj := c.centroids.row(j)
		for d := range cj {
			cj[d] = float32(sums[j*p.dim+d] / float64(counts[j]))
		}
	}
}

// distances is a symmetric matrix of Euclidean distances between sample points.
type distances struct {
	n int
	d []float32
}

func pairwise(p points, idx []int, workers int) distances {
	n := len(idx)
	m := distances{n: n, d: make([]float32, n*n)}
	parallel(n, workers, func(i int) {
		x := p.row(idx[i])
		for j := i + 1; j < n; j++ {
			m.d[i*n+j] = float32(math.Sqrt(float64(sqDist(x, p.row(idx[j])))))
		}
	})
	for i := range n {
		for j := i + 1; j < n; j++ {
			m.d[j*n+i] = m.d[i*n+j]
		}
	}
	return m
}

// silhouette is the mean silhouette of a labelling of the matrix's points: for each
// point, a is its mean distance to the rest of its cluster and b the least mean
// distance to another cluster, and it scores (b-a)/max(a,b) (0 for a point alone in
// its cluster). Unlike the simplified silhouette, it does not rise with k on data that
// has no structure, so it can tell a group that should not be split.
func silhouette(m distances, assign []int32, k int) float64 {
	sizes := make([]int, k)
	for _, a := range assign {
		sizes[a]++
	}
	sum := make([]float64, k)
	var total float64
	for i := range m.n {
		clear(sum)
		row := m.d[i*m.n : (i+1)*m.n]
		for j, d := range row {
			sum[assign[j]] += float64(d)
		}
		own := assign[i]
		if sizes[own] < 2 {
			continue
		}
		a := sum[own] / float64(sizes[own]-1)
		b := math.Inf(1)
		for c := range k {
			if int32(c) != own && sizes[c] > 0 {
				b = min(b, sum[c]/float64(sizes[c]))
			}
		}
		if mx := max(a, b); mx > 0 && !math.IsInf(b, 1) {
			total += (b - a) / mx
		}
	}
	return total / float64(m.n)
}
