package discover

import (
	"math"
	"testing"
)

func TestCompareMatchesHandComputedValues(t *testing.T) {
	tests := []struct {
		name                        string
		labels, clusters            []string
		ari, homog, compl, vm, pure float64
	}{
		{
			// Contingency (label×cluster): a:{x:2,y:1}, b:{y:1,z:2}. Pairs within cells 2,
			// within labels 3+3=6, within clusters 1+1+1=3, all pairs 15: expected
			// 6·3/15=1.2, max (6+3)/2=4.5, ARI (2-1.2)/(4.5-1.2). H(C)=ln2 and
			// H(C|K)=(1/3)ln2 give homogeneity 2/3. scikit-learn documents the same
			// V-measure, 0.5158, for these labels.
			name:     "textbook",
			labels:   []string{"a", "a", "a", "b", "b", "b"},
			clusters: []string{"x", "x", "y", "y", "z", "z"},
			ari:      0.8 / 3.3, homog: 2.0 / 3, compl: 0.42061983571430483, vm: 0.5158037429793887, pure: 5.0 / 6,
		},
		{
			// Values from the same formulas computed independently (Python, by hand-coded
			// contingency tables); purity: x holds a,a,b, y b,c, z c,c,d → 5 of 8.
			name:     "uneven",
			labels:   []string{"a", "a", "b", "b", "c", "c", "c", "d"},
			clusters: []string{"x", "x", "x", "y", "y", "z", "z", "z"},
			ari:      0.15789473684210525, homog: 0.5073978624039234, compl: 0.6193113011326309, vm: 0.5577965290899926, pure: 5.0 / 8,
		},
		{
			name:     "identical up to names",
			labels:   []string{"a", "a", "b", "c", "c"},
			clusters: []string{"3", "3", "1", "2", "2"},
			ari:      1, homog: 1, compl: 1, vm: 1, pure: 1,
		},
		{
			// One cluster: complete but not homogeneous; ARI 0.
			name:     "one cluster",
			labels:   []string{"a", "a", "b", "b"},
			clusters: []string{"x", "x", "x", "x"},
			ari:      0, homog: 0, compl: 1, vm: 0, pure: 0.5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Compare(tt.labels, tt.clusters)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				what      string
				got, want float64
			}{{"ARI", got.ARI, tt.ari}, {"homogeneity", got.Homogeneity, tt.homog}, {"completeness", got.Completeness, tt.compl}, {"V-measure", got.VMeasure, tt.vm}, {"purity", got.Purity, tt.pure}} {
				if math.Abs(c.got-c.want) > 1e-9 {
					t.Errorf("%s = %.6f, want %.6f", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestCompareRejectsMismatchedLengths(t *testing.T) {
	if _, err := Compare([]string{"a"}, []string{"x", "y"}); err == nil {
		t.Error("no error for slices of different lengths")
	}
	if _, err := Compare(nil, nil); err == nil {
		t.Error("no error for nothing to compare")
	}
}
