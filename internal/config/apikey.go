package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrNoAPIKey means a backend names a key source that holds no key: an unset or empty
// environment variable, or an empty file.
var ErrNoAPIKey = errors.New("no API key")

// APIKey returns the backend's API key, read from the environment variable APIKeyEnv
// (through getenv; nil means os.Getenv) or from the file APIKeyFile, with surrounding
// whitespace trimmed. It returns "" and no error when the backend needs no key.
//
// Errors name the variable or the file, never the key: a key that is malformed is
// described, not quoted.
func (b Backend) APIKey(getenv func(string) string) (string, error) {
	return readAPIKey(fmt.Sprintf("backend %q", b.Name), b.APIKeyEnv, b.APIKeyFile, getenv)
}

// APIKey returns the trainer's API key, read as Backend.APIKey reads a backend's: from
// APIKeyEnv or APIKeyFile, "" when the trainer needs none, errors naming the source and
// never the key.
func (t Trainer) APIKey(getenv func(string) string) (string, error) {
	return readAPIKey(fmt.Sprintf("trainer %q", t.Name), t.APIKeyEnv, t.APIKeyFile, getenv)
}

// readAPIKey reads the key of owner (`backend "b"`) from the environment variable env or
// the file file.
func readAPIKey(owner, env, file string, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var key, source string
	switch {
	case env != "" && file != "":
		return "", fmt.Errorf("%s: set api_key_env or api_key_file, not both", owner)
	case env != "":
		source = "environment variable " + env
		key = strings.TrimSpace(getenv(env))
	case file != "":
		source = "api_key_file " + file
		data, err := os.ReadFile(file)
		if err != nil {
			// *fs.PathError carries the path and the cause, never the content.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("%s: read %s: %w", owner, source, err)
		}
		key = strings.TrimSpace(string(data))
	default:
		return "", nil
	}
	if key == "" {
		return "", fmt.Errorf("%s: %s: %w (unset or empty)", owner, source, ErrNoAPIKey)
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c == 0x7f {
			// It would go into an Authorization header, where net/http refuses it.
			return "", fmt.Errorf("%s: %s: the key contains whitespace or control characters", owner, source)
		}
	}
	return key, nil
}
