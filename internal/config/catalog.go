package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
)

// CatalogEntry is a model added to the catalog at run time (`downshift models add`),
// as the store keeps it: the JSON of a CatalogEntry is a store.CatalogModel's Spec.
// JSON names are the configuration file's keys.
//
// Model.Backend names a configured backend, or the Backend the entry carries: a model
// added with its own URL brings its backend along (name, URL, and where its key is:
// api_key_env or api_key_file, never the key itself).
type CatalogEntry struct {
	Model   Model    `json:"model"`
	Backend *Backend `json:"backend,omitempty"`
}

// ParseCatalogEntry decodes a CatalogEntry strictly: a key it does not know is an
// error, as in the configuration file.
func ParseCatalogEntry(spec []byte) (CatalogEntry, error) {
	var e CatalogEntry
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return CatalogEntry{}, fmt.Errorf("catalog entry: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return CatalogEntry{}, errors.New("catalog entry: data after the JSON object")
	}
	return e, nil
}

// Spec returns the entry as the JSON a store keeps.
func (e CatalogEntry) Spec() (json.RawMessage, error) {
	return json.Marshal(e)
}

// WithCatalog returns c with the models added at run time, and the backends they
// carry, appended after the configured ones, and validated as a whole. A runtime model
// may not take the name of a configured model or alias, and one without a backend of
// its own must name a configured backend (so that removing a runtime model never
// strands another). Errors about an entry name the runtime model; all problems are
// returned together.
//
// c is not changed. Entry defaults (backend timeouts) are filled in as Load fills
// them for the file.
func (c Config) WithCatalog(entries []CatalogEntry) (Config, error) {
	out := c
	out.Models = slices.Clone(c.Models)
	out.Backends = slices.Clone(c.Backends)
	var errs []error
	// modelOf and backendOf map the index of each runtime model and backend in out to
	// the runtime model's name, for errors.
	modelOf := map[int]string{}
	backendOf := map[int]string{}
	for _, e := range entries {
		m := e.Model
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("runtime model %q: "+format, append([]any{m.Name}, args...)...))
		}
		if _, ok := c.ModelByName(m.Name); ok && m.Name != "" {
			fail("has the name of a configured model")
			continue
		}
		if _, ok := c.Aliases[m.Name]; ok {
			fail("has the name of a configured alias")
			continue
		}
		if e.Backend != nil {
			b := *e.Backend
			switch {
			case b.Name == "":
				fail("its backend has no name")
				continue
			case m.Backend != b.Name:
				fail("names backend %q but carries backend %q", m.Backend, b.Name)
				continue
			}
			if _, ok := c.BackendByName(b.Name); ok {
				fail("carries backend %q, which has the name of a configured backend", b.Name)
				continue
			}
			backendOf[len(out.Backends)] = m.Name
			out.Backends = append(out.Backends, b)
		} else if _, ok := c.BackendByName(m.Backend); !ok && m.Backend != "" {
			fail("unknown backend %q: name a configured backend, or give the model its own URL", m.Backend)
			continue
		}
		modelOf[len(out.Models)] = m.Name
		out.Models = append(out.Models, m)
	}
	out.fillEntryDefaults()
	if err := out.Validate(); err != nil {
		for _, ke := range keyErrors(err) {
			errs = append(errs, renameEntryKey(ke, modelOf, backendOf))
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return out, nil
}

var indexedKey = regexp.MustCompile(`^(models|backends)\[(\d+)\]\.?`)

// renameEntryKey says which runtime model a validation error is about, when it is
// about one: models[3].price.gpu_hour_usd becomes runtime model "qwen": price.gpu_hour_usd.
// Errors about the configuration itself are returned as they are.
func renameEntryKey(ke *KeyError, modelOf, backendOf map[int]string) error {
	sub := indexedKey.FindStringSubmatch(ke.Key)
	if sub == nil {
		return ke
	}
	i, _ := strconv.Atoi(sub[2])
	owners, prefix := modelOf, ""
	if sub[1] == "backends" {
		owners, prefix = backendOf, "backend"
	}
	name, ok := owners[i]
	if !ok {
		return ke
	}
	rest := ke.Key[len(sub[0]):]
	switch {
	case prefix != "" && rest != "":
		rest = prefix + "." + rest
	case prefix != "":
		rest = prefix
	}
	if rest == "" {
		return fmt.Errorf("runtime model %q: %w", name, ke.Err)
	}
	return fmt.Errorf("runtime model %q: %s: %w", name, rest, ke.Err)
}
