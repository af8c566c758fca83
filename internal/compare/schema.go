package compare

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema errors. A schema that does not compile gives an error wrapping
// ErrInvalidSchema (and ErrRemoteRef when it refers to a document outside itself); a
// value that does not validate gives one wrapping ErrSchemaMismatch.
var (
	ErrInvalidSchema  = errors.New("invalid JSON schema")
	ErrRemoteRef      = errors.New("schema refers to a document outside itself; remote references are never loaded")
	ErrSchemaMismatch = errors.New("value does not match the JSON schema")
)

// Defaults of SchemasOptions.
const (
	DefaultSchemaEntries = 1024
	DefaultSchemaBytes   = 8 << 20
)

// SchemasOptions bound a Schemas cache. The zero value is ready to use.
type SchemasOptions struct {
	// MaxEntries is the most schemas kept; the least recently used goes first.
	// 0 means DefaultSchemaEntries.
	MaxEntries int
	// MaxBytes is the most schema source, in bytes, kept over all entries; a schema
	// larger than this is compiled for each use and never kept. 0 means
	// DefaultSchemaBytes.
	MaxBytes int
}

// Schemas is a cache of compiled JSON schemas (tools' parameters, response_format's
// json_schema), keyed by the schema's bytes, so that scoring many calls of one tool set
// compiles each schema once. It is bounded in entries and in bytes (least recently
// used first out), so a stream of distinct schemas cannot grow it without end. A
// schema that fails to compile is kept too, with its error. Compiling never loads
// anything: a $ref to another document, remote or file, fails the schema with
// ErrRemoteRef. Schemas is safe for concurrent use; callers that ask for a schema being
// compiled wait for that one compilation.
//
// Schemas follow draft 2020-12 unless they name another with $schema (the drafts are
// built in, never fetched); "format" is an annotation, not asserted; "pattern" uses Go's
// regexp syntax (RE2), so a pattern with look-around makes the schema invalid.
type Schemas struct {
	maxEntries, maxBytes int
	compiles             atomic.Int64

	mu sync.Mutex
	// entries are keyed by a schema's bytes, formats by a response_format's
	// json_schema bytes (the schema wrapped with its name and strict flag), so that
	// the wrapper need not be decoded for each answer; both share one bound.
	entries, formats map[string]*list.Element // of *schemaEntry
	lru              list.List                // most recently used at the front
	bytes            int
}

type schemaEntry struct {
	key    string
	format bool          // in formats, not entries
	ready  chan struct{} // closed once sch or err is set
	sch    *jsonschema.Schema
	err    error
}

// NewSchemas returns an empty cache bounded by opts.
func NewSchemas(opts SchemasOptions) *Schemas {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultSchemaEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultSchemaBytes
	}
	return &Schemas{maxEntries: opts.MaxEntries, maxBytes: opts.MaxBytes,
		entries: map[string]*list.Element{}, formats: map[string]*list.Element{}}
}

// Validate checks v, a decoded JSON value (as encoding/json decodes into any), against
// schema. It returns nil when v is valid, an error wrapping ErrSchemaMismatch when it
// is not, and one wrapping ErrInvalidSchema when the schema does not compile.
func (s *Schemas) Validate(schema []byte, v any) error {
	sch, err := s.compiled(schema, false)
	if err != nil {
		return err
	}
	return validate(sch, v)
}

// validateFormat is Validate for the schema of a response_format's json_schema
// (jsonSchema is {"name": ..., "schema": ..., "strict": ...}). checked is false when it
// holds no schema.
func (s *Schemas) validateFormat(jsonSchema []byte, v any) (checked bool, err error) {
	sch, err := s.compiled(jsonSchema, true)
	if err != nil {
		return true, err
	}
	if sch == nil {
		return false, nil
	}
	return true, validate(sch, v)
}

func validate(sch *jsonschema.Schema, v any) error {
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("compare: %w: %w", ErrSchemaMismatch, err)
	}
	return nil
}

// Compiles returns the number of schemas compiled since the cache was made: a
// schema found in the cache adds nothing.
func (s *Schemas) Compiles() int64 { return s.compiles.Load() }

// Len returns the number of schemas held, the invalid ones included.
func (s *Schemas) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// compiled returns src compiled, from the cache or compiled now; format says src is a
// response_format's json_schema. A format without a schema gives nil, nil.
func (s *Schemas) compiled(src []byte, format bool) (*jsonschema.Schema, error) {
	if len(src) > s.maxBytes {
		return s.compile(src, format)
	}
	m := s.entries
	if format {
		m = s.formats
	}
	s.mu.Lock()
	if el, ok := m[string(src)]; ok {
		s.lru.MoveToFront(el)
		s.mu.Unlock()
		e := el.Value.(*schemaEntry)
		<-e.ready
		return e.sch, e.err
	}
	e := &schemaEntry{key: string(src), format: format, ready: make(chan struct{})}
	m[e.key] = s.lru.PushFront(e)
	s.bytes += len(e.key)
	for s.lru.Len() > s.maxEntries || s.bytes > s.maxBytes {
		old := s.lru.Remove(s.lru.Back()).(*schemaEntry)
		if old.format {
			delete(s.formats, old.key)
		} else {
			delete(s.entries, old.key)
		}
		s.bytes -= len(old.key)
	}
	s.mu.Unlock()
	defer close(e.ready)
	e.sch, e.err = s.compile(src, format)
	return e.sch, e.err
}

// schemaURL names the schema being compiled. It is hierarchical, so that a relative
// reference ("other.json") resolves to a document of its own, which is refused like any
// other; an opaque base (a URN) would resolve it to the schema itself.
const schemaURL = "downshift:///schema.json"

// compile compiles one schema, or the schema of a response_format's json_schema, with
// a fresh compiler (a Compiler is not safe for concurrent use, and keeps every
// document it has seen).
func (s *Schemas) compile(src []byte, format bool) (sch *jsonschema.Schema, err error) {
	s.compiles.Add(1)
	// The library is given untrusted schemas on the gateway's path: a panic in it must
	// make one schema invalid, not stop the process (or leave waiters blocked).
	defer func() {
		if r := recover(); r != nil {
			sch, err = nil, fmt.Errorf("compare: %w: compiler panicked: %v", ErrInvalidSchema, r)
		}
	}()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("compare: %w: not JSON: %w", ErrInvalidSchema, err)
	}
	if format {
		wrapper, ok := doc.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("compare: %w: response_format.json_schema is not an object", ErrInvalidSchema)
		}
		if doc, ok = wrapper["schema"]; !ok || doc == nil {
			return nil, nil // a format that names no schema constrains nothing
		}
	}
	ld := &refusingLoader{}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(ld)
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("compare: %w: %w", ErrInvalidSchema, err)
	}
	sch, err = c.Compile(schemaURL)
	switch {
	case ld.refused != "":
		return nil, fmt.Errorf("compare: %w: %w: %s", ErrInvalidSchema, ErrRemoteRef, ld.refused)
	case err != nil:
		return nil, fmt.Errorf("compare: %w: %w", ErrInvalidSchema, err)
	}
	return sch, nil
}

// refusingLoader loads no document: compiling a schema must never reach the network
// or the file system. It remembers the first URL it was asked for, for the error.
type refusingLoader struct{ refused string }

func (l *refusingLoader) Load(url string) (any, error) {
	if l.refused == "" {
		l.refused = url
	}
	return nil, ErrRemoteRef
}
