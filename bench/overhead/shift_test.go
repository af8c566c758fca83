package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestSignTest(t *testing.T) {
	for _, tc := range []struct {
		above, below int
		want         float64
	}{
		{0, 0, 1},
		{1, 1, 1},
		{5, 5, 1},
		{10, 0, 2.0 / 1024},
		{0, 10, 2.0 / 1024},
		{9, 1, 2 * 11.0 / 1024},
		{15, 0, 2.0 / 32768},
	} {
		t.Run(fmt.Sprintf("%d-%d", tc.above, tc.below), func(t *testing.T) {
			if got := signTest(tc.above, tc.below); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("signTest(%d, %d) = %g, want %g", tc.above, tc.below, got, tc.want)
			}
		})
	}
}

func TestCompareBlocks(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	of := &dist{P50: 3000, P99: 9000}
	against := &dist{P50: 1000, P99: 5000}
	c := compare("x", "total", of, against, ms(2, 3, 1, 5), ms(1, 1, 1, 1))
	want := comparison{Name: "x", Metric: "total", P50: 2000, P99: 4000,
		PairedP50: 1500, PairedQ1: 0, PairedQ3: 2000, Above: 3, Blocks: 4, SignP: 0.25}
	if math.Abs(c.SignP-want.SignP) < 1e-12 {
		c.SignP = want.SignP
	}
	if c != want {
		t.Errorf("compare = %+v\nwant %+v", c, want)
	}
}

func TestMetricValuesKeepsSeriesAndSums(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP downshift_second_answers_total x
# TYPE downshift_second_answers_total counter
downshift_second_answers_total{kind="shadow",outcome="compared"} 440
downshift_second_answers_total{kind="verify",outcome="compared"} 1
downshift_records_written_total 2200
other_total{a="b"} 7
`)
	}))
	defer srv.Close()
	ctx := context.Background()
	vals, err := metricValues(ctx, srv.URL, "downshift_second_answers_total", "downshift_records_written_total")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`downshift_second_answers_total{kind="shadow",outcome="compared"}`: 440,
		`downshift_second_answers_total{kind="verify",outcome="compared"}`: 1,
		`downshift_records_written_total`:                                  2200,
	}
	if fmt.Sprint(vals) != fmt.Sprint(want) {
		t.Errorf("metricValues = %v, want %v", vals, want)
	}
	sums, err := metricSums(ctx, srv.URL, "downshift_second_answers_total")
	if err != nil {
		t.Fatal(err)
	}
	if sums["downshift_second_answers_total"] != 441 || len(sums) != 1 {
		t.Errorf("metricSums = %v, want downshift_second_answers_total 441", sums)
	}
}
