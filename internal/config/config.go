// Package config defines downshift's configuration: one YAML file plus DOWNSHIFT_*
// environment overrides, decoded strictly (unknown keys are errors) and validated with
// messages that name the offending key. Secrets are only ever referenced (api_key_env,
// api_key_file), never held inline, so a Config can be logged safely.
//
// It is not a registry of live state: a Config is a plain value, read once at start-up
// and passed to the parts that need it. Building backends, stores and loggers from it is
// the composition root's job (internal/cli), not this package's.
package config

import (
	"log/slog"
	"time"
)

// Config is the whole configuration of a downshift server.
type Config struct {
	// Listen is the address the gateway listens on. Default 127.0.0.1:8080.
	Listen string `koanf:"listen"`
	// MaxBodyBytes caps a request body; larger ones get 413. Default 8 MiB.
	MaxBodyBytes int64 `koanf:"max_body_bytes"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM/SIGINT. Default 30s.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`

	// Store selects where calls are recorded.
	Store Store `koanf:"store"`
	// Record tunes the asynchronous recorder.
	Record Record `koanf:"record"`
	// Log configures the server's own log.
	Log Log `koanf:"log"`
	// Backends are the OpenAI-compatible upstreams, each named once.
	Backends []Backend `koanf:"backends"`
	// Models are the models clients may name, each served by one backend.
	Models []Model `koanf:"models"`
	// Privacy controls what recorded payloads may contain and how they are kept.
	Privacy Privacy `koanf:"privacy"`
	// Auth controls who may call the gateway and its admin API.
	Auth Auth `koanf:"auth"`
	// Aliases map a model name a client asks for (gpt-4o) to a configured model's Name.
	// An alias may not shadow a model's name.
	Aliases map[string]string `koanf:"aliases"`
	// Tune configures fine-tuning: the trainers `downshift tune` can hand a job to.
	Tune Tune `koanf:"tune"`
	// Shift tunes how the gateway applies workload policies (`downshift shift`).
	Shift Shift `koanf:"shift"`
	// UI configures the dashboard at /ui/.
	UI UI `koanf:"ui"`
}

// UI configures the dashboard.
type UI struct {
	// SecureCookies marks the session cookie Secure even when the request came over
	// plain HTTP: set it when a proxy in front of downshift terminates TLS. Without
	// it the cookie is Secure only on requests that came over TLS.
	SecureCookies bool `koanf:"secure_cookies"`
}

// Shift tunes how the gateway applies the workloads' shift policies.
type Shift struct {
	// RefreshInterval is how often the gateway looks for a changed policy. Policies
	// saved through this server's admin API take effect at once. Default 5s.
	RefreshInterval time.Duration `koanf:"refresh_interval"`
	// SecondConcurrency bounds the second answers (a shadow's, a verification's) in
	// flight; a call over it gets none, and its record says so. Default 64.
	SecondConcurrency int `koanf:"second_concurrency"`
	// SecondTimeout bounds one second answer. Default 60s.
	SecondTimeout time.Duration `koanf:"second_timeout"`
	// RefusalPhrases make the not_refusal guard also refuse answers that open with
	// one, ignoring case. Empty: a short list of blanket refusals
	// (guard.DefaultRefusalPhrases).
	RefusalPhrases []string `koanf:"refusal_phrases"`
}

// Tune configures fine-tuning.
type Tune struct {
	// Trainers are the places a fine-tuning job can run, each named once.
	Trainers []Trainer `koanf:"trainers"`
}

// Trainer is one place a fine-tuning job can run: the bundled PEFT script on this host,
// a NeMo Customizer service, or an OpenAI-compatible fine-tuning API.
//
// Zero values mean the documented default; which keys apply depends on Kind, and
// Validate refuses a key the kind does not use, so that a setting never silently does
// nothing.
type Trainer struct {
	// Name identifies the trainer in `downshift tune --trainer NAME`; unique.
	Name string `koanf:"name"`
	// Kind is TrainerPEFT, TrainerNeMo or TrainerOpenAIFT.
	Kind string `koanf:"kind"`
	// BaseURL is the service's base URL (nemo, openai-ft): for openai-ft the URL with
	// the version path (https://api.openai.com/v1); for nemo the NeMo Customizer's root
	// (http://nemo.example.com), under which /v1/customization/jobs lives.
	BaseURL string `koanf:"base_url"`
	// APIKeyEnv names an environment variable that holds the service's API key (nemo,
	// openai-ft), sent as a bearer token.
	APIKeyEnv string `koanf:"api_key_env"`
	// APIKeyFile names a file that holds the API key. At most one of APIKeyEnv and
	// APIKeyFile is set; with neither, no key is sent.
	APIKeyFile string `koanf:"api_key_file"`
	// Python is the interpreter that runs the PEFT script (peft). Default python3.
	Python string `koanf:"python"`
	// Script is the PEFT training script (peft). Default trainers/peft/train.py.
	Script string `koanf:"script"`
	// PollInterval is how often a running job's status is asked for. Default 2s for
	// peft (a local process), 30s for the remote services.
	PollInterval time.Duration `koanf:"poll_interval"`
	// Hyperparameters are the defaults for this trainer's jobs; `downshift tune` may
	// override them per job.
	Hyperparameters Hyperparameters `koanf:"hyperparameters"`
	// NeMo holds the settings only a NeMo Customizer trainer has.
	NeMo NeMoTrainer `koanf:"nemo"`
	// ServeBackend names the configured backend that serves this trainer's results
	// (a vLLM server started with --enable-lora, a NIM that serves LoRA adapters):
	// `downshift tune` registers each trained adapter as a candidate model on it, by
	// the adapter's name, and evaluates it at once. Unset for openai-ft: the fine-tuned
	// model is served by base_url itself. Unset otherwise: the result is not
	// registered, and the job's adapter is left for the operator to serve.
	ServeBackend string `koanf:"serve_backend"`
	// LoadAdapter asks ServeBackend to load a peft adapter at run time, from the
	// directory the job wrote (vLLM's POST /v1/load_lora_adapter, which needs
	// VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and a path the server can read). Off: the
	// server must already serve the adapter by name.
	LoadAdapter bool `koanf:"load_adapter"`
}

// Hyperparameters of a LoRA fine-tuning job. Zero means the trainer's default: for
// peft and nemo, DefaultHyperparameters' value; for openai-ft, the service's own
// choice ("auto").
type Hyperparameters struct {
	// Rank is the LoRA rank r (peft; nemo's adapter_dim). Default 16.
	Rank int `koanf:"rank"`
	// Alpha is the LoRA scaling alpha (peft, nemo). Default 32.
	Alpha int `koanf:"alpha"`
	// Dropout is the LoRA dropout, in [0, 1) (peft, nemo). Default 0, none.
	Dropout float64 `koanf:"dropout"`
	// Epochs is the number of passes over the training data. Default 3.
	Epochs int `koanf:"epochs"`
	// LearningRate is the optimiser's peak learning rate (peft, nemo). Default 2e-4.
	LearningRate float64 `koanf:"learning_rate"`
	// LearningRateMultiplier scales the service's learning rate (openai-ft only, whose
	// API takes no absolute rate).
	LearningRateMultiplier float64 `koanf:"learning_rate_multiplier"`
	// BatchSize is the number of examples per optimiser step. Default 8.
	BatchSize int `koanf:"batch_size"`
	// MaxLength is the longest example in tokens; longer ones are truncated (peft).
	// Default 2048.
	MaxLength int `koanf:"max_length"`
}

// DefaultHyperparameters returns what a peft or nemo job trains with where neither the
// configuration nor the command says otherwise.
func DefaultHyperparameters() Hyperparameters {
	return Hyperparameters{Rank: 16, Alpha: 32, Epochs: 3, LearningRate: 2e-4, BatchSize: 8, MaxLength: 2048}
}

// Or returns h with every zero field taken from d.
func (h Hyperparameters) Or(d Hyperparameters) Hyperparameters {
	return Hyperparameters{
		Rank:                   orDefault(h.Rank, d.Rank),
		Alpha:                  orDefault(h.Alpha, d.Alpha),
		Dropout:                orDefault(h.Dropout, d.Dropout),
		Epochs:                 orDefault(h.Epochs, d.Epochs),
		LearningRate:           orDefault(h.LearningRate, d.LearningRate),
		LearningRateMultiplier: orDefault(h.LearningRateMultiplier, d.LearningRateMultiplier),
		BatchSize:              orDefault(h.BatchSize, d.BatchSize),
		MaxLength:              orDefault(h.MaxLength, d.MaxLength),
	}
}

func orDefault[T int | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// NeMoTrainer holds what a NeMo Customizer trainer needs besides its URL: where the
// training data is uploaded (NeMo Data Store) and registered (NeMo Entity Store).
type NeMoTrainer struct {
	// Namespace holds the uploaded datasets and the output adapters. Default "default".
	Namespace string `koanf:"namespace"`
	// DataStoreURL is the NeMo Data Store's root. Default: the trainer's base_url.
	DataStoreURL string `koanf:"datastore_url"`
	// EntityStoreURL is the NeMo Entity Store's root. Default: the trainer's base_url.
	EntityStoreURL string `koanf:"entity_store_url"`
}

// Trainer kinds.
const (
	TrainerPEFT     = "peft"      // trainers/peft/train.py as a subprocess on this host
	TrainerNeMo     = "nemo"      // NVIDIA NeMo Customizer
	TrainerOpenAIFT = "openai-ft" // an OpenAI-compatible fine-tuning API
)

// TrainerByName returns the trainer called name.
func (c Config) TrainerByName(name string) (Trainer, bool) {
	for _, t := range c.Tune.Trainers {
		if t.Name == name {
			return t, true
		}
	}
	return Trainer{}, false
}

// Privacy controls redaction and encryption of recorded payloads. Both happen in the
// recorder, before anything is written, never on the request path.
type Privacy struct {
	// Redact replaces PII and secrets in recorded requests and responses with typed
	// placeholders (<EMAIL_1>). Default true.
	Redact bool `koanf:"redact"`
	// PseudonymKeyFile names a file holding an HMAC key (any bytes, at least 32) that
	// makes placeholders consistent across calls (<EMAIL_3f9a2c1b>), so that
	// deduplication and clustering still see "the same customer". Unset: placeholders
	// are numbered per call (<EMAIL_1>).
	PseudonymKeyFile string `koanf:"pseudonym_key_file"`
	// Rules are extra patterns to redact, each with the type its placeholder names.
	Rules []RedactRule `koanf:"rules"`
	// Deny lists literal values to redact wherever they appear (customer names, ids),
	// matched case-insensitively.
	Deny []DenyList `koanf:"deny"`
	// Encryption seals payloads at rest. Without keys, payloads are stored redacted but
	// in plaintext, and the server warns at start.
	Encryption Encryption `koanf:"encryption"`
}

// RedactRule is a user pattern to redact.
type RedactRule struct {
	// Type names the placeholder: upper-case letters, digits and underscores.
	Type string `koanf:"type"`
	// Pattern is an RE2 regular expression.
	Pattern string `koanf:"pattern"`
}

// DenyList is a list of literal values to redact, from the file and/or inline.
type DenyList struct {
	Type   string   `koanf:"type"`
	Values []string `koanf:"values"`
	// File holds one value a line; blank lines and lines starting with # are skipped.
	File string `koanf:"file"`
}

// Encryption configures AES-256-GCM sealing of recorded payloads.
type Encryption struct {
	// Active is the id of the key that seals new records. Empty: no encryption.
	Active string `koanf:"active"`
	// Keys are every key that may have sealed a stored record, so that records sealed
	// under an older key stay readable until `downshift keys encryption rotate` has
	// re-sealed them under the active one.
	Keys []EncryptionKey `koanf:"keys"`
}

// EncryptionKey is a 32-byte key, referenced by env var or file, never inline. The key
// material is 64 hex digits or standard base64 (as `downshift keys encryption new`
// writes it).
type EncryptionKey struct {
	ID   string `koanf:"id"`
	Env  string `koanf:"env"`
	File string `koanf:"file"`
}

// Auth controls access. Gateway keys and admin keys live in the store (created with
// `downshift keys create`), hashed; this section only says whether keys are required.
type Auth struct {
	// Open serves agents without gateway keys (every call gets an empty client id).
	// Off by default; the server warns at start when it is on.
	Open bool `koanf:"open"`
	// RefreshInterval is how often the server reloads keys from the store, so that a
	// revoked key stops working within it. Default 5s.
	RefreshInterval time.Duration `koanf:"refresh_interval"`
}

// Store selects where calls are kept.
type Store struct {
	// Driver is "sqlite" (default). "postgres" is reserved for the PostgreSQL store.
	Driver string `koanf:"driver"`
	// DSN is the SQLite file path or the PostgreSQL connection string. Default downshift.db.
	DSN string `koanf:"dsn"`
}

// Record tunes the asynchronous recorder.
type Record struct {
	// QueueSize bounds the number of calls waiting to be written. Default 10000.
	QueueSize int `koanf:"queue_size"`
	// BatchSize is the most calls written in one transaction. Default 256.
	BatchSize int `koanf:"batch_size"`
	// FlushInterval is the longest a call waits in a partial batch. Default 100ms.
	FlushInterval time.Duration `koanf:"flush_interval"`
	// Overflow is what happens when the queue is full: "block" (wait up to
	// BlockTimeout, then drop) or "drop" (drop at once). Default "block".
	Overflow string `koanf:"overflow"`
	// BlockTimeout bounds the wait under Overflow "block". Default 50ms.
	BlockTimeout time.Duration `koanf:"block_timeout"`
}

// Log configures the server's structured log.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `koanf:"level"`
	// Format is text (default) or json.
	Format string `koanf:"format"`
}

// Backend is an OpenAI-compatible upstream (vLLM, NIM, SGLang, llama.cpp, Ollama, OpenAI).
//
// Zero durations and sizes mean the documented default; Load fills them in for every
// entry of the file, so a loaded Config shows the values in effect.
type Backend struct {
	// Name identifies the backend in models[].backend; unique.
	Name string `koanf:"name" json:"name"`
	// URL is the base URL including the version path, e.g. http://127.0.0.1:8000/v1.
	URL string `koanf:"url" json:"url"`
	// APIKeyEnv names an environment variable that holds the API key.
	APIKeyEnv string `koanf:"api_key_env" json:"api_key_env,omitempty"`
	// APIKeyFile names a file that holds the API key (surrounding whitespace trimmed).
	// At most one of APIKeyEnv and APIKeyFile is set; with neither, no key is sent.
	APIKeyFile string `koanf:"api_key_file" json:"api_key_file,omitempty"`
	// Headers are sent with every request to this backend. Headers that carry
	// credentials (Authorization, api-key, ...) are refused: keys go in APIKeyEnv or
	// APIKeyFile, so that a Config never holds a secret.
	Headers map[string]string `koanf:"headers" json:"headers,omitempty"`
	// ConnectTimeout bounds dialing. Default 5s.
	ConnectTimeout time.Duration `koanf:"connect_timeout" json:"connect_timeout,omitempty"`
	// ResponseTimeout bounds the wait for the response headers (the first byte of a
	// stream). Default 120s.
	ResponseTimeout time.Duration `koanf:"response_timeout" json:"response_timeout,omitempty"`
	// MaxIdleConns is the size of the keep-alive pool to this backend. Default 256.
	MaxIdleConns int `koanf:"max_idle_conns" json:"max_idle_conns,omitempty"`
	// Transport picks the HTTP client: "auto" (the default, also when empty) uses
	// downshift's HTTP/1.1 transport for an http:// URL reached without a proxy and
	// net/http's Transport otherwise; "net/http" always uses net/http's Transport.
	Transport string `koanf:"transport" json:"transport,omitempty"`
}

// Backend transports.
const (
	TransportAuto    = "auto"
	TransportNetHTTP = "net/http"
)

// Model is a model downshift can route to.
type Model struct {
	// Name is what clients ask for and what downshift calls the model.
	Name string `koanf:"name" json:"name"`
	// Backend names the Backend that serves it.
	Backend string `koanf:"backend" json:"backend"`
	// UpstreamName is the model name sent to the backend. Empty means Name; see Upstream.
	UpstreamName string `koanf:"upstream_name" json:"upstream_name,omitempty"`
	// Role is "reference" (a large model agents use today) or "candidate" (a small model).
	Role string `koanf:"role" json:"role"`
	// ParamsB is the parameter count in billions, for the catalog.
	ParamsB float64 `koanf:"params_b" json:"params_b,omitempty"`
	// ContextTokens is the longest context the model takes, in tokens; 0 means unknown.
	ContextTokens int `koanf:"context_tokens" json:"context_tokens,omitempty"`
	// Licence is the model's licence as a person reads it (Apache-2.0, Llama 3.1
	// Community, proprietary); empty means unknown.
	Licence string `koanf:"licence" json:"licence,omitempty"`
	// MemoryGB is the accelerator memory the model needs to serve, weights and KV
	// cache, in GB; 0 means unknown.
	MemoryGB float64 `koanf:"memory_gb" json:"memory_gb,omitempty"`
	// Price is what the model costs; zero means unknown or free.
	Price Price `koanf:"price" json:"price,omitzero"`
	// Fallbacks are other model names tried in order on connection errors, 429 and 5xx,
	// before any byte has reached the client.
	Fallbacks []string `koanf:"fallbacks" json:"fallbacks,omitempty"`
}

// Price is what a model costs: per token, in US dollars per million tokens, as hosted
// APIs charge; or per GPU-hour, as a model on a rented or owned GPU costs, with the
// throughput that turns it into a price per token (see PerToken). A model has one or
// the other, never both.
type Price struct {
	// InputPerMTok prices prompt tokens.
	InputPerMTok float64 `koanf:"input_per_mtok" json:"input_per_mtok,omitempty"`
	// OutputPerMTok prices completion tokens.
	OutputPerMTok float64 `koanf:"output_per_mtok" json:"output_per_mtok,omitempty"`
	// CachedInputPerMTok prices cached prompt tokens; 0 means the input price.
	CachedInputPerMTok float64 `koanf:"cached_input_per_mtok" json:"cached_input_per_mtok,omitempty"`
	// GPUHourUSD is what an hour of the GPU (or GPUs) serving the model costs, in US
	// dollars. It may be set without ThroughputTPS: `downshift eval` then measures the
	// throughput, and until it is known the model's price per token is unknown.
	GPUHourUSD float64 `koanf:"gpu_hour_usd" json:"gpu_hour_usd,omitempty"`
	// ThroughputTPS is how many tokens per second, prompt and completion together, the
	// model processes on that GPU at the load it is served with. Used only with
	// GPUHourUSD.
	ThroughputTPS float64 `koanf:"throughput_tps" json:"throughput_tps,omitempty"`
}

// PerToken returns the price in US dollars per million prompt, completion and cached
// prompt tokens, and whether it is known.
//
// A per-token price is returned as set, with a cached rate of 0 meaning the input
// rate. A per-GPU-hour price is turned into one price for every token,
// GPUHourUSD * 1e6 / (ThroughputTPS * 3600): the GPU's time is what is paid for,
// whether it reads a token or writes one. Without ThroughputTPS that price is unknown
// and ok is false; the prices are then 0. A Price with nothing set is known to be 0
// (free, or not said).
func (p Price) PerToken() (in, out, cached float64, ok bool) {
	if p.GPUHourUSD > 0 {
		if p.ThroughputTPS <= 0 {
			return 0, 0, 0, false
		}
		per := p.GPUHourUSD * 1e6 / (p.ThroughputTPS * 3600)
		return per, per, per, true
	}
	cached = p.CachedInputPerMTok
	if cached == 0 {
		cached = p.InputPerMTok
	}
	return p.InputPerMTok, p.OutputPerMTok, cached, true
}

// Roles a model can have.
const (
	RoleReference = "reference"
	RoleCandidate = "candidate"
)

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Record overflow behaviours.
const (
	OverflowBlock = "block"
	OverflowDrop  = "drop"
)

// Default returns the configuration used where the file and the environment say nothing:
// listen on 127.0.0.1:8080, record to the SQLite file downshift.db, no backends, no models.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		MaxBodyBytes:    8 << 20,
		ShutdownTimeout: 30 * time.Second,
		Store:           Store{Driver: DriverSQLite, DSN: "downshift.db"},
		Record: Record{
			QueueSize:     10000,
			BatchSize:     256,
			FlushInterval: 100 * time.Millisecond,
			Overflow:      OverflowBlock,
			BlockTimeout:  50 * time.Millisecond,
		},
		Shift: Shift{
			RefreshInterval:   5 * time.Second,
			SecondConcurrency: 64,
			SecondTimeout:     60 * time.Second,
		},
		Log:     Log{Level: "info", Format: "text"},
		Privacy: Privacy{Redact: true},
		Auth:    Auth{RefreshInterval: 5 * time.Second},
	}
}

// DefaultBackend returns a Backend with the default timeouts and pool size and nothing
// else set. Load starts every backends[] entry of the file from it.
func DefaultBackend() Backend {
	return Backend{
		ConnectTimeout:  5 * time.Second,
		ResponseTimeout: 120 * time.Second,
		MaxIdleConns:    256,
	}
}

// ModelByName returns the model called name, ignoring aliases.
func (c Config) ModelByName(name string) (Model, bool) {
	for _, m := range c.Models {
		if m.Name == name {
			return m, true
		}
	}
	return Model{}, false
}

// Resolve returns the model that serves a request naming requested: the model of that
// name, or the target of the alias of that name. Validate guarantees an alias never
// shadows a model, so the order of the two lookups does not matter.
func (c Config) Resolve(requested string) (Model, bool) {
	if m, ok := c.ModelByName(requested); ok {
		return m, true
	}
	if target, ok := c.Aliases[requested]; ok {
		return c.ModelByName(target)
	}
	return Model{}, false
}

// BackendByName returns the backend called name.
func (c Config) BackendByName(name string) (Backend, bool) {
	for _, b := range c.Backends {
		if b.Name == name {
			return b, true
		}
	}
	return Backend{}, false
}

// Upstream returns the model name to send to the backend: UpstreamName, or Name when
// that is empty.
func (m Model) Upstream() string {
	if m.UpstreamName != "" {
		return m.UpstreamName
	}
	return m.Name
}

// SlogLevel returns Level as a slog.Level. Levels Validate rejects map to info.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
