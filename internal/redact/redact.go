// Package redact finds personal data and secrets in recorded chat-completion calls and
// replaces them with typed placeholders before anything is written to the store.
//
// It detects e-mail addresses, phone numbers, payment cards (Luhn and issuer prefix
// checked), IBANs (mod-97 checked), US social security numbers, IPv4 and IPv6
// addresses, URLs carrying credentials, and secrets (API keys, tokens, JWTs, private
// keys, password assignments: gitleaks' default rules plus a few of our own), along
// with the operator's own patterns and deny-lists. Placeholders are numbered per call
// (<EMAIL_1>, <EMAIL_2>) or, with a pseudonym key, keyed across calls
// (<EMAIL_3f9a2c1b>), so that later clustering still sees "the same customer".
//
// It runs in the recorder's writer goroutine, off the request path, and is built for
// that volume: hand-written scanners instead of regular expressions for the built-in
// types, gitleaks' slow rules run only on the windows that can match, and texts that
// repeat from call to call (system prompts, conversation prefixes) are scanned once.
//
// It is not a guarantee: it finds structured identifiers, not names, addresses or free
// text about a person (deny-lists cover the names an operator knows of), and it is no
// substitute for encrypting the store.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Type names a kind of detected value. It is the word inside a placeholder.
type Type string

// Built-in types. User rules and deny-lists add their own (upper-case letters, digits
// and underscores, starting with a letter).
const (
	EMAIL          Type = "EMAIL"
	PHONE          Type = "PHONE"
	CARD           Type = "CARD"
	IBAN           Type = "IBAN"
	SSN            Type = "SSN"
	IPV4           Type = "IPV4"
	IPV6           Type = "IPV6"
	URLCredentials Type = "URL_CREDENTIALS"
	SECRET         Type = "SECRET"
)

// BuiltinTypes lists the built-in types in a fixed order.
var BuiltinTypes = []Type{EMAIL, PHONE, CARD, IBAN, SSN, IPV4, IPV6, URLCredentials, SECRET}

// Rule is an operator's pattern: every match of Pattern (RE2 syntax, as package regexp
// takes it) is replaced by a placeholder of Type. When Pattern has a capture group, only
// the first non-empty group is replaced.
type Rule struct {
	Type    Type
	Pattern string
}

// Deny is an operator's deny-list: each value (a customer's name, an account id) is
// replaced wherever it appears as a whole word, matched without regard to case.
// Case folding is ASCII's, plus the value's own lower- and upper-case forms.
type Deny struct {
	Type   Type
	Values []string
}

// Options configures a Redactor. The zero value detects every built-in type, with
// gitleaks, and numbers placeholders per call.
type Options struct {
	Rules []Rule
	Deny  []Deny
	// PseudonymKey, when set, turns placeholders into keyed pseudonyms that are the
	// same across calls: the first 8 hex digits of HMAC-SHA256(key, type + normalised
	// value). Keep the key secret: with it, a guessed value can be confirmed.
	PseudonymKey []byte
	// Disable lists built-in types not to detect.
	Disable []Type
	// NoGitleaks leaves out gitleaks' rules; our own secret rules (common provider
	// keys, JWTs, private keys, password assignments) still run.
	NoGitleaks bool
	// CacheBytes bounds the memory spent remembering what was found in long texts that
	// repeat across calls (system prompts, earlier turns of a conversation). 0 means
	// 8 MiB; a negative value turns the cache off.
	CacheBytes int
}

// Redactor finds and replaces sensitive values. It is safe for concurrent use; build
// one and share it, since building gitleaks' rules takes tens of milliseconds.
type Redactor struct {
	enabled  [numBuiltin]bool
	secrets  *secretScanner // nil when SECRET is disabled
	rules    []userRule
	deny     *denyList // nil without deny values
	key      []byte
	cache    *spanCache // nil when off
	hmacPool sync.Pool
}

type userRule struct {
	typ Type
	re  *regexp.Regexp
	// prefix is the pattern's literal prefix, used to skip texts that cannot match.
	prefix string
}

var typeName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// ErrOptions is wrapped by every error New returns for invalid options.
var ErrOptions = errors.New("redact: invalid options")

// New builds a Redactor.
func New(opts Options) (*Redactor, error) {
	r := &Redactor{}
	for i := range r.enabled {
		r.enabled[i] = true
	}
	for _, t := range opts.Disable {
		i := builtinIndex(t)
		if i < 0 {
			return nil, fmt.Errorf("%w: Disable: %q is not a built-in type", ErrOptions, t)
		}
		r.enabled[i] = false
	}
	if r.enabled[builtinIndex(SECRET)] {
		s, err := newSecretScanner(!opts.NoGitleaks)
		if err != nil {
			return nil, err
		}
		r.secrets = s
	}
	for i, ru := range opts.Rules {
		if !typeName.MatchString(string(ru.Type)) {
			return nil, fmt.Errorf("%w: Rules[%d].Type %q: want upper-case letters, digits and _", ErrOptions, i, ru.Type)
		}
		re, err := regexp.Compile(ru.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%w: Rules[%d].Pattern: %v", ErrOptions, i, err)
		}
		prefix, _ := re.LiteralPrefix()
		r.rules = append(r.rules, userRule{typ: ru.Type, re: re, prefix: prefix})
	}
	for i, d := range opts.Deny {
		if !typeName.MatchString(string(d.Type)) {
			return nil, fmt.Errorf("%w: Deny[%d].Type %q: want upper-case letters, digits and _", ErrOptions, i, d.Type)
		}
	}
	r.deny = newDenyList(opts.Deny)
	if len(opts.PseudonymKey) > 0 {
		r.key = slices.Clone(opts.PseudonymKey)
		r.hmacPool.New = func() any { return hmac.New(sha256.New, r.key) }
	}
	switch {
	case opts.CacheBytes == 0:
		r.cache = newSpanCache(8 << 20)
	case opts.CacheBytes > 0:
		r.cache = newSpanCache(opts.CacheBytes)
	}
	return r, nil
}

// State carries placeholder numbering and counts across the texts of one call, so
// that the same value gets the same placeholder in the request and the response. The
// zero value is ready to use; a State is not safe for concurrent use.
type State struct {
	ids      map[valueKey]string
	next     map[Type]int
	counts   map[Type]int
	distinct map[Type]int
	// values keeps every detected value as it appeared, for sweeping other fields
	// of the same call.
	values []string
	// record, when set, sees every replaced value (tests use it).
	record func(t Type, value string)
}

type valueKey struct {
	t    Type
	norm string
}

// Summary says how many values of each type a call held, never the values. It is
// meant to be stored with the record.
type Summary struct {
	// Counts is the number of replaced occurrences per type.
	Counts map[Type]int `json:"counts,omitempty"`
	// Distinct is the number of distinct values per type.
	Distinct map[Type]int `json:"distinct,omitempty"`
}

// Total returns the number of replaced occurrences of all types.
func (s Summary) Total() int {
	n := 0
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// ByType returns Counts keyed by type name, the shape store.Call.Redactions takes;
// nil when nothing was replaced.
func (s Summary) ByType() map[string]int {
	if len(s.Counts) == 0 {
		return nil
	}
	out := make(map[string]int, len(s.Counts))
	for t, n := range s.Counts {
		out[string(t)] = n
	}
	return out
}

// Summary returns what the state has counted so far.
func (st *State) Summary() Summary {
	return Summary{Counts: maps0(st.counts), Distinct: maps0(st.distinct)}
}

func maps0(m map[Type]int) map[Type]int {
	if len(m) == 0 {
		return nil
	}
	out := make(map[Type]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// placeholder returns the placeholder for a value, numbering it on first sight.
func (r *Redactor) placeholder(st *State, t Type, raw string) string {
	k := valueKey{t, normalise(t, raw)}
	if st.counts == nil {
		st.ids = make(map[valueKey]string)
		st.next = make(map[Type]int)
		st.counts = make(map[Type]int)
		st.distinct = make(map[Type]int)
	}
	st.counts[t]++
	if st.record != nil {
		st.record(t, raw)
	}
	if p, ok := st.ids[k]; ok {
		if !slices.Contains(st.values, raw) {
			st.values = append(st.values, raw)
		}
		return p
	}
	st.distinct[t]++
	st.values = append(st.values, raw)
	var p string
	if r.key != nil {
		h := r.hmacPool.Get().(hash.Hash)
		h.Reset()
		h.Write([]byte(t))
		h.Write([]byte{0})
		h.Write([]byte(k.norm))
		var buf [sha256.Size]byte
		sum := h.Sum(buf[:0])
		r.hmacPool.Put(h)
		p = "<" + string(t) + "_" + hex.EncodeToString(sum[:4]) + ">"
	} else {
		st.next[t]++
		p = "<" + string(t) + "_" + strconv.Itoa(st.next[t]) + ">"
	}
	st.ids[k] = p
	return p
}

// normalise returns the form of a value that decides whether two occurrences are the
// same value: case-folded e-mails and deny-list values, digits only for numbers,
// upper-case without spaces for IBANs, the canonical form of IPv6 addresses.
func normalise(t Type, v string) string {
	switch t {
	case EMAIL:
		return strings.ToLower(v)
	case PHONE, CARD, SSN:
		return digitsOnly(v)
	case IBAN:
		return strings.ToUpper(strings.ReplaceAll(v, " ", ""))
	case IPV6:
		return canonicalIPv6(v)
	case IPV4, URLCredentials, SECRET:
		return v
	}
	// User rules and deny-lists: deny values match without regard to case, so key them
	// the same way.
	return strings.ToLower(v)
}

func digitsOnly(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// RedactText returns s with every detected value replaced by its placeholder. Values
// are numbered in st, which may be nil for a text on its own.
func (r *Redactor) RedactText(s string, st *State) string {
	if st == nil {
		st = &State{}
	}
	spans := r.findText(s)
	return r.apply(s, spans, st)
}

// apply replaces spans (sorted, not overlapping) in s.
func (r *Redactor) apply(s string, spans []span, st *State) string {
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(r.placeholder(st, sp.typ, s[sp.start:sp.end]))
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}
