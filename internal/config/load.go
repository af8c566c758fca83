package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrUnknownKey marks a key in the file, or a DOWNSHIFT_* variable, that names no
// setting. Misspelt keys are errors rather than silently ignored.
var ErrUnknownKey = errors.New("unknown key")

// KeyError is one problem with one configuration key. Load and Validate return these,
// joined with errors.Join, so that every problem is reported at once.
type KeyError struct {
	// File is the configuration file, when the problem came from one.
	File string
	// Line is the line in File where the key is, or 0 when unknown.
	Line int
	// Key is the key's path: listen, store.dsn, backends[1].url, aliases["gpt-4o"].
	Key string
	// Err says what is wrong; ErrUnknownKey for keys that name no setting.
	Err error

	known []string // for unknown keys: the keys valid at that place, as a hint
}

func (e *KeyError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if errors.Is(e.Err, ErrUnknownKey) {
		fmt.Fprintf(&b, "unknown key %q", e.Key)
		if len(e.known) > 0 {
			fmt.Fprintf(&b, " (valid here: %s)", strings.Join(e.known, ", "))
		}
		return b.String()
	}
	b.WriteString(e.Key)
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *KeyError) Unwrap() error { return e.Err }

// Load reads the YAML file at path over Default(), applies DOWNSHIFT_* overrides from
// environ (KEY=value strings, as os.Environ returns them), fills per-entry defaults and
// validates the result. An empty path means defaults and environment only.
//
// Decoding is strict: a key the Config does not have, a value of the wrong type or a
// duplicated key is an error naming the key and its line. All problems are returned
// together, as *KeyError values joined with errors.Join.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	lines := map[string]int{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return Config{}, fmt.Errorf("parse config %s: %w", path, err)
		}
		d := decoder{lines: lines}
		if len(doc.Content) > 0 {
			d.decode(doc.Content[0], reflect.ValueOf(&cfg).Elem(), "")
		}
		if len(d.errs) > 0 {
			return Config{}, inFile(path, errors.Join(d.errs...))
		}
	}
	overridden, err := applyEnv(&cfg, environ)
	if err != nil {
		return Config{}, err
	}
	cfg.fillEntryDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, inFile(path, locate(err, lines, overridden))
	}
	return cfg, nil
}

// fillEntryDefaults gives every backend the default for each zero timeout and size, so
// that the Config shows the values in effect.
func (c *Config) fillEntryDefaults() {
	def := DefaultBackend()
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.ConnectTimeout == 0 {
			b.ConnectTimeout = def.ConnectTimeout
		}
		if b.ResponseTimeout == 0 {
			b.ResponseTimeout = def.ResponseTimeout
		}
		if b.MaxIdleConns == 0 {
			b.MaxIdleConns = def.MaxIdleConns
		}
	}
}

// inFile sets File on every *KeyError in err that has none.
func inFile(path string, err error) error {
	if path == "" {
		return err
	}
	for _, e := range keyErrors(err) {
		if e.File == "" {
			e.File = path
		}
	}
	return err
}

// locate says where each *KeyError in err came from: the environment variable that set
// the key, or else the line of the key in the file, or of the nearest enclosing key the
// file has (backends[0] for a missing backends[0].name).
func locate(err error, lines map[string]int, fromEnv map[string]string) error {
	for _, e := range keyErrors(err) {
		if name, ok := fromEnv[e.Key]; ok {
			e.Err = fmt.Errorf("%w (set by %s)", e.Err, name)
			continue
		}
		for key := e.Key; key != "" && e.Line == 0; key = parentKey(key) {
			e.Line = lines[key]
		}
	}
	return err
}

// parentKey returns the key that encloses key: store for store.dsn, backends[1] for
// backends[1].url, backends for backends[1], "" for a top-level key.
func parentKey(key string) string {
	return key[:max(0, strings.LastIndexAny(key, ".["))]
}

// keyErrors returns the *KeyError values in err, looking through errors.Join.
func keyErrors(err error) []*KeyError {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*KeyError
		for _, e := range joined.Unwrap() {
			out = append(out, keyErrors(e)...)
		}
		return out
	}
	var ke *KeyError
	if errors.As(err, &ke) {
		return []*KeyError{ke}
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// decoder writes a YAML node tree into a Go value by the values' koanf tags, collecting
// every error with the key path and line where it happened. It handles exactly the
// kinds Config uses: structs, slices, map[string]string, strings, integers, floats,
// booleans and durations.
type decoder struct {
	errs  []error
	lines map[string]int // key path -> line, for errors found later by Validate
}

func (d *decoder) fail(n *yaml.Node, key string, format string, args ...any) {
	d.errs = append(d.errs, &KeyError{Line: n.Line, Key: key, Err: fmt.Errorf(format, args...)})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if key != "" {
		d.lines[key] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default in place
	}
	switch {
	case v.Type() == durationType || isScalarKind(v.Kind()):
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a single value, got a %s", kindName(n))
			return
		}
		if err := setScalar(v, n.Value); err != nil {
			d.fail(n, key, "%v", err)
		}
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, key)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "want a list, got a %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", key, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
		d.decodeMap(n, v, key)
	default:
		panic(fmt.Sprintf("config: decoder cannot handle %s at %s", v.Type(), key))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "want a mapping of keys to values, got a %s", kindName(n))
		return
	}
	fields := fieldsByTag(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name := kn.Value
		sub := joinKey(key, name)
		if seen[name] {
			d.fail(kn, sub, "set twice in the same mapping")
			continue
		}
		seen[name] = true
		idx, ok := fields[name]
		if !ok {
			known := make([]string, 0, len(fields))
			for k := range fields {
				known = append(known, k)
			}
			slices.Sort(known)
			d.errs = append(d.errs, &KeyError{Line: kn.Line, Key: sub, Err: ErrUnknownKey, known: known})
			continue
		}
		d.decode(vn, v.Field(idx), sub)
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "want a mapping, got a %s", kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		sub := fmt.Sprintf("%s[%q]", key, kn.Value)
		if m.MapIndex(reflect.ValueOf(kn.Value)).IsValid() {
			d.fail(kn, sub, "set twice in the same mapping")
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(vn, elem, sub)
		m.SetMapIndex(reflect.ValueOf(kn.Value), elem)
	}
	v.Set(m)
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// fieldsByTag maps each koanf tag of struct type t to the field's index.
func fieldsByTag(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if tag := tagName(t.Field(i)); tag != "" {
			m[tag] = i
		}
	}
	return m
}

func tagName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func isScalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return fmt.Sprintf("value %q", n.Value)
	}
	return "node"
}

// setScalar parses s into v, the one place where text becomes a typed setting, for the
// file and the environment alike.
func setScalar(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want a number with a unit, e.g. 5s, 100ms)", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: setScalar cannot handle %s", v.Type()))
	}
	return nil
}
