// Package report builds the savings report of `downshift report`: per workload and in
// total, over a period, how many of the gateway's calls a candidate model answered,
// how often its answers were escalated to the reference, how well it agreed with the
// reference, what was paid against what the reference alone would have cost, and how
// latency changed; with renderers for a terminal, JSON and a self-contained HTML page.
//
// It reads the sums the store computes (store.SavingsStore) and the current policies;
// it never reads calls one by one, and it is not a billing system: costs are the
// catalog's prices as recorded on each call.
package report

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// TotalName is the Workload of the Total row.
const TotalName = "total"

// Report is the savings report over one period.
type Report struct {
	// Since and Until bound the calls' start times, Until excluded; zero when open.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Workload is the only workload reported on, when one was asked for.
	Workload string `json:"workload,omitempty"`
	// At is when the report was made; zero unless the caller sets it.
	At time.Time `json:"at,omitzero"`
	// Workloads has one row per workload with calls in the period or a policy, the
	// most calls first.
	Workloads []Row `json:"workloads"`
	// Total sums the rows (see Row for how each figure adds up).
	Total Row `json:"total"`
}

// Row is one workload's figures over the period, or their total (Workload is
// TotalName). Counts are of the gateway's own calls; imported calls never count.
type Row struct {
	Workload string `json:"workload"`
	// Mode, Candidate and PolicyVersion are the workload's current policy (store.Mode*
	// constants); empty when it has none, and in the total. The policy may have
	// changed during the period: UnderPolicy, Shadowed and Verified count what the
	// calls themselves were decided under.
	Mode          string `json:"mode,omitempty"`
	Candidate     string `json:"candidate,omitempty"`
	PolicyVersion int    `json:"policy_version,omitempty"`

	Calls             int `json:"calls"`
	ReferenceAnswered int `json:"reference_answered"` // route reference
	CandidateAnswered int `json:"candidate_answered"` // route candidate: the calls moved
	Escalated         int `json:"escalated"`          // the guards refused the candidate; the reference answered
	UnderPolicy       int `json:"under_policy"`       // decided under a policy other than none
	Shadowed          int `json:"shadowed"`           // a shadow answer from the candidate was asked for
	Verified          int `json:"verified"`           // a verification answer from the reference was asked for
	Compared          int `json:"compared"`           // with both answers compared
	Passed            int `json:"passed"`             // compared, and the comparison passed
	GuardFailures     int `json:"guard_failures"`     // the candidate's answer failed the guards, or never came
	Errors            int `json:"errors"`             // answered with an HTTP status of 400 or more
	Simulated         int `json:"simulated"`          // with an answer made up by downshift sim

	// MovedShare is CandidateAnswered / Calls; absent without calls.
	MovedShare *float64 `json:"moved_share,omitempty"`
	// EscalationRate is Escalated / (CandidateAnswered + Escalated): of the calls the
	// candidate tried to answer, the share the reference answered instead; absent
	// when it tried none.
	EscalationRate *float64 `json:"escalation_rate,omitempty"`
	// Agreement is the mean agreement (0..1) of the Compared calls; absent when none
	// were. The total weighs each workload's mean by its Compared.
	Agreement *float64 `json:"agreement,omitempty"`

	// PaidUSD is what the calls cost, shadow and verification answers included;
	// ReferenceUSD what the reference alone would have cost, of which
	// ReferenceEstimated calls' share is an estimate (the reference's prices applied to
	// the candidate's tokens). SavedUSD is ReferenceUSD − PaidUSD, negative when
	// shadowing cost more than the candidate saved; SavedShare is SavedUSD /
	// ReferenceUSD, absent when ReferenceUSD is 0.
	PaidUSD            float64  `json:"paid_usd"`
	ReferenceUSD       float64  `json:"reference_usd"`
	ReferenceEstimated int      `json:"reference_estimated"`
	SavedUSD           float64  `json:"saved_usd"`
	SavedShare         *float64 `json:"saved_share,omitempty"`

	// Median latencies of the calls on each route; absent (0) when the route had no
	// calls, and in the total, since medians do not add up.
	ReferenceP50 time.Duration `json:"reference_p50_ns,omitempty"`
	CandidateP50 time.Duration `json:"candidate_p50_ns,omitempty"`
	EscalatedP50 time.Duration `json:"escalated_p50_ns,omitempty"`
	// LatencyChange is CandidateP50 − ReferenceP50 (negative: the candidate is
	// faster), when the workload has calls on both routes. The total's is the mean of
	// the workloads' changes weighted by their CandidateAnswered: the change a moved
	// call saw, typically.
	LatencyChange *time.Duration `json:"latency_change_ns,omitempty"`

	First time.Time `json:"first,omitzero"` // the first call's start
	Last  time.Time `json:"last,omitzero"`  // the last call's start
}

// Source is what a report is read from: the store's sums and the current policies.
type Source interface {
	Savings(ctx context.Context, f store.SavingsFilter) ([]store.WorkloadSavings, error)
	CurrentPolicies(ctx context.Context) ([]store.Policy, error)
}

// Load reads the sums and the policies from src and builds the report over f.
func Load(ctx context.Context, src Source, f store.SavingsFilter) (Report, error) {
	sums, err := src.Savings(ctx, f)
	if err != nil {
		return Report{}, err
	}
	policies, err := src.CurrentPolicies(ctx)
	if err != nil {
		return Report{}, err
	}
	return Build(f, sums, policies), nil
}

// Build makes the report over f from the store's sums and the current policies: a
// row per workload with calls, and per workload with a policy (when f names a
// workload, that one only) even without calls, then the total.
func Build(f store.SavingsFilter, sums []store.WorkloadSavings, policies []store.Policy) Report {
	r := Report{Since: f.Since, Until: f.Until, Workload: f.Workload}
	byName := map[string]int{}
	for i := range sums {
		byName[sums[i].Workload] = len(r.Workloads)
		r.Workloads = append(r.Workloads, rowFrom(&sums[i]))
	}
	for _, p := range policies {
		if f.Workload != "" && p.Workload != f.Workload {
			continue
		}
		i, ok := byName[p.Workload]
		if !ok {
			i = len(r.Workloads)
			byName[p.Workload] = i
			r.Workloads = append(r.Workloads, Row{Workload: p.Workload})
		}
		w := &r.Workloads[i]
		w.Mode, w.Candidate, w.PolicyVersion = p.Mode, p.Candidate, p.Version
	}
	slices.SortFunc(r.Workloads, func(a, b Row) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.Workload, b.Workload))
	})
	for i := range r.Workloads {
		derive(&r.Workloads[i])
	}
	r.Total = total(r.Workloads)
	return r
}

func rowFrom(s *store.WorkloadSavings) Row {
	r := Row{
		Workload: s.Workload, Calls: s.Calls,
		ReferenceAnswered: s.Reference, CandidateAnswered: s.Candidate, Escalated: s.Escalated,
		UnderPolicy: s.Policied, Shadowed: s.Shadowed, Verified: s.Verified,
		Compared: s.Compared, Passed: s.Passed, GuardFailures: s.GuardFailures,
		Errors: s.Errors, Simulated: s.Simulated,
		PaidUSD: s.PaidUSD, ReferenceUSD: s.ReferenceUSD, ReferenceEstimated: s.ReferenceEstimated,
		ReferenceP50: s.ReferenceP50, CandidateP50: s.CandidateP50, EscalatedP50: s.EscalatedP50,
		First: s.First, Last: s.Last,
	}
	if s.Compared > 0 {
		r.Agreement = ptr(s.Agreement)
	}
	if s.Reference > 0 && s.Candidate > 0 {
		r.LatencyChange = ptr(s.CandidateP50 - s.ReferenceP50)
	}
	return r
}

// derive fills in the shares and the saving from r's counts and sums, rounded to
// leave out the noise of adding binary fractions (0.08 / 0.1 is 0.7999999999999999):
// money to a ten-billionth of a dollar, shares to twelve decimals.
func derive(r *Row) {
	r.PaidUSD, r.ReferenceUSD = round(r.PaidUSD, 10), round(r.ReferenceUSD, 10)
	r.SavedUSD = round(r.ReferenceUSD-r.PaidUSD, 10)
	if r.ReferenceUSD > 0 {
		r.SavedShare = ptr(round(r.SavedUSD/r.ReferenceUSD, 12))
	}
	if r.Calls > 0 {
		r.MovedShare = ptr(round(float64(r.CandidateAnswered)/float64(r.Calls), 12))
	}
	if tried := r.CandidateAnswered + r.Escalated; tried > 0 {
		r.EscalationRate = ptr(round(float64(r.Escalated)/float64(tried), 12))
	}
}

// round rounds x to digits decimals; never to -0.
func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	x = math.Round(x*p) / p
	if x == 0 {
		return 0
	}
	return x
}

// total adds rows up: counts and money are summed, agreement weighted by Compared,
// the latency change weighted by CandidateAnswered; medians are left out.
func total(rows []Row) Row {
	t := Row{Workload: TotalName}
	var agreement, change float64
	var changeWeight int
	for i := range rows {
		r := &rows[i]
		t.Calls += r.Calls
		t.ReferenceAnswered += r.ReferenceAnswered
		t.CandidateAnswered += r.CandidateAnswered
		t.Escalated += r.Escalated
		t.UnderPolicy += r.UnderPolicy
		t.Shadowed += r.Shadowed
		t.Verified += r.Verified
		t.Compared += r.Compared
		t.Passed += r.Passed
		t.GuardFailures += r.GuardFailures
		t.Errors += r.Errors
		t.Simulated += r.Simulated
		t.PaidUSD += r.PaidUSD
		t.ReferenceUSD += r.ReferenceUSD
		t.ReferenceEstimated += r.ReferenceEstimated
		if r.Agreement != nil {
			agreement += *r.Agreement * float64(r.Compared)
		}
		if r.LatencyChange != nil {
			change += float64(*r.LatencyChange) * float64(r.CandidateAnswered)
			changeWeight += r.CandidateAnswered
		}
		if r.Calls > 0 {
			if t.First.IsZero() || r.First.Before(t.First) {
				t.First = r.First
			}
			if r.Last.After(t.Last) {
				t.Last = r.Last
			}
		}
	}
	if t.Compared > 0 {
		t.Agreement = ptr(agreement / float64(t.Compared))
	}
	if changeWeight > 0 {
		t.LatencyChange = ptr(time.Duration(math.Round(change / float64(changeWeight))))
	}
	derive(&t)
	return t
}

func ptr[T any](v T) *T { return &v }
