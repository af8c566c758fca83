package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrConflict is returned when a key with the same id or hash is already stored.
var ErrConflict = errors.New("store: already exists")

// KeyKind says which API a key opens.
type KeyKind string

// Key kinds.
const (
	// KeyGateway keys are what agents present on /v1: each names the client id its
	// calls are recorded under, and may limit models and request rate.
	KeyGateway KeyKind = "gateway"
	// KeyAdmin keys open the admin API (/api) with a Role.
	KeyAdmin KeyKind = "admin"
)

// Role is what an admin key may do.
type Role string

// Roles. RoleAdmin may do everything RoleViewer may.
const (
	// RoleViewer reads calls (payloads included, audited).
	RoleViewer Role = "viewer"
	// RoleAdmin also manages keys and reads the audit trail.
	RoleAdmin Role = "admin"
)

// Key is a gateway or admin key as stored. The secret itself is never stored: only
// its SHA-256 Hash. Keys are 256-bit random strings, so a fast unsalted hash is the
// right choice here: nobody can brute-force 2^256 secrets, and the hot path pays one
// SHA-256 (well under a microsecond) per request instead of a password hash's
// deliberate tens of milliseconds.
//
// Stores keep times to the microsecond and return them in UTC; a zero time stays zero.
type Key struct {
	ID   string // short, unique, safe to show and to type ("key_...")
	Name string // what a person calls it ("billing-agent", "alice")
	Kind KeyKind
	Role Role // admin keys only; empty for gateway keys

	// ClientID is recorded on every call made with a gateway key.
	ClientID string
	// AllowedModels are the model names a gateway key may ask for; empty means any.
	AllowedModels []string
	// RateLimit is a gateway key's sustained rate in requests per second; 0 means
	// no limit. Burst is how many requests may come at once (0: the rate rounded up,
	// at least 1).
	RateLimit float64
	Burst     int

	Hash []byte // SHA-256 of the secret (32 bytes)

	CreatedAt  time.Time
	RevokedAt  time.Time // zero while the key is active
	LastUsedAt time.Time // zero when never used or not tracked
}

// Active reports whether the key has not been revoked.
func (k *Key) Active() bool { return k.RevokedAt.IsZero() }

// Validate reports the first thing wrong with k, naming the field.
func (k *Key) Validate() error {
	if k.ID == "" {
		return errors.New("key: empty id")
	}
	if len(k.Hash) != 32 {
		return fmt.Errorf("key %s: hash is %d bytes, want 32 (SHA-256)", k.ID, len(k.Hash))
	}
	switch k.Kind {
	case KeyGateway:
		if k.Role != "" {
			return fmt.Errorf("key %s: role %q: gateway keys have no role", k.ID, k.Role)
		}
		if k.RateLimit < 0 || k.RateLimit != k.RateLimit {
			return fmt.Errorf("key %s: rate limit %v: must be 0 (none) or positive", k.ID, k.RateLimit)
		}
		if k.Burst < 0 {
			return fmt.Errorf("key %s: burst %d: must not be negative", k.ID, k.Burst)
		}
		if k.Burst > 0 && k.RateLimit == 0 {
			return fmt.Errorf("key %s: burst %d without a rate limit", k.ID, k.Burst)
		}
		if slices.Contains(k.AllowedModels, "") {
			return fmt.Errorf("key %s: allowed models contain an empty name", k.ID)
		}
	case KeyAdmin:
		if k.Role != RoleAdmin && k.Role != RoleViewer {
			return fmt.Errorf("key %s: role %q: want %q or %q", k.ID, k.Role, RoleAdmin, RoleViewer)
		}
		if k.ClientID != "" || len(k.AllowedModels) > 0 || k.RateLimit != 0 || k.Burst != 0 {
			return fmt.Errorf("key %s: client id, models, rate and burst are for gateway keys only", k.ID)
		}
	default:
		return fmt.Errorf("key %s: kind %q: want %q or %q", k.ID, k.Kind, KeyGateway, KeyAdmin)
	}
	return nil
}

// KeyStore keeps gateway and admin keys. Implementations are safe for concurrent use.
type KeyStore interface {
	// CreateKey stores k, which must pass Validate. A key whose id or hash is already
	// stored fails with ErrConflict.
	CreateKey(ctx context.Context, k Key) error
	// ListKeys returns every key, revoked ones included, oldest first.
	ListKeys(ctx context.Context) ([]Key, error)
	// RevokeKey marks the key revoked at the given time, or returns ErrNotFound.
	// Revoking a revoked key keeps its first revocation time and is no error.
	RevokeKey(ctx context.Context, id string, at time.Time) error
}

// KeyUsage remembers when keys were last used. The gateway tracks use in memory and
// writes it back now and then, never on the request path.
type KeyUsage interface {
	// TouchKeys sets each listed key's LastUsedAt to the given time unless it already
	// holds a later one. Ids that are not stored are ignored.
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// AuditAction names what an audited actor did.
type AuditAction string

// Audited actions.
const (
	AuditReadPayload AuditAction = "read_payload" // read a call's request and response
	AuditExport      AuditAction = "export"       // exported payloads (datasets, files)
	AuditCreateKey   AuditAction = "create_key"
	AuditRevokeKey   AuditAction = "revoke_key"
	AuditAddModel    AuditAction = "add_model"    // added or replaced a catalog model
	AuditRemoveModel AuditAction = "remove_model" // removed a catalog model
)

// AuditEntry records that someone read or exported payloads, or changed keys.
type AuditEntry struct {
	ID        int64 // assigned by the store, increasing; ignored by AppendAudit
	At        time.Time
	Actor     string // the key id that acted, or "cli" for the command line
	ActorName string // the key's name (or the OS user for "cli") at the time
	Action    AuditAction
	Target    string // a call id or a key id
	Detail    string // free text, never a secret or a payload
	Remote    string // the client's network address, when it came over HTTP
}

// AuditFilter selects audit entries. Zero fields match everything.
type AuditFilter struct {
	Actor  string
	Action AuditAction
	Target string
	Since  time.Time // At >= Since
	Until  time.Time // At < Until
	// BeforeID selects entries with ID < BeforeID, for paging back through the trail.
	BeforeID int64
	// Limit caps the result; 0 means the implementation's default (100).
	Limit int
}

// AuditLog is an append-only trail of who read or exported payloads or changed keys,
// and when. Implementations are safe for concurrent use and offer no way to change or
// delete an entry.
type AuditLog interface {
	// AppendAudit adds e to the trail. e.Actor and e.Action are required.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the entries matching f, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}
