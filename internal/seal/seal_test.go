package seal_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
)

// Two fixed keys, one given in hex and one in base64.
var (
	key1Hex = strings.Repeat("0123456789abcdef", 4)
	key2B64 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, 32))
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// twoKeys returns a keyring with k1 (from the environment, hex) and k2 (from a file,
// base64 with a trailing newline), active as given.
func twoKeys(t testing.TB, active string) *seal.Keyring {
	t.Helper()
	file := filepath.Join(t.TempDir(), "k2.key")
	if err := os.WriteFile(file, []byte(key2B64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := seal.NewKeyring(config.Encryption{
		Active: active,
		Keys:   []config.EncryptionKey{{ID: "k1", Env: "K1"}, {ID: "k2", File: file}},
	}, env(map[string]string{"K1": "  " + key1Hex + "\n"}))
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func TestNewKeyringLoadsKeysFromEnvAndFile(t *testing.T) {
	k := twoKeys(t, "k2")
	if !k.Enabled() || k.Active() != "k2" {
		t.Errorf("Enabled %t, Active %q; want true, k2", k.Enabled(), k.Active())
	}
	if got := strings.Join(k.IDs(), ","); got != "k1,k2" {
		t.Errorf("IDs = %s, want k1,k2", got)
	}
	if !k.Has("k1") || k.Has("k3") {
		t.Errorf("Has(k1) = %t, Has(k3) = %t", k.Has("k1"), k.Has("k3"))
	}
}

func TestKeyringWithoutKeysIsDisabled(t *testing.T) {
	k, err := seal.NewKeyring(config.Encryption{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Enabled() || k.Active() != "" {
		t.Errorf("empty config: Enabled %t, Active %q", k.Enabled(), k.Active())
	}
	c := store.Call{ID: "c", Request: []byte("{}")}
	if err := k.SealCall(&c); !errors.Is(err, seal.ErrNoActiveKey) {
		t.Errorf("SealCall on a disabled keyring = %v, want ErrNoActiveKey", err)
	}
	var nilRing *seal.Keyring
	if nilRing.Enabled() || nilRing.Has("k1") || nilRing.OpenCall(&c) != nil {
		t.Error("a nil keyring is not a disabled one")
	}
}

func TestNewKeyringErrorsNameTheKeyNeverItsMaterial(t *testing.T) {
	dir := t.TempDir()
	shortKey := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	shortFile := filepath.Join(dir, "short.key")
	if err := os.WriteFile(shortFile, []byte(shortKey), 0o600); err != nil {
		t.Fatal(err)
	}
	notAKey := "this-is-not-a-key-but-a-secret-passphrase"
	vars := env(map[string]string{"GOOD": key1Hex, "SHORT": shortKey, "JUNK": notAKey, "HEX31": key1Hex[:62]})
	tests := []struct {
		name   string
		c      config.Encryption
		want   []string // substrings of the error
		secret string   // must not appear in the error
	}{
		{"unset env", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a", Env: "NOPE"}}},
			[]string{`"a"`, "NOPE", "unset or empty"}, ""},
		{"short key in env", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a", Env: "SHORT"}}},
			[]string{`"a"`, "SHORT", "16 bytes, want 32"}, shortKey},
		{"short hex", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a", Env: "HEX31"}}},
			[]string{`"a"`, "HEX31"}, key1Hex[:62]},
		{"junk in env", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a", Env: "JUNK"}}},
			[]string{`"a"`, "JUNK", "neither 64 hex digits nor standard base64"}, notAKey},
		{"short key in file", config.Encryption{Active: "b", Keys: []config.EncryptionKey{{ID: "b", File: shortFile}}},
			[]string{`"b"`, shortFile}, shortKey},
		{"missing file", config.Encryption{Active: "b", Keys: []config.EncryptionKey{{ID: "b", File: filepath.Join(dir, "missing.key")}}},
			[]string{`"b"`, "missing.key", "no such file"}, ""},
		{"env and file", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a", Env: "GOOD", File: shortFile}}},
			[]string{`"a"`, "not both"}, ""},
		{"neither env nor file", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a"}}},
			[]string{`"a"`, "set env or file"}, ""},
		{"no id", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{Env: "GOOD"}}},
			[]string{"no id"}, ""},
		{"duplicate id", config.Encryption{Active: "a", Keys: []config.EncryptionKey{{ID: "a", Env: "GOOD"}, {ID: "a", Env: "GOOD"}}},
			[]string{`"a"`, "twice"}, ""},
		{"active unknown", config.Encryption{Active: "z", Keys: []config.EncryptionKey{{ID: "a", Env: "GOOD"}}},
			[]string{`"z"`, "unknown key"}, ""},
		{"no active", config.Encryption{Keys: []config.EncryptionKey{{ID: "a", Env: "GOOD"}}},
			[]string{"none is active"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := seal.NewKeyring(tt.c, vars)
			if err == nil {
				t.Fatal("NewKeyring: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q quotes the key material", err)
			}
		})
	}
}

func TestDecodeKeyAcceptsHexAndBase64(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5c}, 32)
	for name, text := range map[string]string{
		"hex lower":  hex.EncodeToString(raw),
		"hex upper":  strings.ToUpper(hex.EncodeToString(raw)),
		"base64":     base64.StdEncoding.EncodeToString(raw),
		"whitespace": "\n\t " + base64.StdEncoding.EncodeToString(raw) + " \r\n",
	} {
		got, err := seal.DecodeKey(text)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: DecodeKey = %x, %v; want %x", name, got, err, raw)
		}
	}
	for name, text := range map[string]string{
		"empty":          "  ",
		"raw url base64": base64.RawURLEncoding.EncodeToString(raw),
		"33 bytes":       base64.StdEncoding.EncodeToString(append(raw, 1)),
		"hex 63":         hex.EncodeToString(raw)[:63],
	} {
		if _, err := seal.DecodeKey(text); err == nil {
			t.Errorf("%s: DecodeKey accepted %q", name, text)
		}
	}
}

func TestSealOpenRoundTripAndTamperDetection(t *testing.T) {
	k := twoKeys(t, "k1")
	plain := []byte(`{"messages":[{"role":"user","content":"my card is 4111 1111 1111 1111"}]}`)
	aad := seal.AAD("01J000", seal.FieldRequest)

	a, err := k.Seal("k1", plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal("k1", plain, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(plain)+seal.Overhead {
		t.Errorf("sealed %d bytes into %d, want +%d", len(plain), len(a), seal.Overhead)
	}
	if bytes.Equal(a, b) || bytes.Equal(a[:seal.NonceSize], b[:seal.NonceSize]) {
		t.Error("sealing twice gave the same nonce")
	}
	if bytes.Contains(a, []byte("4111")) {
		t.Error("sealed bytes contain the plaintext")
	}
	got, err := k.Open("k1", a, aad)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}

	flipped := bytes.Clone(a)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name   string
		keyID  string
		sealed []byte
		aad    []byte
		want   error
	}{
		{"changed byte", "k1", flipped, aad, seal.ErrDecrypt},
		{"other call", "k1", a, seal.AAD("01J001", seal.FieldRequest), seal.ErrDecrypt},
		{"other field", "k1", a, seal.AAD("01J000", seal.FieldResponse), seal.ErrDecrypt},
		{"other key", "k2", a, aad, seal.ErrDecrypt},
		{"unknown key", "k9", a, aad, seal.ErrUnknownKey},
		{"truncated", "k1", a[:seal.Overhead-1], aad, seal.ErrDecrypt},
		{"empty", "k1", nil, aad, seal.ErrDecrypt},
	}
	for _, tt := range tests {
		if _, err := k.Open(tt.keyID, tt.sealed, tt.aad); !errors.Is(err, tt.want) {
			t.Errorf("%s: Open = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := k.Seal("k9", plain, aad); !errors.Is(err, seal.ErrUnknownKey) {
		t.Errorf("Seal under an unknown key = %v, want ErrUnknownKey", err)
	}
}

func sampleCall(id string) store.Call {
	return store.Call{
		ID:       id,
		Workload: "airline",
		Request:  []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"REQUEST-MARKER"}]}`),
		Response: []byte(`{"choices":[{"message":{"content":"RESPONSE-MARKER"}}]}`),
		Second: &store.SecondAnswer{Kind: store.SecondShadow, Model: "small", Status: 200,
			Response: []byte(`{"choices":[{"message":{"content":"SECOND-MARKER"}}]}`)},
	}
}

func TestSealCallOpenCallRoundTrip(t *testing.T) {
	k := twoKeys(t, "k2")
	orig := sampleCall("01J000")
	c := orig
	if err := k.SealCall(&c); err != nil {
		t.Fatal(err)
	}
	if c.KeyID != "k2" {
		t.Errorf("KeyID = %q, want the active key k2", c.KeyID)
	}
	if bytes.Contains(c.Request, []byte("REQUEST-MARKER")) || bytes.Contains(c.Response, []byte("RESPONSE-MARKER")) ||
		bytes.Contains(c.Second.Response, []byte("SECOND-MARKER")) {
		t.Error("sealed call still holds plaintext")
	}
	if len(c.Second.Response) != len(orig.Second.Response)+seal.Overhead {
		t.Errorf("sealed second response %d bytes, want %d", len(c.Second.Response), len(orig.Second.Response)+seal.Overhead)
	}
	if c.Workload != "airline" || c.ID != orig.ID || c.Second.Model != "small" || c.Second.Kind != store.SecondShadow {
		t.Error("SealCall changed fields other than the payloads and key id")
	}
	if !bytes.Contains(orig.Second.Response, []byte("SECOND-MARKER")) {
		t.Error("SealCall wrote through a second answer shared with another call")
	}
	if err := k.SealCall(&c); !errors.Is(err, seal.ErrSealed) {
		t.Errorf("sealing a sealed call = %v, want ErrSealed", err)
	}
	if err := k.OpenCall(&c); err != nil {
		t.Fatal(err)
	}
	if c.KeyID != "" || !bytes.Equal(c.Request, orig.Request) || !bytes.Equal(c.Response, orig.Response) ||
		!bytes.Equal(c.Second.Response, orig.Second.Response) {
		t.Errorf("OpenCall gave %+v, want the original", c)
	}
	// Opening a plaintext call changes nothing.
	if err := k.OpenCall(&c); err != nil || !bytes.Equal(c.Request, orig.Request) {
		t.Errorf("OpenCall on plaintext = %v", err)
	}
}

func TestSealCallKeepsEmptyPayloadsEmpty(t *testing.T) {
	k := twoKeys(t, "k1")
	c := store.Call{ID: "x", Request: []byte(`{}`), Second: &store.SecondAnswer{Kind: store.SecondShadow, Error: "timeout"}}
	if err := k.SealCall(&c); err != nil {
		t.Fatal(err)
	}
	if len(c.Response) != 0 || len(c.Second.Response) != 0 || len(c.Request) != 2+seal.Overhead {
		t.Errorf("sealed request %d bytes, response %d, second response %d; want %d, 0 and 0",
			len(c.Request), len(c.Response), len(c.Second.Response), 2+seal.Overhead)
	}
	if err := k.OpenCall(&c); err != nil || string(c.Request) != `{}` || len(c.Response) != 0 || len(c.Second.Response) != 0 {
		t.Errorf("OpenCall = %v, request %q, response %q, second response %q", err, c.Request, c.Response, c.Second.Response)
	}
	// A call without a second answer gets none.
	bare := store.Call{ID: "y", Request: []byte(`{}`)}
	if err := k.SealCall(&bare); err != nil || bare.Second != nil {
		t.Errorf("SealCall = %v, second %+v; want none", err, bare.Second)
	}
}

// A sealed payload is bound to its call and its field: copying ciphertext between
// records, or swapping two of a call's payloads, makes the call fail to open.
func TestSealedPayloadsCannotBeSwapped(t *testing.T) {
	k := twoKeys(t, "k1")
	a, b := sampleCall("01JAAA"), sampleCall("01JBBB")
	for _, c := range []*store.Call{&a, &b} {
		if err := k.SealCall(c); err != nil {
			t.Fatal(err)
		}
	}
	swappedFields := a
	swappedFields.Request, swappedFields.Response = a.Response, a.Request
	otherRequest := a
	otherRequest.Request = b.Request
	otherResponse := a
	otherResponse.Response = b.Response
	renamed := a
	renamed.ID = b.ID
	withSecond := func(c store.Call, body []byte) store.Call {
		sec := *c.Second
		sec.Response = body
		c.Second = &sec
		return c
	}
	responses := withSecond(a, a.Response)
	responses.Response = a.Second.Response
	for name, c := range map[string]store.Call{
		"request and response swapped":         swappedFields,
		"request of another call":              otherRequest,
		"response of another call":             otherResponse,
		"call id changed":                      renamed,
		"response and second response swapped": responses,
		"second response of another call":      withSecond(a, b.Second.Response),
		"request as second response":           withSecond(a, a.Request),
	} {
		before := c
		if err := k.OpenCall(&c); !errors.Is(err, seal.ErrDecrypt) {
			t.Errorf("%s: OpenCall = %v, want ErrDecrypt", name, err)
		}
		if !bytes.Equal(c.Request, before.Request) || !bytes.Equal(c.Response, before.Response) ||
			!bytes.Equal(c.Second.Response, before.Second.Response) || c.KeyID != before.KeyID {
			t.Errorf("%s: a failed OpenCall changed the call", name)
		}
	}
}

func TestOpenCallUnderUnconfiguredKeyNamesIt(t *testing.T) {
	c := sampleCall("01JAAA")
	if err := twoKeys(t, "k1").SealCall(&c); err != nil {
		t.Fatal(err)
	}
	only2, err := seal.NewKeyring(config.Encryption{Active: "k2", Keys: []config.EncryptionKey{{ID: "k2", Env: "K"}}},
		env(map[string]string{"K": key2B64}))
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]*seal.Keyring{"other keys": only2, "no keys": nil} {
		err := k.OpenCall(&c)
		if !errors.Is(err, seal.ErrUnknownKey) {
			t.Errorf("%s: OpenCall = %v, want ErrUnknownKey", name, err)
			continue
		}
		if !strings.Contains(err.Error(), `"k1"`) || !strings.Contains(err.Error(), "01JAAA") {
			t.Errorf("%s: error %q does not name the key and the call", name, err)
		}
	}
}

func TestGenerateKeyMakesUsableDistinctKeys(t *testing.T) {
	a, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two generated keys are equal")
	}
	raw, err := base64.StdEncoding.DecodeString(a)
	if err != nil || len(raw) != seal.KeySize {
		t.Fatalf("generated key decodes to %d bytes, %v; want 32", len(raw), err)
	}
	k, err := seal.NewKeyring(config.Encryption{Active: "g", Keys: []config.EncryptionKey{{ID: "g", Env: "G"}}},
		env(map[string]string{"G": a}))
	if err != nil {
		t.Fatal(err)
	}
	c := sampleCall("x")
	if err := k.SealCall(&c); err != nil {
		t.Fatal(err)
	}
}
