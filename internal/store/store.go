// Package store defines what downshift keeps about calls and the Store interface that
// the SQLite and PostgreSQL implementations satisfy. It holds types and contracts only;
// implementations live in sub-packages (store/sqlite), and store/storetest is the one
// conformance suite every implementation must pass.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a call with the asked id does not exist.
var ErrNotFound = errors.New("store: not found")

// Route says which model answered a call.
type Route string

// Routes. Until workloads are shifted, every call takes RouteReference.
const (
	RouteReference Route = "reference"
	RouteCandidate Route = "candidate"
	RouteEscalated Route = "escalated"
)

// Call is one chat-completion request and its response through the gateway, as
// recorded. Request and Response are JSON: the request as the client sent it, and the
// response as one chat.completion (a stream is reassembled) or an OpenAI error body;
// redacted when redaction is on, and sealed (binary, see package seal) when KeyID is set.
// A second answer's body (Second.Response) is a payload too, redacted and sealed with
// them.
//
// Stores keep times and durations to the microsecond (PostgreSQL's resolution) and
// return times in UTC; an empty Request, Response or Second.Response comes back as nil.
type Call struct {
	ID         string    // time-ordered (ULID), unique
	StartedAt  time.Time // when the gateway received the request
	FinishedAt time.Time // when the last byte went to the client

	ClientID    string // who sent it (from the gateway key; empty in open mode)
	Workload    string // the client's tag, or empty
	Fingerprint string // template fingerprint of the request (see package workload)

	RequestedModel string // the model the client asked for
	ServedModel    string // the configured model that answered (after aliases and fallbacks)
	Backend        string // the backend that answered
	Route          Route
	Stream         bool

	Status       int    // HTTP status sent to the client
	ErrorType    string // OpenAI error type when Status >= 400, else empty
	ErrorMessage string // the client-visible error message, never a secret

	PromptTokens     int
	CompletionTokens int
	CachedTokens     int
	TokensEstimated  bool // counted with a tokenizer because the upstream sent no usage

	Latency time.Duration // StartedAt to FinishedAt
	TTFT    time.Duration // time to first byte of the answer (first content chunk for streams)
	CostUSD float64

	// Simulated is true when the answer was invented by downshift's simulator.
	Simulated bool

	// Redactions counts what redaction replaced in Request, Response and
	// Second.Response, by placeholder type ("EMAIL": 2); never the values. Nil when nothing was replaced (or redaction
	// was off); stores return an empty map as nil.
	Redactions map[string]int

	// KeyID is the id of the encryption key that sealed Request, Response and
	// Second.Response (see package seal); empty means they are plaintext JSON. Stores
	// keep the payloads as the bytes given, so a sealed payload comes back sealed.
	KeyID string

	// Source says where the call came from: "" for a call recorded by the gateway, or
	// "import:FORMAT" for one imported from a file by `downshift import` (see the
	// Source* constants).
	Source string
	// GroundTruth is true when Response is a dataset's ground truth (the answer the
	// call should have had, e.g. BFCL's expected tool calls), not a model's answer.
	GroundTruth bool
	// WorkloadID is the workload the call was assigned to by discovery or online
	// assignment; empty until then. It is distinct from Workload, the client's tag.
	WorkloadID string

	// What the workload's shift policy did with the call (see package policy); all
	// zero for a call under no policy, which the reference answered as usual.
	Mode          string // the mode the call was decided under (Mode*); "" for none
	PolicyVersion int    // the policy version it was decided under; 0 for none
	Candidate     string // the policy's candidate model
	// Guard is the guards' verdict on the candidate's answer: "" when none was
	// checked, GuardPass, the failed checks comma-separated ("tool_known,schema_valid"),
	// or GuardUnanswered when the candidate gave no answer to check.
	Guard string
	// Second is the call's second answer, when the policy asked for one; nil otherwise.
	Second *SecondAnswer
	// ReferenceCostUSD is what the call would have cost had the reference model
	// answered it: CostUSD when it did; for a call the candidate answered, the cost of
	// the reference's verification answer, or else the reference's prices applied to
	// the candidate's token counts (ReferenceCostEstimated).
	ReferenceCostUSD       float64
	ReferenceCostEstimated bool

	Request  []byte
	Response []byte
}

// Guard verdicts (Call.Guard) other than a list of failed checks.
const (
	GuardPass       = "pass"
	GuardUnanswered = "unanswered" // an error, a timeout or a cut stream: nothing to check
)

// Kinds of second answer (SecondAnswer.Kind).
const (
	// SecondShadow: the candidate's answer to a call the reference answered (shadow).
	SecondShadow = "shadow"
	// SecondVerify: the reference's answer to a call the candidate answered, asked in
	// the background to keep measuring agreement (canary, serve).
	SecondVerify = "verify"
	// SecondRejected: the candidate's answer the guards refused; the reference answered
	// the client instead (RouteEscalated).
	SecondRejected = "rejected"
)

// SecondAnswer is the answer of the model that did not answer the client: what it
// cost, how it compared, and, for a shadow or a verification that came, its body.
type SecondAnswer struct {
	Kind   string // one of the Second* constants
	Model  string // the configured model that gave it
	Status int    // its HTTP status; 0 when none came
	// Error says why there is no answer to compare (timeout, unreachable, busy); never
	// a secret or a payload.
	Error            string
	PromptTokens     int
	CompletionTokens int
	Latency          time.Duration
	CostUSD          float64
	Simulated        bool
	// Compared is true when Agreement and Pass hold compare's score of the candidate's
	// answer against the reference's.
	Compared  bool
	Agreement float64
	Pass      bool
	// Response is the answer's body as received, one chat.completion, when a shadow or
	// verification answer came; nil for an error, a skip, or a refused candidate's
	// answer. It is a payload like Call.Request: redacted and sealed with the call's,
	// and loaded only with them (Filter.WithPayloads, GetCall).
	Response []byte
}

// SecondResponse returns the second answer's body, or nil when the call has none.
func (c *Call) SecondResponse() []byte {
	if c.Second == nil {
		return nil
	}
	return c.Second.Response
}

// SavingsUSD is what the call saved against the reference answering it alone: the
// reference's cost less what was paid, the second answer included (so shadowing
// costs money and shows as a negative saving).
func (c *Call) SavingsUSD() float64 {
	paid := c.CostUSD
	if c.Second != nil {
		paid += c.Second.CostUSD
	}
	return c.ReferenceCostUSD - paid
}

// Sources of calls (Call.Source).
const (
	SourceGateway  = ""                // recorded by the gateway
	SourceOpenAI   = "import:openai"   // OpenAI chat JSONL (request/response pairs, or fine-tuning messages)
	SourceFlywheel = "import:flywheel" // NVIDIA Data Flywheel log JSONL
	SourceTauBench = "import:taubench" // tau-bench trajectories, one call per assistant turn
	SourceBFCL     = "import:bfcl"     // BFCL questions with their ground-truth calls
)

// Filter selects calls. Zero fields match everything.
type Filter struct {
	Workload string
	// Source matches Call.Source exactly; since "" matches everything, the gateway's
	// own calls cannot be selected by it.
	Source string
	// WorkloadID matches the workload discovery or assignment gave the call.
	WorkloadID string
	Model      string // matches RequestedModel or ServedModel
	// Status: 0 for any; a code such as 200 or 502; or StatusOK / StatusError.
	Status  int
	Since   time.Time // StartedAt >= Since
	Until   time.Time // StartedAt < Until
	AfterID string    // ID > AfterID, for following new calls in order
	// Limit caps the result; 0 means the implementation's default (100).
	Limit int
	// Ascending orders by ID ascending (oldest first); the default is newest first.
	Ascending bool
	// WithPayloads loads Request, Response and Second.Response; listings usually leave
	// them out.
	WithPayloads bool
	// SealedUnder matches calls sealed under this key id (KeyID == SealedUnder).
	SealedUnder string
	// NotSealedUnder matches calls not sealed under this key id: sealed under another
	// key, or plaintext (KeyID != NotSealedUnder). Key rotation uses it to find what is
	// left to re-seal under the active key.
	NotSealedUnder string
}

// PayloadUpdate replaces the payloads of one stored call and the id of the key that
// sealed them (empty for plaintext). Request, Response and SecondResponse are stored
// as given, whole: a nil one becomes empty.
type PayloadUpdate struct {
	ID       string
	KeyID    string
	Request  []byte
	Response []byte
	// SecondResponse replaces Second.Response (see Call.SecondResponse); a call
	// without a second answer has none to replace, and it stays nil.
	SecondResponse []byte
}

// Status filters for Filter.Status.
const (
	StatusOK    = -1 // Status < 400
	StatusError = -2 // Status >= 400
)

// Store keeps calls. Implementations are safe for concurrent use.
type Store interface {
	// Keys and the audit trail live in the same store as the calls they guard.
	KeyStore
	KeyUsage
	AuditLog
	WorkloadStore // the workloads discovery found, and which one each call is in
	ModelStore    // the models added to the catalog at run time
	EvalStore     // eval sets, evaluation runs and their scored results
	TuneJobStore  // fine-tuning jobs, their state and logs
	PolicyStore   // each workload's versioned routing policy
	SavingsStore  // what the gateway's calls cost, against the reference alone, per workload
	RollupStore   // the gateway's calls summed per minute, workload, route and model, for dashboards

	// InsertCalls writes calls in one transaction: all or none. A call without an ID, or
	// with an ID already stored, fails the whole batch.
	InsertCalls(ctx context.Context, calls []Call) error
	// ImportCalls writes calls in one transaction, skipping every call whose ID is
	// already stored or appeared earlier in the batch (never failing on them), and
	// returns how many were new. Any other failure (a call without an ID, a write
	// error) fails the whole batch: nothing is written and added is 0. Importers give
	// calls deterministic IDs, so importing the same data twice adds nothing.
	ImportCalls(ctx context.Context, calls []Call) (added int, err error)
	// GetCall returns one call with its payloads, or ErrNotFound.
	GetCall(ctx context.Context, id string) (Call, error)
	// ListCalls returns calls matching f. A Status that is neither a code, 0, StatusOK
	// nor StatusError is an error.
	ListCalls(ctx context.Context, f Filter) ([]Call, error)
	// CountCalls returns how many calls match f (Limit is ignored).
	CountCalls(ctx context.Context, f Filter) (int, error)
	// UpdatePayloads replaces the payloads and key ids of stored calls in one
	// transaction: all or none. An update naming a call that is not stored fails the
	// batch with ErrNotFound. It is how key rotation re-seals calls; nothing else
	// about a call ever changes once written. Implementations make the bytes replaced
	// as hard to recover from their files as the engine allows (see each one's doc).
	UpdatePayloads(ctx context.Context, updates []PayloadUpdate) error
	// Check reports whether the store can be written now (for /readyz).
	Check(ctx context.Context) error
	// Close releases the store.
	Close() error
}
