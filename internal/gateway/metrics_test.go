package gateway

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// counterValue sums every series of the named counter in the gateway's registry.
func counterValue(t *testing.T, g *Gateway, name string) float64 {
	t.Helper()
	mfs, err := g.gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += metricValue(m)
		}
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
