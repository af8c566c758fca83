package discover

import (
	"fmt"
	"math"
)

// Agreement measures how well a clustering matches reference labels.
type Agreement struct {
	// ARI is the adjusted Rand index: 1 for identical partitions, about 0 for a random
	// one (it can go below 0).
	ARI float64
	// Homogeneity is 1 when every cluster holds one label only; Completeness is 1 when
	// every label lies in one cluster; VMeasure is their harmonic mean.
	Homogeneity, Completeness, VMeasure float64
	// Purity is the share of items whose cluster's most common label is their own.
	Purity float64
	// Clusters and Classes count the distinct clusters and labels.
	Clusters, Classes int
}

// Compare measures clusters against labels, item by item (the slices are parallel).
func Compare(labels, clusters []string) (Agreement, error) {
	if len(labels) != len(clusters) {
		return Agreement{}, fmt.Errorf("discover: %d labels but %d clusters", len(labels), len(clusters))
	}
	n := len(labels)
	if n == 0 {
		return Agreement{}, fmt.Errorf("discover: nothing to compare")
	}
	li, ci := index(labels), index(clusters)
	nl, nc := 0, 0
	for _, x := range li {
		nl = max(nl, x+1)
	}
	for _, x := range ci {
		nc = max(nc, x+1)
	}
	table := make([]int, nl*nc)
	a := make([]int, nl) // label sizes
	b := make([]int, nc) // cluster sizes
	for i := range n {
		table[li[i]*nc+ci[i]]++
		a[li[i]]++
		b[ci[i]]++
	}
	ag := Agreement{Clusters: nc, Classes: nl}

	// ARI (Hubert and Arabie): (index - expected) / (max - expected) over pair counts.
	var sumCells, sumA, sumB float64
	for _, x := range table {
		sumCells += choose2(x)
	}
	for _, x := range a {
		sumA += choose2(x)
	}
	for _, x := range b {
		sumB += choose2(x)
	}
	expected := sumA * sumB / choose2(n)
	maxIndex := (sumA + sumB) / 2
	if maxIndex == expected {
		ag.ARI = 1 // both partitions trivial (one cluster, or all singletons) and equal
		if sumCells != expected {
			ag.ARI = 0
		}
	} else {
		ag.ARI = (sumCells - expected) / (maxIndex - expected)
	}

	// V-measure (Rosenberg and Hirschberg) from the entropies.
	fn := float64(n)
	var hC, hK, hCK, hKC float64 // H(C), H(K), H(C|K), H(K|C)
	for _, x := range a {
		hC -= plogp(float64(x) / fn)
	}
	for _, x := range b {
		hK -= plogp(float64(x) / fn)
	}
	for l := range nl {
		for c := range nc {
			x := float64(table[l*nc+c])
			if x == 0 {
				continue
			}
			hCK -= x / fn * math.Log(x/float64(b[c]))
			hKC -= x / fn * math.Log(x/float64(a[l]))
		}
	}
	ag.Homogeneity, ag.Completeness = 1, 1
	if hC > 0 {
		ag.Homogeneity = 1 - hCK/hC
	}
	if hK > 0 {
		ag.Completeness = 1 - hKC/hK
	}
	if s := ag.Homogeneity + ag.Completeness; s > 0 {
		ag.VMeasure = 2 * ag.Homogeneity * ag.Completeness / s
	}

	var pure int
	for c := range nc {
		best := 0
		for l := range nl {
			best = max(best, table[l*nc+c])
		}
		pure += best
	}
	ag.Purity = float64(pure) / fn
	return ag, nil
}

func choose2(n int) float64 { return float64(n) * float64(n-1) / 2 }

func plogp(p float64) float64 {
	if p == 0 {
		return 0
	}
	return p * math.Log(p)
}

// index numbers the distinct values of xs in order of first appearance.
func index(xs []string) []int {
	ids := map[string]int{}
	out := make([]int, len(xs))
	for i, x := range xs {
		id, ok := ids[x]
		if !ok {
			id = len(ids)
			ids[x] = id
		}
		out[i] = id
	}
	return out
}
