package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name    string
		file    string // "" for no file
		environ []string
		check   func(Config) bool
		wantErr string // "" for success
	}{
		{
			name:    "listen",
			environ: []string{"DOWNSHIFT_LISTEN=0.0.0.0:9999"},
			check:   func(c Config) bool { return c.Listen == "0.0.0.0:9999" },
		},
		{
			name:    "nested key with underscores in its name",
			environ: []string{"DOWNSHIFT_RECORD_QUEUE_SIZE=42", "DOWNSHIFT_RECORD_BATCH_SIZE=7"},
			check:   func(c Config) bool { return c.Record.QueueSize == 42 && c.Record.BatchSize == 7 },
		},
		{
			name:    "store dsn over the file's",
			file:    "testdata/good/full.yaml",
			environ: []string{"DOWNSHIFT_STORE_DSN=postgres://other@db2/downshift"},
			check: func(c Config) bool {
				return c.Store.DSN == "postgres://other@db2/downshift" && c.Store.Driver == "postgres"
			},
		},
		{
			name:    "durations and log level",
			environ: []string{"DOWNSHIFT_SHUTDOWN_TIMEOUT=5s", "DOWNSHIFT_RECORD_FLUSH_INTERVAL=20ms", "DOWNSHIFT_LOG_LEVEL=debug"},
			check: func(c Config) bool {
				return c.ShutdownTimeout == 5*time.Second && c.Record.FlushInterval == 20*time.Millisecond &&
					c.Log.Level == "debug"
			},
		},
		{
			name:    "later assignment wins",
			environ: []string{"DOWNSHIFT_LOG_FORMAT=text", "DOWNSHIFT_LOG_FORMAT=json"},
			check:   func(c Config) bool { return c.Log.Format == "json" },
		},
		{
			name:    "empty value leaves the setting alone",
			file:    "testdata/good/full.yaml",
			environ: []string{"DOWNSHIFT_LISTEN=", "DOWNSHIFT_MAX_BODY_BYTES=  "},
			check:   func(c Config) bool { return c.Listen == "0.0.0.0:9090" && c.MaxBodyBytes == 1<<20 },
		},
		{
			name:    "unrelated and foreign variables are ignored",
			environ: []string{"DOWNSHIFT_DATA=/data", "LISTEN=x", "downshift_listen=y", "NOEQUALS"},
			check:   func(c Config) bool { return reflect.DeepEqual(c, Default()) },
		},
		{
			name:    "unparseable integer names variable and key",
			environ: []string{"DOWNSHIFT_RECORD_QUEUE_SIZE=lots"},
			wantErr: `record.queue_size: from DOWNSHIFT_RECORD_QUEUE_SIZE: invalid integer "lots"`,
		},
		{
			name:    "unparseable duration",
			environ: []string{"DOWNSHIFT_RECORD_BLOCK_TIMEOUT=50"},
			wantErr: `record.block_timeout: from DOWNSHIFT_RECORD_BLOCK_TIMEOUT: invalid duration "50"`,
		},
		{
			name:    "overridden value is validated, without the file's line",
			file:    "testdata/good/full.yaml",
			environ: []string{"DOWNSHIFT_LOG_LEVEL=verbose"},
			wantErr: `testdata/good/full.yaml: log.level: must be "debug", "info", "warn" or "error", not "verbose" (set by DOWNSHIFT_LOG_LEVEL)`,
		},
		{
			name:    "overridden value is validated without a file",
			environ: []string{"DOWNSHIFT_STORE_DRIVER=mysql"},
			wantErr: `store.driver: must be "sqlite" or "postgres", not "mysql"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(tt.file, tt.environ)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("override not applied as expected: %+v", cfg)
			}
		})
	}
}

func TestEnvVarsAreDerivedFromKeys(t *testing.T) {
	vars := EnvVars() // panics if two keys flatten to the same name
	want := map[string]string{
		"DOWNSHIFT_LISTEN":                     "listen",
		"DOWNSHIFT_MAX_BODY_BYTES":             "max_body_bytes",
		"DOWNSHIFT_SHUTDOWN_TIMEOUT":           "shutdown_timeout",
		"DOWNSHIFT_STORE_DRIVER":               "store.driver",
		"DOWNSHIFT_STORE_DSN":                  "store.dsn",
		"DOWNSHIFT_RECORD_QUEUE_SIZE":          "record.queue_size",
		"DOWNSHIFT_SHIFT_REFRESH_INTERVAL":     "shift.refresh_interval",
		"DOWNSHIFT_SHIFT_SECOND_CONCURRENCY":   "shift.second_concurrency",
		"DOWNSHIFT_SHIFT_SECOND_TIMEOUT":       "shift.second_timeout",
		"DOWNSHIFT_UI_SECURE_COOKIES":          "ui.secure_cookies",
		"DOWNSHIFT_RECORD_BATCH_SIZE":          "record.batch_size",
		"DOWNSHIFT_RECORD_FLUSH_INTERVAL":      "record.flush_interval",
		"DOWNSHIFT_RECORD_OVERFLOW":            "record.overflow",
		"DOWNSHIFT_RECORD_BLOCK_TIMEOUT":       "record.block_timeout",
		"DOWNSHIFT_LOG_LEVEL":                  "log.level",
		"DOWNSHIFT_LOG_FORMAT":                 "log.format",
		"DOWNSHIFT_PRIVACY_REDACT":             "privacy.redact",
		"DOWNSHIFT_PRIVACY_PSEUDONYM_KEY_FILE": "privacy.pseudonym_key_file",
		"DOWNSHIFT_PRIVACY_ENCRYPTION_ACTIVE":  "privacy.encryption.active",
		"DOWNSHIFT_AUTH_OPEN":                  "auth.open",
		"DOWNSHIFT_AUTH_REFRESH_INTERVAL":      "auth.refresh_interval",
	}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("EnvVars() = %v\nwant %v", vars, want)
	}
}

func TestEnvErrorsAreKeyErrors(t *testing.T) {
	_, err := Load("", []string{"DOWNSHIFT_MAX_BODY_BYTES=big", "DOWNSHIFT_RECORD_QUEUE_SIZE=-"})
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("error %v is not a *KeyError", err)
	}
	if n := len(keyErrors(err)); n != 2 {
		t.Errorf("got %d errors, want both bad variables reported: %v", n, err)
	}
}
