package store

import (
	"context"
	"time"
)

// NoWorkload is the workload key of a call with neither a workload id nor a client
// tag.
const NoWorkload = "(none)"

// SavingsFilter selects the gateway calls Savings sums. Zero fields match everything.
type SavingsFilter struct {
	Since time.Time // StartedAt >= Since
	Until time.Time // StartedAt < Until
	// Workload matches the workload key (see WorkloadSavings.Workload) exactly;
	// NoWorkload selects the calls that have none.
	Workload string
}

// WorkloadSavings sums what the gateway's calls of one workload cost, against what
// the reference alone would have cost, and how they were answered. Imported calls
// (Source other than SourceGateway) are never counted: their cost is someone else's.
//
// A call's workload key is its WorkloadID, else its client tag (Workload), else
// NoWorkload; a tagged workload's id is its tag, so both name the same workload.
type WorkloadSavings struct {
	Workload string
	Calls    int

	// Calls by Route; a call recorded with any other route counts in Calls only.
	Reference, Candidate, Escalated int

	Policied int // decided under a policy (Mode != "")
	// Calls whose policy asked for a shadow answer (Second.Kind == SecondShadow) or a
	// verification answer (SecondVerify), whether or not one came.
	Shadowed int
	Verified int

	// Compared counts the calls whose second answer was compared with the first;
	// Agreement is their mean agreement (0 when none were) and Passed how many passed.
	Compared  int
	Agreement float64
	Passed    int

	// GuardFailures counts calls whose candidate answer the guards refused, or that
	// had no answer to check (Guard neither "" nor GuardPass).
	GuardFailures int

	// PaidUSD is what the calls cost, second answers included; ReferenceUSD what the
	// reference alone would have cost, of which ReferenceEstimated calls' share was
	// estimated (Call.ReferenceCostEstimated). ReferenceUSD − PaidUSD is the sum of
	// the calls' Call.SavingsUSD.
	PaidUSD            float64
	ReferenceUSD       float64
	ReferenceEstimated int

	Simulated int // calls with a simulated answer, first or second
	Errors    int // calls answered with Status >= 400

	// Median latency (StartedAt to FinishedAt) of the calls on each route, the mean
	// of the two middle ones for an even count; 0 when the route has no calls.
	ReferenceP50, CandidateP50, EscalatedP50 time.Duration

	First, Last time.Time // the first and last call's StartedAt, in UTC
}

// SavingsStore sums calls for the savings report. Implementations compute the sums
// in the store (they do not load calls) and are safe for concurrent use.
type SavingsStore interface {
	// Savings returns the sums of the gateway's calls that match f, one entry per
	// workload key that has calls, ordered by key; none when no call matches.
	Savings(ctx context.Context, f SavingsFilter) ([]WorkloadSavings, error)
}
