// Package config defines downshift's configuration: one YAML file plus DOWNSHIFT_*
// environment overrides, decoded strictly (unknown keys are errors) and validated with
// messages that name the offending key. Secrets are only ever referenced (api_key_env,
// api_key_file), never held inline, so a Config can be logged safely.
package config

import "time"

// Config is the whole configuration of a downshift server.
type Config struct {
	// Listen is the address the gateway listens on. Default 127.0.0.1:8080.
	Listen string `koanf:"listen"`
	// MaxBodyBytes caps a request body; larger ones get 413. Default 8 MiB.
	MaxBodyBytes int64 `koanf:"max_body_bytes"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM/SIGINT. Default 30s.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`

	Store    Store             `koanf:"store"`
	Record   Record            `koanf:"record"`
	Log      Log               `koanf:"log"`
	Backends []Backend         `koanf:"backends"`
	Models   []Model           `koanf:"models"`
	Aliases  map[string]string `koanf:"aliases"`
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
	Level  string `koanf:"level"`  // debug, info (default), warn, error
	Format string `koanf:"format"` // text (default) or json
}

// Backend is an OpenAI-compatible upstream (vLLM, NIM, SGLang, llama.cpp, Ollama, OpenAI).
type Backend struct {
	Name string `koanf:"name"`
	// URL is the base URL including the version path, e.g. http://127.0.0.1:8000/v1.
	URL string `koanf:"url"`
	// APIKeyEnv names an environment variable that holds the API key.
	APIKeyEnv string `koanf:"api_key_env"`
	// APIKeyFile names a file that holds the API key (trailing whitespace trimmed).
	APIKeyFile string `koanf:"api_key_file"`
	// Headers are sent with every request to this backend.
	Headers map[string]string `koanf:"headers"`
	// ConnectTimeout bounds dialing. Default 5s.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// ResponseTimeout bounds the wait for the response headers (the first byte of a
	// stream). Default 120s.
	ResponseTimeout time.Duration `koanf:"response_timeout"`
	// MaxIdleConns is the size of the keep-alive pool to this backend. Default 256.
	MaxIdleConns int `koanf:"max_idle_conns"`
}

// Model is a model downshift can route to.
type Model struct {
	// Name is what clients ask for and what downshift calls the model.
	Name string `koanf:"name"`
	// Backend names the Backend that serves it.
	Backend string `koanf:"backend"`
	// UpstreamName is the model name sent to the backend. Default: Name.
	UpstreamName string `koanf:"upstream_name"`
	// Role is "reference" (a large model agents use today) or "candidate" (a small model).
	Role string `koanf:"role"`
	// ParamsB is the parameter count in billions, for the catalog.
	ParamsB float64 `koanf:"params_b"`
	Price   Price   `koanf:"price"`
	// Fallbacks are other model names tried in order on connection errors, 429 and 5xx,
	// before any byte has reached the client.
	Fallbacks []string `koanf:"fallbacks"`
}

// Price is what a model costs, in US dollars per million tokens.
type Price struct {
	InputPerMTok  float64 `koanf:"input_per_mtok"`
	OutputPerMTok float64 `koanf:"output_per_mtok"`
	// CachedInputPerMTok prices cached prompt tokens; 0 means the input price.
	CachedInputPerMTok float64 `koanf:"cached_input_per_mtok"`
}
