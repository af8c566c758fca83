package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// Unassigned is the workload id of calls that neither discovery nor the client named.
const Unassigned = "unassigned"

// MinSpan is the shortest span of traffic the monthly figures extrapolate from. Calls
// seen over a shorter time count as one day's traffic: scaling a 20-second demo up to
// a month would multiply its noise by 130,000.
const MinSpan = 24 * time.Hour

// month is what "monthly" means here: 30 days.
const month = 30 * 24 * time.Hour

// ReadyThreshold is the readiness from which a workload counts as ready to try on a
// small model; Report.ReadyMonthlySavingsUSD adds up the savings of those.
const ReadyThreshold = 60

// Info is what discovery says of a workload beyond which calls are in it.
type Info struct {
	ID             string
	Label          string   // empty: the id
	Terms          []string // the words that mark its prompts
	Representative string   // the id of a typical call
}

// Input is what Build reads.
type Input struct {
	Calls []Call
	// Workloads labels the workloads; a workload with calls and no Info is labelled
	// with its id, and an Info without calls is left out of the report.
	Workloads []Info
	// Assign maps call id to workload id, as discovery returns it. A call it does not
	// name keeps its WorkloadID, else its client tag (Workload), else Unassigned.
	Assign map[string]string
	// Candidates are the small models the savings are priced at; the cheapest for each
	// workload's own mix of tokens is chosen. None: savings say "no candidate configured".
	Candidates []Candidate
	// From and To bound the traffic the monthly figures extrapolate from. Zero: the
	// first and last call's StartedAt. The span is at least MinSpan.
	From, To time.Time
	// Now stamps the report (Report.GeneratedAt); callers pass their clock's time.
	Now time.Time
}

// Report is the discovery report: totals and one entry per workload, the workloads
// ordered by cost, highest first. Its JSON field names are a stable interface.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	// SpanDays is the span the monthly figures extrapolate from, in days (at least
	// MinSpan), and MonthFactor = 30 / SpanDays the factor they scale by.
	SpanDays    float64 `json:"span_days"`
	MonthFactor float64 `json:"month_factor"`

	Calls            int     `json:"calls"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	MonthlyCostUSD   float64 `json:"monthly_cost_usd"`
	// ReadyMonthlySavingsUSD adds up the positive monthly savings of the workloads whose
	// readiness is at least ReadyThreshold.
	ReadyMonthlySavingsUSD float64 `json:"ready_monthly_savings_usd"`
	ReadyThreshold         int     `json:"ready_threshold"`

	Candidates []Candidate `json:"candidates"`
	Workloads  []Workload  `json:"workloads"`
}

// Workload is the report on one workload.
type Workload struct {
	ID             string   `json:"id"`
	Label          string   `json:"label"`
	Terms          []string `json:"terms"`
	Representative string   `json:"representative,omitempty"`

	Calls     int     `json:"calls"`
	CallShare float64 `json:"call_share"` // of all calls in the report, 0-1
	Errors    int     `json:"errors"`     // calls with status >= 400
	ErrorRate float64 `json:"error_rate"`

	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	CachedTokens     int64 `json:"cached_tokens"`
	// MeanCompletionTokens is the answer length: completion tokens per answered call.
	MeanCompletionTokens float64 `json:"mean_completion_tokens"`

	CostUSD   float64 `json:"cost_usd"`   // as recorded, at the served models' prices
	CostShare float64 `json:"cost_share"` // of all recorded cost, 0-1

	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`

	Outputs OutputMix `json:"outputs"`
	// Tools are the distinct tools the answers called, most called first.
	Tools []ToolUse `json:"tools"`
	// MaxToolsOffered is the most tools any of its requests offered.
	MaxToolsOffered int `json:"max_tools_offered"`

	// PromptDiversity is the mean pairwise Jaccard distance between the word sets of
	// DiversitySample prompts (see Diversity): 0 all alike, 1 no word in common.
	PromptDiversity float64 `json:"prompt_diversity"`
	DiversitySample int     `json:"diversity_sample"`

	Models []ModelUse `json:"models"` // served models, most calls first

	Readiness int      `json:"readiness"` // 0-100, see Readiness
	Reasons   []Reason `json:"reasons"`

	Savings Savings `json:"savings"`
}

// OutputMix is the share of answered calls by kind of answer; the three add up to 1
// when Answered > 0.
type OutputMix struct {
	Answered int     `json:"answered"` // calls whose answer was looked at
	ToolCall float64 `json:"tool_call"`
	JSON     float64 `json:"json"`
	Text     float64 `json:"text"`
}

// Structured is the share of tool calls and JSON answers.
func (m OutputMix) Structured() float64 { return m.ToolCall + m.JSON }

// ToolUse counts the answers that called a tool (a call calling it twice counts once).
type ToolUse struct {
	Name  string `json:"name"`
	Calls int    `json:"calls"`
}

// ModelUse counts the calls a model served.
type ModelUse struct {
	Model string `json:"model"`
	Calls int    `json:"calls"`
}

// Savings is what the cheapest configured candidate would save on a workload per month:
// the recorded cost per day times 30, less the same tokens at the candidate's prices.
// It is negative when the candidate costs more than what served the calls.
type Savings struct {
	Candidate           string  `json:"candidate,omitempty"`
	CurrentMonthlyUSD   float64 `json:"current_monthly_usd"`
	CandidateMonthlyUSD float64 `json:"candidate_monthly_usd"`
	MonthlyUSD          float64 `json:"monthly_usd"`
	// Note says why the figures say less than they seem to ("no candidate configured").
	Note string `json:"note,omitempty"`
}

// Notes of Savings.
const (
	NoteNoCandidate  = "no candidate configured"
	NoteNoCost       = "no recorded cost: the models that served it have no price"
	NoteFreeCandiate = "the candidate has no price configured: priced at zero"
)

// DiversitySample is how many prompts of a workload Diversity compares, pairwise.
const DiversitySample = 100

// Build computes the report. It reads in and does not keep it.
func Build(in Input) (*Report, error) {
	for _, c := range in.Candidates {
		if err := c.validate(); err != nil {
			return nil, err
		}
	}
	if !in.From.IsZero() && !in.To.IsZero() && in.To.Before(in.From) {
		return nil, fmt.Errorf("report: window ends (%s) before it starts (%s)", in.To, in.From)
	}
	r := &Report{GeneratedAt: in.Now.UTC(), ReadyThreshold: ReadyThreshold,
		Candidates: slices.Clone(in.Candidates), Workloads: []Workload{}}
	if r.Candidates == nil {
		r.Candidates = []Candidate{}
	}

	groups, order := group(in)
	from, to := in.From, in.To
	for i := range in.Calls {
		c := &in.Calls[i]
		r.Calls++
		r.PromptTokens += int64(c.PromptTokens)
		r.CompletionTokens += int64(c.CompletionTokens)
		r.CostUSD += c.CostUSD
		if in.From.IsZero() && (from.IsZero() || c.StartedAt.Before(from)) {
			from = c.StartedAt
		}
		if in.To.IsZero() && c.StartedAt.After(to) {
			to = c.StartedAt
		}
	}
	r.From, r.To = from.UTC(), to.UTC()
	span := max(to.Sub(from), MinSpan)
	r.SpanDays = span.Hours() / 24
	r.MonthFactor = float64(month) / float64(span)
	r.MonthlyCostUSD = r.CostUSD * r.MonthFactor

	infos := make(map[string]Info, len(in.Workloads))
	for _, w := range in.Workloads {
		infos[w.ID] = w
	}
	for _, id := range order {
		w := measure(id, infos[id], groups[id], in.Calls, r)
		w.Savings = savings(w, r.MonthFactor, in.Candidates)
		w.round()
		w.Readiness, w.Reasons = Readiness(&w)
		if w.Readiness >= ReadyThreshold && w.Savings.MonthlyUSD > 0 {
			r.ReadyMonthlySavingsUSD += w.Savings.MonthlyUSD
		}
		r.Workloads = append(r.Workloads, w)
	}
	r.round()
	slices.SortStableFunc(r.Workloads, func(a, b Workload) int {
		return cmp.Or(cmp.Compare(b.CostUSD, a.CostUSD), cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.ID, b.ID))
	})
	return r, nil
}

// group returns the indexes of in.Calls per workload id, and the ids in order of
// first appearance.
func group(in Input) (map[string][]int, []string) {
	groups := make(map[string][]int)
	var order []string
	for i := range in.Calls {
		c := &in.Calls[i]
		id, ok := in.Assign[c.ID]
		if !ok {
			id = cmp.Or(c.WorkloadID, c.Workload, Unassigned)
		}
		if id == "" {
			id = Unassigned
		}
		if _, seen := groups[id]; !seen {
			order = append(order, id)
		}
		groups[id] = append(groups[id], i)
	}
	return groups, order
}

// measure computes one workload's figures from its calls (indexes into calls).
func measure(id string, info Info, idx []int, calls []Call, r *Report) Workload {
	w := Workload{ID: id, Label: cmp.Or(info.Label, id), Terms: slices.Clone(info.Terms),
		Representative: info.Representative, Calls: len(idx)}
	if w.Terms == nil {
		w.Terms = []string{}
	}
	latencies := make([]time.Duration, 0, len(idx))
	tools := map[string]int{}
	models := map[string]int{}
	var kinds [3]int // tool call, JSON, text
	var answeredTokens int64
	var once []string
	for _, i := range idx {
		c := &calls[i]
		w.PromptTokens += int64(c.PromptTokens)
		w.CompletionTokens += int64(c.CompletionTokens)
		w.CachedTokens += int64(c.CachedTokens)
		w.CostUSD += c.CostUSD
		latencies = append(latencies, c.Latency)
		w.MaxToolsOffered = max(w.MaxToolsOffered, c.ToolsOffered)
		models[cmp.Or(c.ServedModel, c.RequestedModel)]++
		if c.Status >= 400 || c.Output == OutputError {
			w.Errors++
			continue
		}
		answeredTokens += int64(c.CompletionTokens)
		switch c.Output {
		case OutputToolCall:
			kinds[0]++
		case OutputJSON:
			kinds[1]++
		case OutputText:
			kinds[2]++
		}
		once = once[:0]
		for _, t := range c.Tools {
			if !slices.Contains(once, t) {
				once = append(once, t)
				tools[t]++
			}
		}
	}
	w.CallShare = ratio(float64(w.Calls), float64(r.Calls))
	w.CostShare = ratio(w.CostUSD, r.CostUSD)
	w.ErrorRate = ratio(float64(w.Errors), float64(w.Calls))
	w.MeanCompletionTokens = ratio(float64(answeredTokens), float64(w.Calls-w.Errors))
	w.LatencyP50MS = ms(percentile(latencies, 50))
	w.LatencyP95MS = ms(percentile(latencies, 95))

	answered := kinds[0] + kinds[1] + kinds[2]
	w.Outputs = OutputMix{Answered: answered}
	if answered > 0 {
		n := float64(answered)
		w.Outputs.ToolCall, w.Outputs.JSON, w.Outputs.Text = float64(kinds[0])/n, float64(kinds[1])/n, float64(kinds[2])/n
	}
	w.Tools = sortedCounts(tools, func(name string, n int) ToolUse { return ToolUse{name, n} },
		func(t ToolUse) (string, int) { return t.Name, t.Calls })
	w.Models = sortedCounts(models, func(name string, n int) ModelUse { return ModelUse{name, n} },
		func(m ModelUse) (string, int) { return m.Model, m.Calls })

	prompts := samplePrompts(idx, calls, DiversitySample)
	w.PromptDiversity, w.DiversitySample = Diversity(prompts), len(prompts)
	return w
}

// sortedCounts turns name -> count into a slice, most counted first, then by name.
func sortedCounts[T any](m map[string]int, mk func(string, int) T, get func(T) (string, int)) []T {
	out := make([]T, 0, len(m))
	for k, n := range m {
		out = append(out, mk(k, n))
	}
	slices.SortFunc(out, func(a, b T) int {
		an, ac := get(a)
		bn, bc := get(b)
		return cmp.Or(cmp.Compare(bc, ac), cmp.Compare(an, bn))
	})
	return out
}

// samplePrompts returns up to n non-empty prompts, spread evenly over the workload's
// calls (in input order, usually time order), so the sample is deterministic and spans
// the whole window.
func samplePrompts(idx []int, calls []Call, n int) []string {
	var with []int
	for _, i := range idx {
		if calls[i].Prompt != "" {
			with = append(with, i)
		}
	}
	if len(with) <= n {
		out := make([]string, len(with))
		for k, i := range with {
			out[k] = calls[i].Prompt
		}
		return out
	}
	out := make([]string, n)
	for k := range n {
		out[k] = calls[with[k*len(with)/n]].Prompt
	}
	return out
}

// savings prices a workload's tokens at the cheapest candidate for them.
func savings(w Workload, factor float64, candidates []Candidate) Savings {
	s := Savings{CurrentMonthlyUSD: w.CostUSD * factor}
	if len(candidates) == 0 {
		s.Note = NoteNoCandidate
		return s
	}
	best, bestCost := -1, math.Inf(1)
	for i, c := range candidates {
		cost := c.Cost(w.PromptTokens, w.CompletionTokens, w.CachedTokens)
		if cost < bestCost || (cost == bestCost && c.Name < candidates[best].Name) {
			best, bestCost = i, cost
		}
	}
	c := candidates[best]
	s.Candidate = c.Name
	s.CandidateMonthlyUSD = bestCost * factor
	s.MonthlyUSD = s.CurrentMonthlyUSD - s.CandidateMonthlyUSD
	switch {
	case w.CostUSD == 0:
		s.Note = NoteNoCost
	case c.free():
		s.Note = NoteFreeCandiate
	}
	return s
}

// percentile returns the p-th percentile (nearest rank) of ds; it sorts ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(float64(len(ds))*p/100)) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// Figures are rounded once computed, to digits that mean something, so that JSON
// stays readable and the same on every platform (fused multiply-adds may differ in the
// last bit). Readiness is scored on the rounded figures, as a reader sees them.
const (
	shareDigits = 4 // 0.1234 = 12.34%
	moneyDigits = 6 // a millionth of a dollar
	otherDigits = 3
)

func roundTo(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

func (w *Workload) round() {
	for _, f := range []*float64{&w.CallShare, &w.ErrorRate, &w.CostShare, &w.Outputs.ToolCall,
		&w.Outputs.JSON, &w.Outputs.Text, &w.PromptDiversity} {
		*f = roundTo(*f, shareDigits)
	}
	for _, f := range []*float64{&w.CostUSD, &w.Savings.CurrentMonthlyUSD, &w.Savings.CandidateMonthlyUSD, &w.Savings.MonthlyUSD} {
		*f = roundTo(*f, moneyDigits)
	}
	for _, f := range []*float64{&w.MeanCompletionTokens, &w.LatencyP50MS, &w.LatencyP95MS} {
		*f = roundTo(*f, otherDigits)
	}
}

func (r *Report) round() {
	for _, f := range []*float64{&r.CostUSD, &r.MonthlyCostUSD, &r.ReadyMonthlySavingsUSD} {
		*f = roundTo(*f, moneyDigits)
	}
	r.SpanDays, r.MonthFactor = roundTo(r.SpanDays, otherDigits+1), roundTo(r.MonthFactor, otherDigits+1)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// StoreWorkloads returns the report's workloads as the store keeps them: Stats holds
// each one's report entry as JSON. Model is left for the caller (the assigner's), and
// UpdatedAt is set by the store.
func (r *Report) StoreWorkloads() ([]store.Workload, error) {
	out := make([]store.Workload, 0, len(r.Workloads))
	for i := range r.Workloads {
		w := &r.Workloads[i]
		stats, err := json.Marshal(w)
		if err != nil {
			return nil, fmt.Errorf("report: workload %s: %w", w.ID, err)
		}
		tools := make([]string, len(w.Tools))
		for k, t := range w.Tools {
			tools[k] = t.Name
		}
		slices.Sort(tools)
		out = append(out, store.Workload{
			ID: w.ID, Label: w.Label, Terms: slices.Clone(w.Terms), Tools: tools,
			OutputTypes: map[string]float64{
				string(OutputToolCall): w.Outputs.ToolCall, string(OutputJSON): w.Outputs.JSON, string(OutputText): w.Outputs.Text,
			},
			Representative: w.Representative, Calls: w.Calls, Stats: stats, Readiness: w.Readiness,
		})
	}
	return out, nil
}
