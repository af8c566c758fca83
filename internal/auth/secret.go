package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/store"
)

// Secret prefixes say at a glance (and to secret scanners) which kind of key a string
// is; the rest is 32 random bytes in unpadded base64url (43 characters).
const (
	GatewayPrefix = "dsg_"
	AdminPrefix   = "dsa_"

	secretBytes = 32
	// secretLen is the length of every secret NewSecret makes; a token of another
	// length is rejected before it is hashed.
	secretLen = len(GatewayPrefix) + (secretBytes*8+5)/6
)

// NewSecret returns a new random secret for a key of the given kind, and its Hash.
// It panics on a kind other than store.KeyGateway and store.KeyAdmin.
func NewSecret(kind store.KeyKind) (secret string, hash []byte) {
	var prefix string
	switch kind {
	case store.KeyGateway:
		prefix = GatewayPrefix
	case store.KeyAdmin:
		prefix = AdminPrefix
	default:
		panic(fmt.Sprintf("auth: NewSecret of unknown key kind %q", kind))
	}
	var b [secretBytes]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	secret = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Hash(secret)
}

// Hash returns the SHA-256 of a secret: what the store keeps instead of the secret.
// A fast hash is right for 256-bit random secrets (see store.Key).
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// hashToken hashes a token that has the shape of a secret, without allocating; ok is
// false for anything else, which cannot be a key.
func hashToken(token string) (h [sha256.Size]byte, ok bool) {
	if len(token) != secretLen {
		return h, false
	}
	var buf [secretLen]byte
	copy(buf[:], token)
	return sha256.Sum256(buf[:]), true
}

// idEncoding writes key ids in lower-case base32 without padding: short, unambiguous
// to read aloud, and safe in URLs and shells.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewKey completes a key a person asked for (Kind, Role, Name and, for gateway keys,
// ClientID, AllowedModels, RateLimit, Burst) into one ready for store.KeyStore's
// CreateKey, and returns its secret, which exists nowhere else: show it once.
//
// It sets ID, Hash and CreatedAt (to now) and clears RevokedAt and LastUsedAt. A gateway
// key without a ClientID records its calls under its Name, or else its ID.
func NewKey(k store.Key, now time.Time) (store.Key, string, error) {
	if k.Kind != store.KeyGateway && k.Kind != store.KeyAdmin {
		return store.Key{}, "", fmt.Errorf("key kind %q: want %q or %q", k.Kind, store.KeyGateway, store.KeyAdmin)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	k.ID = "key_" + idEncoding.EncodeToString(id[:])[:12]
	secret, hash := NewSecret(k.Kind)
	k.Hash = hash
	k.CreatedAt = now.UTC()
	k.RevokedAt, k.LastUsedAt = time.Time{}, time.Time{}
	k.Name = strings.TrimSpace(k.Name)
	if k.Kind == store.KeyGateway && k.ClientID == "" {
		k.ClientID = k.Name
		if k.ClientID == "" {
			k.ClientID = k.ID
		}
	}
	if err := k.Validate(); err != nil {
		return store.Key{}, "", err
	}
	return k, secret, nil
}

// Describe says in one line what a key is and may do, for people and the audit trail.
// It never includes the hash.
func Describe(k *store.Key) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s key %q", k.Kind, k.Name)
	if k.Kind == store.KeyAdmin {
		fmt.Fprintf(&b, " role=%s", k.Role)
		return b.String()
	}
	fmt.Fprintf(&b, " client=%s", k.ClientID)
	if len(k.AllowedModels) > 0 {
		fmt.Fprintf(&b, " models=%s", strings.Join(k.AllowedModels, ","))
	}
	if k.RateLimit > 0 {
		fmt.Fprintf(&b, " rate=%g/s", k.RateLimit)
		if k.Burst > 0 {
			fmt.Fprintf(&b, " burst=%d", k.Burst)
		}
	}
	return b.String()
}
