package eval

import "time"

// Variants of a candidate: how the recorded request is put to it.
const (
	// VariantZeroShot sends the recorded request as it was, with only the model changed.
	VariantZeroShot = "zero-shot"
	// VariantInContext adds k worked examples from the train split to the system prompt.
	VariantInContext = "in-context"
)

// Reference is what the reference model did on one test call, as recorded: the
// baseline each candidate is measured against.
type Reference struct {
	CallID  string
	Model   string // the model that answered (the call's served model)
	Stratum string // the reference's action (see store.EvalMember.Stratum)
	Latency time.Duration
	TTFT    time.Duration
	CostUSD float64
}

// Interval is a two-sided 95% confidence interval.
type Interval struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// Row is one candidate in one variant on the leaderboard.
type Row struct {
	Candidate string `json:"candidate"`
	Variant   string `json:"variant"`

	Calls    int `json:"calls"`    // test calls scored (answered or failed for good)
	Answered int `json:"answered"` // calls the candidate answered (status 200)
	Errors   int `json:"errors"`   // calls that failed after retries; they score 0 and fail
	// Simulated counts answers marked as invented by a simulator (header
	// X-Downshift-Simulated), which stand in for the model's own. The runner passes
	// the mark on as "simulated": true in the result's Score (see Build).
	Simulated int `json:"simulated"`

	// Quality is the mean agreement with the reference over every call (failed calls
	// count 0), with its 95% interval (see QualityInterval: a seeded bootstrap widened to the Wilson bound).
	Quality   float64  `json:"quality"`
	QualityCI Interval `json:"quality_ci"`
	// PassRate is the share of calls that pass (see package compare and the judge),
	// with its 95% Wilson interval.
	PassRate float64  `json:"pass_rate"`
	PassCI   Interval `json:"pass_ci"`
	// ByStratum is the quality per reference action, so a person can see which kind
	// of call a candidate gets wrong.
	ByStratum map[string]float64 `json:"by_stratum,omitempty"`

	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP95 time.Duration `json:"latency_p95_ns"`
	TTFTP50    time.Duration `json:"ttft_p50_ns"`

	// CostPer1K is the mean cost of a call times 1,000, in US dollars; Saving is
	// 1 - CostPer1K / the reference's, so 0.9 is a 90% saving.
	CostPer1K float64 `json:"cost_per_1k_usd"`
	Saving    float64 `json:"saving"`

	// Judge summarises the LLM judge's verdicts when one was asked: mean score (1-10)
	// and how many calls it judged (read from "judge": {"score": N} in the result's
	// Score; see Build).
	JudgeMean  float64 `json:"judge_mean,omitempty"`
	JudgeCalls int     `json:"judge_calls,omitempty"`

	// Note says why the row may not be recommended whatever its quality: errors on
	// more than 5% of calls, or a cost no lower than the reference's. Empty when
	// only its quality decides.
	Note string `json:"note,omitempty"`
	// MeasuredTPS is the candidate's throughput measured in the run (tokens per
	// second, prompt and completion, at the run's concurrency), set when its price is
	// per GPU-hour with no throughput configured: CostPer1K is derived from it.
	MeasuredTPS float64 `json:"measured_tps,omitempty"`
}

// ReferenceRow is the reference model's own figures on the test calls, as recorded.
type ReferenceRow struct {
	Model      string        `json:"model"`
	Calls      int           `json:"calls"`
	Quality    float64       `json:"quality"` // 1: the reference agrees with itself
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP95 time.Duration `json:"latency_p95_ns"`
	TTFTP50    time.Duration `json:"ttft_p50_ns"`
	CostPer1K  float64       `json:"cost_per_1k_usd"`
}

// Recommendation is what the leaderboard advises: the cheapest candidate (and
// variant) whose quality is good enough, or keeping the reference, and why.
type Recommendation struct {
	KeepReference bool   `json:"keep_reference"`
	Candidate     string `json:"candidate,omitempty"`
	Variant       string `json:"variant,omitempty"`
	Reason        string `json:"reason"`
}

// Leaderboard ranks a run's candidates on one workload.
type Leaderboard struct {
	RunID      string    `json:"run_id"`
	SetID      string    `json:"set_id"`
	WorkloadID string    `json:"workload_id"`
	Workload   string    `json:"workload"` // the workload's label
	At         time.Time `json:"at"`
	// Threshold is the share of the reference's quality a candidate must reach, its
	// interval taken into account (default 0.95).
	Threshold float64 `json:"threshold"`
	// Simulated is true when any answer scored was invented or degraded by downshift's
	// simulator rather than given by a real model.
	Simulated      bool           `json:"simulated"`
	Reference      ReferenceRow   `json:"reference"`
	Rows           []Row          `json:"rows"` // best first
	Recommendation Recommendation `json:"recommendation"`
}
