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
	if getenv == nil {
		getenv = os.Getenv
	}
	var key, source string
	switch {
	case b.APIKeyEnv != "" && b.APIKeyFile != "":
		return "", fmt.Errorf("backend %q: set api_key_env or api_key_file, not both", b.Name)
	case b.APIKeyEnv != "":
		source = "environment variable " + b.APIKeyEnv
		key = strings.TrimSpace(getenv(b.APIKeyEnv))
	case b.APIKeyFile != "":
		source = "api_key_file " + b.APIKeyFile
		data, err := os.ReadFile(b.APIKeyFile)
		if err != nil {
			// *fs.PathError carries the path and the cause, never the content.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("backend %q: read %s: %w", b.Name, source, err)
		}
		key = strings.TrimSpace(string(data))
	default:
		return "", nil
	}
	if key == "" {
		return "", fmt.Errorf("backend %q: %s: %w (unset or empty)", b.Name, source, ErrNoAPIKey)
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c == 0x7f {
			// It would go into an Authorization header, where net/http refuses it.
			return "", fmt.Errorf("backend %q: %s: the key contains whitespace or control characters", b.Name, source)
		}
	}
	return key, nil
}
