package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestBackendAPIKey(t *testing.T) {
	const secret = "sk-proj-abc123XYZ"
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content)
		return p
	}
	env := map[string]string{
		"KEY":        secret,
		"KEY_SPACED": "  " + secret + "\n",
		"KEY_EMPTY":  "",
		"KEY_BLANK":  " \t ",
		"KEY_INNER":  "sk-proj abc123",
	}
	getenv := func(name string) string { return env[name] }
	tests := []struct {
		name    string
		backend Backend
		want    string
		wantErr string   // substring; "" for success
		is      error    // errors.Is target, when set
		hidden  []string // must not appear in the error
	}{
		{name: "no key configured", backend: Backend{Name: "local"}, want: ""},
		{name: "env", backend: Backend{Name: "b", APIKeyEnv: "KEY"}, want: secret},
		{name: "env trimmed", backend: Backend{Name: "b", APIKeyEnv: "KEY_SPACED"}, want: secret},
		{
			name: "env unset", backend: Backend{Name: "b", APIKeyEnv: "KEY_MISSING"},
			wantErr: `backend "b": environment variable KEY_MISSING: no API key`, is: ErrNoAPIKey,
		},
		{
			name: "env empty", backend: Backend{Name: "b", APIKeyEnv: "KEY_EMPTY"},
			wantErr: "environment variable KEY_EMPTY", is: ErrNoAPIKey,
		},
		{
			name: "env blank", backend: Backend{Name: "b", APIKeyEnv: "KEY_BLANK"},
			wantErr: "environment variable KEY_BLANK", is: ErrNoAPIKey,
		},
		{
			name:    "key with inner whitespace is described, not quoted",
			backend: Backend{Name: "b", APIKeyEnv: "KEY_INNER"},
			wantErr: "environment variable KEY_INNER: the key contains whitespace",
			hidden:  []string{"sk-proj", "abc123"},
		},
		{name: "file", backend: Backend{Name: "b", APIKeyFile: file("plain", secret)}, want: secret},
		{name: "file trimmed", backend: Backend{Name: "b", APIKeyFile: file("newline", secret+"\n\n")}, want: secret},
		{
			name: "file empty", backend: Backend{Name: "b", APIKeyFile: file("empty", "\n")},
			wantErr: "api_key_file " + filepath.Join(dir, "empty"), is: ErrNoAPIKey,
		},
		{
			name: "file missing", backend: Backend{Name: "b", APIKeyFile: filepath.Join(dir, "absent")},
			wantErr: "read api_key_file " + filepath.Join(dir, "absent"), is: fs.ErrNotExist,
		},
		{
			name:    "file with two lines is refused without quoting it",
			backend: Backend{Name: "b", APIKeyFile: file("two", "line-one-secret\nline-two-secret\n")},
			wantErr: "the key contains whitespace", hidden: []string{"line-one-secret", "line-two-secret"},
		},
		{
			name: "both sources", backend: Backend{Name: "b", APIKeyEnv: "KEY", APIKeyFile: file("both", secret)},
			wantErr: "not both",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.backend.APIKey(getenv)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("APIKey() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("APIKey() error = %v, want it to contain %q", err, tt.wantErr)
			}
			if got != "" {
				t.Errorf("APIKey() returned a key %q along with an error", got)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			for _, h := range append(tt.hidden, secret) {
				if strings.Contains(err.Error(), h) {
					t.Errorf("error %q reveals %q", err, h)
				}
			}
		})
	}
}

func TestBackendAPIKeyDefaultsToProcessEnvironment(t *testing.T) {
	t.Setenv("DOWNSHIFT_TEST_API_KEY", "from-process")
	got, err := Backend{Name: "b", APIKeyEnv: "DOWNSHIFT_TEST_API_KEY"}.APIKey(nil)
	if err != nil || got != "from-process" {
		t.Errorf("APIKey(nil) = %q, %v", got, err)
	}
}

func TestTrainerAPIKeyNamesTheTrainerNotTheKey(t *testing.T) {
	const secret = "sk-proj-trainer123"
	key := filepath.Join(t.TempDir(), "key")
	writeFile(t, key, secret+"\n")
	env := map[string]string{"FT_KEY": secret, "FT_BAD": "sk-proj trainer123"}
	getenv := func(name string) string { return env[name] }

	if got, err := (Trainer{Name: "ft", APIKeyEnv: "FT_KEY"}).APIKey(getenv); err != nil || got != secret {
		t.Errorf("env: APIKey = %q, %v; want the key", got, err)
	}
	if got, err := (Trainer{Name: "ft", APIKeyFile: key}).APIKey(getenv); err != nil || got != secret {
		t.Errorf("file: APIKey = %q, %v; want the key", got, err)
	}
	if got, err := (Trainer{Name: "gpu", Kind: TrainerPEFT}).APIKey(getenv); err != nil || got != "" {
		t.Errorf("no key configured: APIKey = %q, %v; want none", got, err)
	}
	_, err := Trainer{Name: "ft", APIKeyEnv: "FT_MISSING"}.APIKey(getenv)
	if !errors.Is(err, ErrNoAPIKey) || !strings.Contains(err.Error(), `trainer "ft": environment variable FT_MISSING`) {
		t.Errorf("missing: err = %v, want ErrNoAPIKey naming the trainer and the variable", err)
	}
	_, err = Trainer{Name: "ft", APIKeyEnv: "FT_BAD"}.APIKey(getenv)
	if err == nil || strings.Contains(err.Error(), "trainer123") {
		t.Errorf("malformed: err = %v, want an error that does not quote the key", err)
	}
}
