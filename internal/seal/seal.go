// Package seal encrypts recorded payloads at rest: AES-256-GCM under a keyring of
// named keys, one of them active. The recorder's writer seals each call's request and
// response before the store sees them; readers open them again with the key the call
// names, so records sealed under an older key stay readable until rotation re-seals
// them.
//
// Each payload is bound to its record: the call id and the field name are the
// additional authenticated data, so a sealed request cannot be moved to another call,
// or swapped with its own response, without failing to open.
//
// It is not a key store and not a general crypto toolkit: keys come from the
// environment or files the configuration names, and live only in memory. It never runs
// on the request path.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/store"
)

// KeySize is the size of a key in bytes: AES-256.
const KeySize = 32

// NonceSize is the size of the random nonce that starts every sealed payload.
const NonceSize = 12

// Overhead is how many bytes sealing adds to a payload: the nonce and the GCM tag.
const Overhead = NonceSize + 16

// Errors, matched with errors.Is; the errors returned wrap them with the key id and the
// call, never with key material or payload.
var (
	// ErrUnknownKey means a key id names no key of the keyring.
	ErrUnknownKey = errors.New("seal: unknown key")
	// ErrDecrypt means a sealed payload did not open: the wrong key, a payload of
	// another call or field, or bytes that were changed.
	ErrDecrypt = errors.New("seal: payload does not open")
	// ErrNoActiveKey means the keyring has no active key to seal with.
	ErrNoActiveKey = errors.New("seal: no active encryption key")
	// ErrSealed means a call is already sealed and cannot be sealed again.
	ErrSealed = errors.New("seal: call already sealed")
)

// Keyring holds the configured keys, by id, and which one seals new records. It is
// immutable and safe for concurrent use. The zero Keyring (and one built from a
// configuration without keys) is disabled: it seals nothing and opens nothing.
type Keyring struct {
	active string
	aeads  map[string]cipher.AEAD
}

// NewKeyring loads every key of c, each from its environment variable (through getenv;
// nil means os.Getenv) or its file. A key is 32 bytes written as 64 hex digits or in
// standard base64, surrounding whitespace ignored. Errors name the key id and where it
// was read from, never the key.
func NewKeyring(c config.Encryption, getenv func(string) string) (*Keyring, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	k := &Keyring{active: c.Active, aeads: make(map[string]cipher.AEAD, len(c.Keys))}
	for _, ek := range c.Keys {
		if ek.ID == "" {
			return nil, errors.New("seal: an encryption key has no id")
		}
		if _, dup := k.aeads[ek.ID]; dup {
			return nil, fmt.Errorf("seal: key %q is configured twice", ek.ID)
		}
		key, err := loadKey(ek, getenv)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", ek.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", ek.ID, err)
		}
		k.aeads[ek.ID] = aead
	}
	switch {
	case c.Active == "" && len(c.Keys) > 0:
		return nil, errors.New("seal: encryption keys are configured but none is active (privacy.encryption.active)")
	case c.Active != "" && k.aeads[c.Active] == nil:
		return nil, fmt.Errorf("seal: active key %q: %w (privacy.encryption.keys)", c.Active, ErrUnknownKey)
	}
	return k, nil
}

// loadKey reads and decodes one key. The returned slice is the caller's to clear.
func loadKey(ek config.EncryptionKey, getenv func(string) string) ([]byte, error) {
	var text, source string
	switch {
	case ek.Env != "" && ek.File != "":
		return nil, fmt.Errorf("seal: key %q: set env or file, not both", ek.ID)
	case ek.Env != "":
		source = "environment variable " + ek.Env
		text = getenv(ek.Env)
	case ek.File != "":
		source = "file " + ek.File
		b, err := os.ReadFile(ek.File)
		if err != nil {
			// A *fs.PathError carries the path and the cause, never the content.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("seal: key %q: read %s: %w", ek.ID, source, err)
		}
		text = string(b)
	default:
		return nil, fmt.Errorf("seal: key %q: set env or file", ek.ID)
	}
	key, err := DecodeKey(text)
	if err != nil {
		return nil, fmt.Errorf("seal: key %q from %s: %w", ek.ID, source, err)
	}
	return key, nil
}

// DecodeKey decodes a key written as 64 hex digits or as standard base64 of 32 bytes,
// ignoring surrounding whitespace. Its errors describe the text, never quote it.
func DecodeKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("no key (unset or empty)")
	}
	if len(text) == 2*KeySize {
		if key, err := hex.DecodeString(text); err == nil {
			return key, nil
		}
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("a key of %d characters that is neither 64 hex digits nor standard base64", len(text))
	}
	if len(key) != KeySize {
		clear(key)
		return nil, fmt.Errorf("the key is %d bytes, want %d (AES-256)", len(key), KeySize)
	}
	return key, nil
}

// GenerateKey returns a new random key in standard base64, the form configuration
// files and environment variables take.
func GenerateKey() (string, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("seal: generate key: %w", err)
	}
	defer clear(key)
	return base64.StdEncoding.EncodeToString(key), nil
}

// Enabled reports whether the keyring has an active key, so that new records are
// sealed.
func (k *Keyring) Enabled() bool { return k != nil && k.active != "" }

// Active returns the id of the key that seals new records, or "" when disabled.
func (k *Keyring) Active() string {
	if k == nil {
		return ""
	}
	return k.active
}

// Has reports whether the keyring holds the key id.
func (k *Keyring) Has(id string) bool {
	return k != nil && k.aeads[id] != nil
}

// IDs returns the ids of the keys held, sorted.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	ids := make([]string, 0, len(k.aeads))
	for id := range k.aeads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (k *Keyring) aead(id string) (cipher.AEAD, error) {
	if k != nil {
		if a := k.aeads[id]; a != nil {
			return a, nil
		}
	}
	return nil, fmt.Errorf("key %q: %w", id, ErrUnknownKey)
}

// Seal encrypts plaintext under the key keyID, binding it to aad, and returns
// nonce || ciphertext || tag, Overhead bytes longer than plaintext. The nonce is
// random, so sealing the same payload twice gives different bytes.
//
// Random 96-bit nonces keep GCM safe for about 2^32 payloads per key (2^31 calls);
// rotate keys long before that.
func (k *Keyring) Seal(keyID string, plaintext, aad []byte) ([]byte, error) {
	a, err := k.aead(keyID)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, NonceSize, NonceSize+len(plaintext)+a.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return a.Seal(out, out, plaintext, aad), nil
}

// Open decrypts what Seal returned under the same key id and aad. It returns an error
// wrapping ErrUnknownKey when the keyring lacks the key, and ErrDecrypt when the bytes
// do not open under it with that aad.
func (k *Keyring) Open(keyID string, sealed, aad []byte) ([]byte, error) {
	a, err := k.aead(keyID)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if len(sealed) < NonceSize+a.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a sealed payload", ErrDecrypt, len(sealed))
	}
	plain, err := a.Open(nil, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w under key %q", ErrDecrypt, keyID)
	}
	return plain, nil
}

// Fields of a call that are sealed; the names are part of each payload's aad.
const (
	FieldRequest        = "request"
	FieldResponse       = "response"
	FieldSecondResponse = "second_response" // store.SecondAnswer.Response
)

// AAD returns the additional authenticated data that binds a payload to its call and
// field. The field names contain no NUL, so the encoding is unambiguous.
func AAD(callID, field string) []byte {
	b := make([]byte, 0, len(field)+1+len(callID))
	b = append(b, field...)
	b = append(b, 0)
	return append(b, callID...)
}

// SealCall seals c's Request, Response and Second.Response in place under the active
// key and sets c.KeyID. An empty payload stays empty: there is nothing in it to hide.
// On error c is unchanged; c.Second is replaced by a copy rather than written through,
// so a SecondAnswer shared with another Call is never changed. A call already sealed is
// refused with ErrSealed.
func (k *Keyring) SealCall(c *store.Call) error {
	if !k.Enabled() {
		return ErrNoActiveKey
	}
	if c.KeyID != "" {
		return fmt.Errorf("%w: call %s is sealed under key %q", ErrSealed, c.ID, c.KeyID)
	}
	req, err := k.sealField(k.active, c.ID, FieldRequest, c.Request)
	if err != nil {
		return fmt.Errorf("seal call %s: %w", c.ID, err)
	}
	resp, err := k.sealField(k.active, c.ID, FieldResponse, c.Response)
	if err != nil {
		return fmt.Errorf("seal call %s: %w", c.ID, err)
	}
	second, err := k.sealField(k.active, c.ID, FieldSecondResponse, c.SecondResponse())
	if err != nil {
		return fmt.Errorf("seal call %s: %w", c.ID, err)
	}
	c.Request, c.Response, c.KeyID = req, resp, k.active
	setSecondResponse(c, second)
	return nil
}

// setSecondResponse sets c.Second.Response to b on a copy of c.Second; a call without
// a second answer is left as it is.
func setSecondResponse(c *store.Call, b []byte) {
	if c.Second == nil {
		return
	}
	sec := *c.Second
	sec.Response = b
	c.Second = &sec
}

func (k *Keyring) sealField(keyID, callID, field string, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return b, nil
	}
	return k.Seal(keyID, b, AAD(callID, field))
}

// OpenCall opens c's Request, Response and Second.Response in place (c.Second on a
// copy, as SealCall) and clears c.KeyID. A plaintext call (KeyID empty) is left as it
// is. When the keyring lacks the call's key, the error wraps ErrUnknownKey and names
// the key id. On error c is unchanged.
func (k *Keyring) OpenCall(c *store.Call) error {
	if c.KeyID == "" {
		return nil
	}
	if !k.Has(c.KeyID) {
		return fmt.Errorf("open call %s: sealed under key %q, which is not configured (privacy.encryption.keys): %w",
			c.ID, c.KeyID, ErrUnknownKey)
	}
	req, err := k.openField(c.KeyID, c.ID, FieldRequest, c.Request)
	if err != nil {
		return fmt.Errorf("open call %s %s: %w", c.ID, FieldRequest, err)
	}
	resp, err := k.openField(c.KeyID, c.ID, FieldResponse, c.Response)
	if err != nil {
		return fmt.Errorf("open call %s %s: %w", c.ID, FieldResponse, err)
	}
	second, err := k.openField(c.KeyID, c.ID, FieldSecondResponse, c.SecondResponse())
	if err != nil {
		return fmt.Errorf("open call %s %s: %w", c.ID, FieldSecondResponse, err)
	}
	c.Request, c.Response, c.KeyID = req, resp, ""
	setSecondResponse(c, second)
	return nil
}

func (k *Keyring) openField(keyID, callID, field string, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return b, nil
	}
	return k.Open(keyID, b, AAD(callID, field))
}
