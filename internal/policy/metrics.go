package policy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/store"
)

// monitorMetrics are the Monitor's Prometheus series. Their workload label only ever
// holds workloads that have a policy (results of others are dropped before any count),
// so it stays as small as the set of shifted workloads.
type monitorMetrics struct {
	steps        *prometheus.CounterVec
	stepFailures *prometheus.CounterVec
	flags        *prometheus.CounterVec
	stale        prometheus.Counter
	windows      *windowCollector
}

func newMonitorMetrics(m *Monitor) *monitorMetrics {
	return &monitorMetrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_policy_steps_total",
			Help: "Automatic policy steps saved, by workload, kind (rollback, promotion) and the modes stepped from and to.",
		}, []string{"workload", "kind", "from", "to"}),
		stepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_policy_step_failures_total",
			Help: "Automatic policy steps decided but not saved, by workload and reason (conflict: a newer version stood; error; queue_full).",
		}, []string{"workload", "reason"}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_policy_shadow_flags_total",
			Help: "Times a shadow candidate fell below its policy's thresholds (shadow mode has no step back).",
		}, []string{"workload"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "downshift_policy_stale_results_total",
			Help: "Agreement and guard results ignored because they were decided under a policy version that is no longer current.",
		}),
		windows: newWindowCollector(m),
	}
}

func (mm *monitorMetrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{mm.steps, mm.stepFailures, mm.flags, mm.stale, mm.windows} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

// windowCollector reports the rolling windows as gauges when scraped, so that
// observing a result never touches a metric.
type windowCollector struct {
	m                          *Monitor
	agreement, guardPass, size *prometheus.Desc
}

func newWindowCollector(m *Monitor) *windowCollector {
	return &windowCollector{
		m: m,
		agreement: prometheus.NewDesc("downshift_policy_agreement",
			"Mean agreement of the candidate with the reference over the workload's rolling window, under its current policy version.",
			[]string{"workload"}, nil),
		guardPass: prometheus.NewDesc("downshift_policy_guard_pass_ratio",
			"Share of the candidate's answers passing their guards over the workload's rolling window, under its current policy version.",
			[]string{"workload"}, nil),
		size: prometheus.NewDesc("downshift_policy_window_results",
			"Results in the workload's rolling window, by kind (agreement, guard).",
			[]string{"workload", "kind"}, nil),
	}
}

func (c *windowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.agreement
	ch <- c.guardPass
	ch <- c.size
}

// Collect reports the windows of the workloads whose current policy they belong to: a
// workload whose policy is now observe, or whose policy moved on to a version without
// results yet, has no gauges (its old window would read as current).
func (c *windowCollector) Collect(ch chan<- prometheus.Metric) {
	rules := c.m.policies.Snapshot().rules
	c.m.watches.Range(func(_, v any) bool {
		s := v.(*watch).status()
		if r := rules[s.Workload]; r == nil || r.p.Mode == store.ModeObserve || r.p.Version != s.Version {
			return true
		}
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.AgreementResults), s.Workload, "agreement")
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.GuardResults), s.Workload, "guard")
		if s.AgreementResults > 0 {
			ch <- prometheus.MustNewConstMetric(c.agreement, prometheus.GaugeValue, s.Agreement, s.Workload)
		}
		if s.GuardResults > 0 {
			ch <- prometheus.MustNewConstMetric(c.guardPass, prometheus.GaugeValue, s.GuardPass, s.Workload)
		}
		return true
	})
}
