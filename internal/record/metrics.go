package record

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the recorder's Prometheus collectors. They exist whether or not a
// Registerer was given, so the recorder never checks.
type metrics struct {
	queueDepth    prometheus.GaugeFunc
	written       prometheus.Counter
	dropped       *prometheus.CounterVec
	batchDuration prometheus.Histogram
}

func newMetrics(depth func() float64) *metrics {
	m := &metrics{
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "downshift_record_queue_depth",
			Help: "Calls accepted by the recorder and not yet handed to the store.",
		}, depth),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "downshift_records_written_total",
			Help: "Calls written to the store.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_records_dropped_total",
			Help: "Calls not recorded, by reason: queue_full, closed, write_failed, prepare_failed.",
		}, []string{"reason"}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "downshift_record_batch_duration_seconds",
			Help:    "Time of one InsertCalls of a batch, retries counted separately.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. ~4s
		}),
	}
	// Every reason is exported from the start, so a rate() over it has a zero to begin from.
	for _, r := range reasons {
		m.dropped.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.queueDepth, m.written, m.dropped, m.batchDuration} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
