package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// EnvPrefix starts the name of every environment variable that overrides a setting.
const EnvPrefix = "DOWNSHIFT_"

// envVar is one setting that an environment variable may override.
type envVar struct {
	key   string // store.dsn
	index []int  // field index path from Config, for reflect.Value.FieldByIndex
}

// EnvVars returns the environment variables that override settings, mapped to the keys
// they set: DOWNSHIFT_STORE_DSN -> store.dsn. Only single-valued keys outside lists and
// maps can be overridden; backends, models and aliases come from the file.
func EnvVars() map[string]string {
	vars := envVars()
	out := make(map[string]string, len(vars))
	for name, v := range vars {
		out[name] = v.key
	}
	return out
}

// envVars derives the overridable settings from Config's koanf tags, so that
// DOWNSHIFT_RECORD_QUEUE_SIZE means record.queue_size without any guessing about which
// underscores separate keys.
func envVars() map[string]envVar {
	out := map[string]envVar{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := tagName(f)
			if tag == "" {
				continue
			}
			key := joinKey(prefix, tag)
			idx := append(slices.Clone(index), i)
			switch {
			case f.Type == durationType || isScalarKind(f.Type.Kind()):
				name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
				if prev, dup := out[name]; dup {
					// Two keys flattening to one name is a mistake in this package's
					// tags; TestEnvVarsAreUnambiguous keeps it from shipping.
					panic(fmt.Sprintf("config: %s would set both %s and %s", name, prev.key, key))
				}
				out[name] = envVar{key: key, index: idx}
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key, idx)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// applyEnv sets each setting named by a DOWNSHIFT_* variable in environ, and returns
// the keys it set, mapped to the variables that set them. An empty value counts as unset. A later KEY=value in environ wins
// over an earlier one. Variables with the prefix that name no setting are left alone,
// because other parts of downshift (and its tests) read DOWNSHIFT_* variables of their
// own, such as DOWNSHIFT_DATA.
func applyEnv(cfg *Config, environ []string) (map[string]string, error) {
	vars := envVars()
	values := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if _, known := vars[name]; known {
			values[name] = value
		}
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)

	keys := map[string]string{}
	var errs []error
	root := reflect.ValueOf(cfg).Elem()
	for _, name := range names {
		value := strings.TrimSpace(values[name])
		if value == "" {
			continue
		}
		v := vars[name]
		if err := setScalar(root.FieldByIndex(v.index), value); err != nil {
			errs = append(errs, &KeyError{Key: v.key, Err: fmt.Errorf("from %s: %w", name, err)})
			continue
		}
		keys[v.key] = name
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}
