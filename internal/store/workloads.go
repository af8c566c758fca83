package store

import (
	"context"
	"encoding/json"
	"time"
)

// Workload is a recurring kind of call as the last discovery run found it: what it is
// called, what marks it, and the figures the report computed for it.
//
// Stores keep UpdatedAt to the microsecond and return it in UTC; empty Terms, Tools,
// OutputTypes, Stats and Model come back as nil.
type Workload struct {
	ID    string // stable across runs when discovery recognises the same workload
	Label string // a short name a person can read ("book_reservation + get_user_details")

	Terms []string // the words that mark its prompts, most telling first
	Tools []string // the tool names its calls offered or used, sorted
	// OutputTypes is the share of its answers by kind ("tool_call", "json", "text"),
	// each in [0, 1].
	OutputTypes map[string]float64

	// Representative is the id of the call closest to the workload's centre: the one to
	// show a person who asks "what is this?".
	Representative string
	Calls          int // how many calls the run assigned to it

	// Stats is the report's per-workload figures as JSON (see package
	// discover/report). The store keeps it as given and never reads it.
	Stats     json.RawMessage
	Readiness int // SLM readiness, 0-100, from the report

	// Model is this workload's part of the online assigner's model (its centroid, for
	// instance), opaque to the store. Whatever the assigner shares across workloads
	// (vocabulary, weights) belongs in WorkloadRun.Model instead; the assigner needs
	// the run's Model plus every workload's Model, either of which may be nil.
	Model []byte

	// UpdatedAt is when the run that saved the workload happened: SaveWorkloads sets
	// it to the run's At, whatever the caller put here.
	UpdatedAt time.Time
}

// WorkloadRun is one discovery run: when it happened, with which parameters, and the
// online assigner's model it produced (opaque to the store; see Workload.Model).
// Stores keep At to the microsecond and return it in UTC; empty Params and Model come
// back as nil.
type WorkloadRun struct {
	ID     string
	At     time.Time
	Params json.RawMessage // the discovery parameters as JSON (k, seed, features, ...)
	Model  []byte
}

// WorkloadStore keeps the workloads discovery found and which workload each call
// belongs to. Implementations are safe for concurrent use.
type WorkloadStore interface {
	// SaveWorkloads records run and makes ws the current set of workloads, in one
	// transaction: readers see the old set or the new one, never a mix. Earlier runs
	// and their workloads are kept as history. run.ID must not be empty nor saved
	// before (ErrConflict), run.At must be set, every workload needs an ID unique
	// within ws, and Params and Stats must be valid JSON when set; otherwise nothing
	// is saved.
	SaveWorkloads(ctx context.Context, run WorkloadRun, ws []Workload) error
	// ListWorkloads returns the current set (the last saved run's), ordered by ID;
	// empty when no run was saved.
	ListWorkloads(ctx context.Context) ([]Workload, error)
	// LatestRun returns the last saved run, or ErrNotFound when there is none.
	LatestRun(ctx context.Context) (WorkloadRun, error)
	// AssignWorkloads sets the workload id of the given calls (call id -> workload id;
	// "" clears it) in one transaction: all or none. A call id that is not stored fails
	// the whole batch with ErrNotFound. Calls left out keep their workload id.
	AssignWorkloads(ctx context.Context, assign map[string]string) error
}
