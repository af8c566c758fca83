package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/downshift-dev/downshift/internal/store"
)

// metrics are the gateway's Prometheus series. Labels stay low-cardinality: models and
// backends come from configuration, never from clients (an unknown model is "unknown").
type metrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	ttft           *prometheus.HistogramVec
	tokens         *prometheus.CounterVec
	cost           *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	fallbacks      *prometheus.CounterVec
	authFailures   *prometheus.CounterVec

	// Shifting. Their workload label holds only workloads with a policy.
	escalations   *prometheus.CounterVec
	guardFailures *prometheus.CounterVec
	seconds       *prometheus.CounterVec
	shiftSkipped  *prometheus.CounterVec
	referenceCost prometheus.Counter
	secondCost    *prometheus.CounterVec
}

// latencyBuckets spans a cached answer (ms) to a long agent turn (minutes).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 40, 80, 160}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_requests_total",
			Help: "Chat-completion requests answered, by served model, route, stream and HTTP status code.",
		}, []string{"model", "route", "stream", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "downshift_request_duration_seconds",
			Help:    "Time from receiving a chat-completion request to its last byte, by served model and stream.",
			Buckets: latencyBuckets,
		}, []string{"model", "stream"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "downshift_time_to_first_token_seconds",
			Help:    "Time from receiving a request to the first token sent to the client, by served model and stream.",
			Buckets: latencyBuckets,
		}, []string{"model", "stream"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_tokens_total",
			Help: "Tokens processed, by served model and kind (prompt, completion, cached).",
		}, []string{"model", "kind"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_cost_usd_total",
			Help: "Cost of answered calls in US dollars at configured prices, by served model.",
		}, []string{"model"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_upstream_errors_total",
			Help: "Failed attempts to reach a backend, by backend and kind (connect, timeout, status code, stream).",
		}, []string{"backend", "kind"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_fallbacks_total",
			Help: "Requests moved to a fallback model after a retryable failure, by original and fallback model.",
		}, []string{"from", "to"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_auth_failures_total",
			Help: "Requests refused before they became calls, by reason (missing_key, invalid_key, rate_limited). They are not recorded.",
		}, []string{"reason"}),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_escalations_total",
			Help: "Calls a candidate was to answer that the reference answered instead, by workload and reason (the first failed guard check, or unanswered).",
		}, []string{"workload", "reason"}),
		guardFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_guard_failures_unescalated_total",
			Help: "Free-text candidate answers streamed to the client that the guards failed once whole (too late to escalate), by workload.",
		}, []string{"workload"}),
		seconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_second_answers_total",
			Help: "Second answers (shadow: the candidate's; verify: the reference's), by kind and outcome (compared, failed, skipped).",
		}, []string{"kind", "outcome"}),
		shiftSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_shift_skipped_total",
			Help: "Calls whose policy could not be applied (the reference answered), by workload and reason.",
		}, []string{"workload", "reason"}),
		referenceCost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "downshift_reference_cost_usd_total",
			Help: "What answered calls would have cost had the reference answered them all, in US dollars. Savings = this - downshift_cost_usd_total - downshift_second_cost_usd_total.",
		}),
		secondCost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "downshift_second_cost_usd_total",
			Help: "Cost of second answers (shadow, verification, and candidate answers refused by the guards) in US dollars, by model.",
		}, []string{"model"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.ttft, m.tokens, m.cost, m.upstreamErrors, m.fallbacks, m.authFailures,
		m.escalations, m.guardFailures, m.seconds, m.shiftSkipped, m.referenceCost, m.secondCost} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts a finished call.
func (m *metrics) observe(c *store.Call) {
	model := c.ServedModel
	if model == "" {
		model = "unknown"
	}
	stream := strconv.FormatBool(c.Stream)
	m.requests.WithLabelValues(model, string(c.Route), stream, strconv.Itoa(c.Status)).Inc()
	if c.ServedModel == "" {
		return
	}
	m.latency.WithLabelValues(model, stream).Observe(c.Latency.Seconds())
	if c.Status < 400 {
		if c.TTFT > 0 {
			m.ttft.WithLabelValues(model, stream).Observe(c.TTFT.Seconds())
		}
		m.tokens.WithLabelValues(model, "prompt").Add(float64(c.PromptTokens))
		m.tokens.WithLabelValues(model, "completion").Add(float64(c.CompletionTokens))
		m.tokens.WithLabelValues(model, "cached").Add(float64(c.CachedTokens))
		m.cost.WithLabelValues(model).Add(c.CostUSD)
	}
}

// settle counts what a call's record says once its second answer is in: the
// reference's cost of answered calls, and what second answers cost.
func (m *metrics) settle(c *store.Call) {
	if c.Status < 400 {
		m.referenceCost.Add(c.ReferenceCostUSD)
	}
	if s := c.Second; s != nil && s.CostUSD > 0 {
		m.secondCost.WithLabelValues(s.Model).Add(s.CostUSD)
	}
}
