package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDefaultHasDocumentedValues(t *testing.T) {
	want := Config{
		Listen:          "127.0.0.1:8080",
		MaxBodyBytes:    8 * 1024 * 1024,
		ShutdownTimeout: 30 * time.Second,
		Store:           Store{Driver: "sqlite", DSN: "downshift.db"},
		Record: Record{
			QueueSize: 10000, BatchSize: 256, FlushInterval: 100 * time.Millisecond,
			Overflow: "block", BlockTimeout: 50 * time.Millisecond,
		},
		Log:     Log{Level: "info", Format: "text"},
		Privacy: Privacy{Redact: true},
		Auth:    Auth{RefreshInterval: 5 * time.Second},
		Shift:   Shift{RefreshInterval: 5 * time.Second, SecondConcurrency: 64, SecondTimeout: 60 * time.Second},
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v\nwant %+v", got, want)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestLoadWithoutFileUsesDefaults(t *testing.T) {
	got, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("Load(\"\", nil) = %+v, want Default()", got)
	}
}

func TestGoodConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good configs: %v", err)
	}
	for _, f := range append(files, exampleConfig) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f, nil); err != nil {
				t.Errorf("Load(%s) = %v", f, err)
			}
		})
	}
}

const exampleConfig = "../../deploy/downshift.example.yaml"

func TestMinimalConfigGetsPerEntryDefaults(t *testing.T) {
	got, err := Load("testdata/good/minimal.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	b := DefaultBackend()
	b.Name, b.URL = "local", "http://127.0.0.1:8000/v1"
	want.Backends = []Backend{b}
	want.Models = []Model{{Name: "qwen2.5-7b-instruct", Backend: "local", Role: "candidate"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if up := got.Models[0].Upstream(); up != "qwen2.5-7b-instruct" {
		t.Errorf("Upstream() = %q, want the model's name", up)
	}
}

func TestFullConfigDecodesEveryValue(t *testing.T) {
	got, err := Load("testdata/good/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Listen:          "0.0.0.0:9090",
		MaxBodyBytes:    1 << 20,
		ShutdownTimeout: 10 * time.Second,
		Store:           Store{Driver: "postgres", DSN: "postgres://downshift@db.internal:5432/downshift?sslmode=verify-full"},
		Record: Record{
			QueueSize: 5000, BatchSize: 128, FlushInterval: 250 * time.Millisecond,
			Overflow: "drop", BlockTimeout: 0,
		},
		Log: Log{Level: "debug", Format: "json"},
		Backends: []Backend{
			{
				Name: "remote", URL: "https://llm.example.com/v1", APIKeyEnv: "LLM_API_KEY",
				Headers:        map[string]string{"OpenAI-Organization": "org-example"},
				ConnectTimeout: 2 * time.Second, ResponseTimeout: 90 * time.Second, MaxIdleConns: 64, Transport: "auto",
			},
			{
				Name: "local", URL: "http://127.0.0.1:8000/v1", APIKeyFile: "/run/secrets/vllm.key",
				ConnectTimeout: 5 * time.Second, ResponseTimeout: 120 * time.Second, MaxIdleConns: 256,
			},
		},
		Models: []Model{
			{
				Name: "meta/llama-3.3-70b-instruct", Backend: "remote", Role: "reference", ParamsB: 70,
				ContextTokens: 131072, Licence: "Llama 3.3 Community", MemoryGB: 160,
				Price:     Price{InputPerMTok: 0.88, OutputPerMTok: 0.88, CachedInputPerMTok: 0.44},
				Fallbacks: []string{"meta/llama-3.1-8b-instruct"},
			},
			{
				Name: "meta/llama-3.1-8b-instruct", Backend: "local", UpstreamName: "llama-8b",
				Role: "candidate", ParamsB: 8, ContextTokens: 131072, Licence: "Llama 3.1 Community",
				MemoryGB: 24.5, Price: Price{GPUHourUSD: 2.5, ThroughputTPS: 2000},
			},
		},
		Privacy: Privacy{
			Redact:           false,
			PseudonymKeyFile: "/run/secrets/pseudonym.key",
			Rules:            []RedactRule{{Type: "TICKET_ID", Pattern: "TCK-[0-9]{6}"}},
			Deny:             []DenyList{{Type: "CUSTOMER", Values: []string{"Acme Corp"}, File: "/etc/downshift/customers.txt"}},
			Encryption: Encryption{Active: "k2", Keys: []EncryptionKey{
				{ID: "k1", File: "/run/secrets/downshift-k1.key"}, {ID: "k2", Env: "DOWNSHIFT_KEY_K2"}}},
		},
		Auth: Auth{Open: true, RefreshInterval: 2 * time.Second},
		Shift: Shift{RefreshInterval: 2 * time.Second, SecondConcurrency: 16, SecondTimeout: 20 * time.Second,
			RefusalPhrases: []string{"i can't help with that", "as an ai language model"}},
		UI: UI{SecureCookies: true},
		Aliases: map[string]string{
			"gpt-4o":       "meta/llama-3.3-70b-instruct",
			"gpt-4.1-mini": "meta/llama-3.1-8b-instruct",
		},
		Tune: Tune{Trainers: []Trainer{
			{
				Name: "gpu-box", Kind: "peft", Python: "/opt/venv/bin/python",
				Script: "/opt/downshift/trainers/peft/train.py", PollInterval: 5 * time.Second,
				Hyperparameters: Hyperparameters{Rank: 8, Alpha: 16, Dropout: 0.1, Epochs: 2,
					LearningRate: 0.0001, BatchSize: 4, MaxLength: 4096},
				ServeBackend: "local", LoadAdapter: true,
			},
			{
				Name: "openai", Kind: "openai-ft", BaseURL: "https://api.openai.com/v1", APIKeyEnv: "OPENAI_API_KEY",
				Hyperparameters: Hyperparameters{Epochs: 4, BatchSize: 16, LearningRateMultiplier: 1.8},
			},
			{
				Name: "nemo", Kind: "nemo", BaseURL: "http://nemo.internal:8080", APIKeyFile: "/run/secrets/nemo.key",
				PollInterval:    time.Minute,
				Hyperparameters: Hyperparameters{Rank: 32, Alpha: 64, Epochs: 5, LearningRate: 0.0001, BatchSize: 16},
				NeMo: NeMoTrainer{Namespace: "downshift", DataStoreURL: "http://datastore.internal:3000",
					EntityStoreURL: "http://entity-store.internal:8000"},
			},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestFullConfigSetsEveryKey keeps testdata/good/full.yaml complete: a key added to
// Config must be added there too, so that it is decoded at least once in the tests.
func TestFullConfigSetsEveryKey(t *testing.T) {
	data, err := os.ReadFile("testdata/good/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	d := decoder{lines: map[string]int{}}
	d.decode(doc.Content[0], reflect.ValueOf(&cfg).Elem(), "")
	if len(d.errs) > 0 {
		t.Fatal(errors.Join(d.errs...))
	}
	index := regexp.MustCompile(`\[[^]]*\]`)
	set := map[string]bool{}
	for key := range d.lines {
		set[index.ReplaceAllString(key, "")] = true
	}
	for _, key := range allKeys(reflect.TypeFor[Config](), "") {
		if !set[key] {
			t.Errorf("testdata/good/full.yaml does not set %s", key)
		}
	}
}

// allKeys lists every key Config has, without list indexes.
func allKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		key := joinKey(prefix, tagName(f))
		out = append(out, key)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			out = append(out, allKeys(ft, key)...)
		}
	}
	return out
}

// TestBadConfigs loads every file in testdata/bad and checks that the error contains the
// text the file's first line promises ("# error: <text>").
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := expectedError(t, f)
			_, err := Load(f, nil)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want an error containing %q", f, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) error:\n%v\nwant it to contain %q", f, err, want)
			}
			// Bad files that hold a fake secret must not get it echoed back.
			for _, secret := range []string{"hunter2", "sk-not-a-real-key"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error quotes the secret %q: %v", secret, err)
				}
			}
		})
	}
}

func expectedError(t *testing.T, file string) string {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	line, _, _ := bufio.NewReader(fh).ReadLine()
	want, ok := strings.CutPrefix(string(line), "# error: ")
	if !ok || want == "" {
		t.Fatalf("%s: first line must be \"# error: <expected text>\", got %q", file, line)
	}
	return want
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	cfg := Default()
	cfg.Listen = "nowhere"
	cfg.Record.Overflow = "spill"
	cfg.Backends = []Backend{{Name: "a", URL: "localhost:8000"}}
	cfg.Models = []Model{{Name: "m", Backend: "b", Role: "reference", Fallbacks: []string{"m"}}}
	cfg.Aliases = map[string]string{"gpt-4o": "x"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	var keys []string
	for _, ke := range keyErrors(err) {
		keys = append(keys, ke.Key)
	}
	want := []string{
		"listen", "record.overflow", "backends[0].url", "models[0].backend",
		"models[0].fallbacks[0]", `aliases["gpt-4o"]`,
	}
	if !slices.Equal(keys, want) {
		t.Errorf("keys at fault = %q\nwant %q\nerror: %v", keys, want, err)
	}
}

func TestLoadReportsEveryUnknownKeyAtOnce(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, f, "lisen: x\nstore: {dns: y}\nrecord: {queue_size: many}\n")
	_, err := Load(f, nil)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{
		f + `:1: unknown key "lisen"`,
		f + `:2: unknown key "store.dns" (valid here: driver, dsn)`,
		f + `:3: record.queue_size: invalid integer "many"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !errors.Is(err, ErrUnknownKey) {
		t.Errorf("errors.Is(err, ErrUnknownKey) = false for %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want os.ErrNotExist", err)
	}
}

func TestLoadEmptyFileUsesDefaults(t *testing.T) {
	f := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, f, "# nothing here\n")
	got, err := Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("got %+v, want Default()", got)
	}
}

func TestResolve(t *testing.T) {
	cfg, err := Load("testdata/good/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		requested string
		want      string // model name; "" for not found
	}{
		{"meta/llama-3.3-70b-instruct", "meta/llama-3.3-70b-instruct"},
		{"gpt-4o", "meta/llama-3.3-70b-instruct"},
		{"gpt-4.1-mini", "meta/llama-3.1-8b-instruct"},
		{"llama-8b", ""}, // upstream names are not client-facing
		{"gpt-5", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.requested, func(t *testing.T) {
			m, ok := cfg.Resolve(tt.requested)
			if ok != (tt.want != "") || m.Name != tt.want {
				t.Errorf("Resolve(%q) = %q, %v; want %q", tt.requested, m.Name, ok, tt.want)
			}
		})
	}
	if m, ok := cfg.ModelByName("gpt-4o"); ok {
		t.Errorf("ModelByName(alias) = %q, want not found", m.Name)
	}
	if b, ok := cfg.BackendByName("local"); !ok || b.URL != "http://127.0.0.1:8000/v1" {
		t.Errorf("BackendByName(local) = %+v, %v", b, ok)
	}
	if _, ok := cfg.BackendByName("nope"); ok {
		t.Error("BackendByName(nope) found something")
	}
	if m, _ := cfg.ModelByName("meta/llama-3.1-8b-instruct"); m.Upstream() != "llama-8b" {
		t.Errorf("Upstream() = %q, want llama-8b", m.Upstream())
	}
}

func TestLogSlogLevel(t *testing.T) {
	for level, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		if got := (Log{Level: level}).SlogLevel(); got != want {
			t.Errorf("SlogLevel(%s) = %v, want %v", level, got, want)
		}
	}
}

// TestConfigNeverPrintsKeys guards the rule that a Config only references secrets: however
// a Config is printed or logged, the key it leads to does not appear.
func TestConfigNeverPrintsKeys(t *testing.T) {
	const secret = "sk-test-0123456789abcdef"
	keyFile := filepath.Join(t.TempDir(), "key")
	writeFile(t, keyFile, secret+"\n")
	env := []string{"LLM_API_KEY=" + secret}
	getenv := func(name string) string {
		if name == "LLM_API_KEY" {
			return secret
		}
		return ""
	}
	cfg, err := Load(exampleConfig, env)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backends = append(cfg.Backends, Backend{Name: "filed", URL: "https://x.example/v1", APIKeyFile: keyFile})
	for _, b := range cfg.Backends {
		if _, err := b.APIKey(getenv); err != nil {
			t.Fatalf("APIKey(%s) = %v", b.Name, err)
		}
	}
	var buf bytes.Buffer
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&buf, format+"\n", cfg)
		fmt.Fprintf(&buf, format+"\n", cfg.Backends)
	}
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", cfg, "backend", cfg.Backends[0])
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg, "backend", cfg.Backends[0])
	if strings.Contains(buf.String(), secret) {
		t.Errorf("printing the config revealed the key:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "LLM_API_KEY") {
		t.Errorf("printed config lacks the key's reference; did printing fail?\n%s", buf.String())
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestHyperparametersOrFillsOnlyZeros(t *testing.T) {
	set := Hyperparameters{Rank: 4, Dropout: 0.1, LearningRateMultiplier: 2}
	got := set.Or(DefaultHyperparameters())
	want := Hyperparameters{Rank: 4, Alpha: 32, Dropout: 0.1, Epochs: 3, LearningRate: 2e-4,
		LearningRateMultiplier: 2, BatchSize: 8, MaxLength: 2048}
	if got != want {
		t.Errorf("Or = %+v\nwant %+v", got, want)
	}
	if got := (Hyperparameters{}).Or(Hyperparameters{}); got != (Hyperparameters{}) {
		t.Errorf("zero Or zero = %+v, want zero", got)
	}
}

func TestTrainerByName(t *testing.T) {
	c := Config{Tune: Tune{Trainers: []Trainer{{Name: "a", Kind: TrainerPEFT}, {Name: "b", Kind: TrainerNeMo}}}}
	if tr, ok := c.TrainerByName("b"); !ok || tr.Kind != TrainerNeMo {
		t.Errorf("TrainerByName(b) = %+v, %t", tr, ok)
	}
	if _, ok := c.TrainerByName("c"); ok {
		t.Error("TrainerByName(c) found a trainer")
	}
}
