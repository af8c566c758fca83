package discover

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// variations returns n calls made from the real tau-bench calls by varying what
// changes between real calls of one kind: every digit of the request (ids such as
// 4WQ150 and user_3668, dates, prices, flight numbers) is rotated by the variation
// number, and each variation gets ids of its own. Responses are kept.
func variations(t testing.TB, n int) []Call {
	t.Helper()
	base, _ := tauCalls(t)
	out := make([]Call, 0, n)
	for v := 0; len(out) < n; v++ {
		for _, c := range base {
			if len(out) == n {
				break
			}
			req := make([]byte, len(c.Request))
			for i, b := range c.Request {
				if b >= '0' && b <= '9' {
					b = '0' + (b-'0'+byte(v))%10
				}
				req[i] = b
			}
			c.ID = fmt.Sprintf("%s/v%d", c.ID, v)
			c.Request = req
			out = append(out, c)
		}
	}
	return out
}

// BenchmarkDiscover100k analyses 100,000 calls generated from the real tau-bench calls
// (see variations), with actions, as `downshift analyze` would.
func BenchmarkDiscover100k(b *testing.B) {
	calls := variations(b, 100_000)
	_, base := tauCalls(b)
	labels := make([]string, len(calls))
	for i := range calls {
		labels[i] = base[i%len(base)]
	}
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		res, err := Discover(context.Background(), calls, Options{Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/analysis")
		b.ReportMetric(float64(len(res.Workloads)), "workloads")
		b.StopTimer()
		ag, err := Compare(labels, clustersOf(res, calls))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(ag.ARI, "ARI")
		b.StartTimer()
	}
}
