package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate reports every problem with c at once, as *KeyError values joined with
// errors.Join, each naming the key at fault. It returns nil for a usable Config.
func (c Config) Validate() error {
	v := &validator{}
	v.server(c)
	v.store(c.Store)
	v.record(c.Record)
	v.shift(c.Shift)
	v.log(c.Log)
	v.backends(c.Backends)
	v.models(c)
	v.aliases(c)
	v.privacy(c.Privacy)
	v.auth(c.Auth)
	backends := make(map[string]bool, len(c.Backends))
	for _, b := range c.Backends {
		backends[b.Name] = true
	}
	v.tune(c.Tune, backends)
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, &KeyError{Key: key, Err: fmt.Errorf(format, args...)})
}

func (v *validator) positive(key string, n int64) {
	if n <= 0 {
		v.add(key, "must be greater than 0")
	}
}

func (v *validator) notNegative(key string, n float64) {
	switch {
	case n < 0:
		v.add(key, "must not be negative")
	case math.IsNaN(n) || math.IsInf(n, 0):
		v.add(key, "must be a finite number")
	}
}

func (v *validator) oneOf(key, got string, want ...string) {
	if !slices.Contains(want, got) {
		v.add(key, "must be %s, not %q", orList(want), got)
	}
}

func orList(want []string) string {
	q := make([]string, len(want))
	for i, w := range want {
		q[i] = strconv.Quote(w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (v *validator) server(c Config) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		v.add("listen", "must be host:port (e.g. 127.0.0.1:8080 or :8080), not %q", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.add("listen", "port %q must be a number from 0 to 65535", port)
	} else if strings.ContainsAny(host, " /") {
		v.add("listen", "host %q is not a host name or IP address", host)
	}
	v.positive("max_body_bytes", c.MaxBodyBytes)
	v.positive("shutdown_timeout", int64(c.ShutdownTimeout))
}

func (v *validator) store(s Store) {
	v.oneOf("store.driver", s.Driver, DriverSQLite, DriverPostgres)
	if s.DSN == "" {
		v.add("store.dsn", "must be set")
	} else if s.Driver == DriverPostgres && dsnHasPassword(s.DSN) {
		// A password here would be printed wherever the Config is; PostgreSQL clients
		// read it from PGPASSWORD or a passfile instead.
		v.add("store.dsn", "must not contain a password; use PGPASSWORD or PGPASSFILE")
	}
}

// dsnHasPassword reports whether a PostgreSQL DSN, in URL or keyword form, holds a
// password.
func dsnHasPassword(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return strings.Contains(dsn, "@") // unparseable: assume the worst
		}
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	for _, field := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(field, "="); ok && strings.TrimSpace(k) == "password" {
			return true
		}
	}
	return false
}

func (v *validator) record(r Record) {
	v.positive("record.queue_size", int64(r.QueueSize))
	v.positive("record.batch_size", int64(r.BatchSize))
	if r.BatchSize > r.QueueSize && r.QueueSize > 0 {
		v.add("record.batch_size", "must not exceed record.queue_size (%d)", r.QueueSize)
	}
	v.positive("record.flush_interval", int64(r.FlushInterval))
	v.oneOf("record.overflow", r.Overflow, OverflowBlock, OverflowDrop)
	if r.Overflow == OverflowBlock {
		v.positive("record.block_timeout", int64(r.BlockTimeout))
	} else if r.BlockTimeout < 0 {
		v.add("record.block_timeout", "must not be negative")
	}
}

func (v *validator) shift(s Shift) {
	v.positive("shift.refresh_interval", int64(s.RefreshInterval))
	v.positive("shift.second_concurrency", int64(s.SecondConcurrency))
	v.positive("shift.second_timeout", int64(s.SecondTimeout))
	for i, p := range s.RefusalPhrases {
		if strings.TrimSpace(p) == "" {
			v.add(fmt.Sprintf("shift.refusal_phrases[%d]", i), "must not be blank")
		}
	}
}

func (v *validator) log(l Log) {
	v.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", l.Format, "text", "json")
}

func (v *validator) backends(bs []Backend) {
	seen := map[string]int{}
	for i, b := range bs {
		key := fmt.Sprintf("backends[%d]", i)
		switch prev, dup := seen[b.Name]; {
		case b.Name == "":
			v.add(key+".name", "must be set")
		case dup:
			v.add(key+".name", "duplicate backend name %q (also backends[%d])", b.Name, prev)
		default:
			seen[b.Name] = i
		}
		v.httpURL(key+".url", b.URL)
		v.keySource(key, b.APIKeyEnv, b.APIKeyFile)
		for _, name := range sortedKeys(b.Headers) {
			hkey := fmt.Sprintf("%s.headers[%q]", key, name)
			switch {
			case !validHeaderName(name):
				v.add(hkey, "is not a valid HTTP header name")
			case secretHeader(name):
				v.add(hkey, "may carry a credential; put the key in api_key_env or api_key_file")
			case strings.ContainsAny(b.Headers[name], "\r\n\x00"):
				v.add(hkey, "value must not contain line breaks or NUL")
			}
		}
		v.notNegative(key+".connect_timeout", float64(b.ConnectTimeout))
		v.notNegative(key+".response_timeout", float64(b.ResponseTimeout))
		v.notNegative(key+".max_idle_conns", float64(b.MaxIdleConns))
		if b.Transport != "" && b.Transport != TransportAuto && b.Transport != TransportNetHTTP {
			v.add(key+".transport", "must be %q or %q, not %q", TransportAuto, TransportNetHTTP, b.Transport)
		}
	}
}

// httpURL refuses what is not an absolute http(s) URL without credentials or fragment.
func (v *validator) httpURL(key, raw string) {
	if strings.Contains(raw, "@") {
		// Not quoted back: user:password@ is a credential.
		v.add(key, "must not contain credentials; use api_key_env or api_key_file")
	} else if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(key, "must be an absolute http(s) URL, not %q", raw)
	} else if u.Fragment != "" {
		v.add(key, "must not have a #fragment")
	}
}

// keySource checks the api_key_env and api_key_file of the entry at key.
func (v *validator) keySource(key, env, file string) {
	if env != "" && file != "" {
		v.add(key+".api_key_file", "set api_key_env or api_key_file, not both")
	}
	if env != "" && !validEnvName(env) {
		v.add(key+".api_key_env", "%q is not an environment variable name", env)
	}
}

func validEnvName(s string) bool {
	for i, r := range s {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// secretHeader reports whether a header of this name is how some API carries a key
// (Authorization, api-key, x-api-key, x-goog-api-key, x-auth-token, Cookie, ...).
func secretHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"auth", "api-key", "apikey", "api_key", "token", "secret", "password", "cookie"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func (v *validator) models(c Config) {
	seen := map[string]int{}
	for i, m := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		switch prev, dup := seen[m.Name]; {
		case m.Name == "":
			v.add(key+".name", "must be set")
		case dup:
			v.add(key+".name", "duplicate model name %q (also models[%d])", m.Name, prev)
		default:
			seen[m.Name] = i
		}
		if m.Backend == "" {
			v.add(key+".backend", "must be set")
		} else if _, ok := c.BackendByName(m.Backend); !ok {
			v.add(key+".backend", "unknown backend %q", m.Backend)
		}
		v.oneOf(key+".role", m.Role, RoleReference, RoleCandidate)
		v.notNegative(key+".params_b", m.ParamsB)
		v.notNegative(key+".context_tokens", float64(m.ContextTokens))
		v.notNegative(key+".memory_gb", m.MemoryGB)
		v.price(key+".price", m.Price)
		for j, f := range m.Fallbacks {
			fkey := fmt.Sprintf("%s.fallbacks[%d]", key, j)
			switch {
			case f == m.Name:
				v.add(fkey, "a model cannot fall back to itself")
			case slices.Index(m.Fallbacks, f) < j:
				v.add(fkey, "%q is listed twice", f)
			default:
				if _, ok := c.ModelByName(f); !ok {
					v.add(fkey, "unknown model %q", f)
				}
			}
		}
	}
}

// price refuses negative prices, and a GPU-hour price given together with per-token
// ones: the two would say different things about what a token costs. A GPU-hour price
// without a throughput is allowed; see Price.GPUHourUSD.
func (v *validator) price(key string, p Price) {
	v.notNegative(key+".input_per_mtok", p.InputPerMTok)
	v.notNegative(key+".output_per_mtok", p.OutputPerMTok)
	v.notNegative(key+".cached_input_per_mtok", p.CachedInputPerMTok)
	v.notNegative(key+".gpu_hour_usd", p.GPUHourUSD)
	v.notNegative(key+".throughput_tps", p.ThroughputTPS)
	if p.GPUHourUSD != 0 && (p.InputPerMTok != 0 || p.OutputPerMTok != 0 || p.CachedInputPerMTok != 0) {
		v.add(key+".gpu_hour_usd", "set gpu_hour_usd or per-token prices (input_per_mtok, output_per_mtok, cached_input_per_mtok), not both")
	}
}

func (v *validator) aliases(c Config) {
	for _, alias := range sortedKeys(c.Aliases) {
		key := fmt.Sprintf("aliases[%q]", alias)
		target := c.Aliases[alias]
		if alias == "" {
			v.add(key, "alias must not be empty")
		}
		if _, ok := c.ModelByName(alias); ok {
			v.add(key, "shadows the model of the same name")
		}
		if _, ok := c.ModelByName(target); !ok {
			v.add(key, "unknown model %q", target)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var placeholderType = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,31}$`)

func (v *validator) privacy(p Privacy) {
	for i, r := range p.Rules {
		key := fmt.Sprintf("privacy.rules[%d]", i)
		if !placeholderType.MatchString(r.Type) {
			v.add(key+".type", "must be upper-case letters, digits and underscores, starting with a letter")
		}
		if r.Pattern == "" {
			v.add(key+".pattern", "must not be empty")
		} else if re, err := regexp.Compile(r.Pattern); err != nil {
			v.add(key+".pattern", "is not a valid RE2 expression: %v", err)
		} else if re.MatchString("") {
			v.add(key+".pattern", "matches the empty string")
		}
	}
	for i, d := range p.Deny {
		key := fmt.Sprintf("privacy.deny[%d]", i)
		if !placeholderType.MatchString(d.Type) {
			v.add(key+".type", "must be upper-case letters, digits and underscores, starting with a letter")
		}
		if len(d.Values) == 0 && d.File == "" {
			v.add(key, "needs values or a file")
		}
	}
	e := p.Encryption
	ids := map[string]bool{}
	for i, k := range e.Keys {
		key := fmt.Sprintf("privacy.encryption.keys[%d]", i)
		switch {
		case k.ID == "":
			v.add(key+".id", "must not be empty")
		case ids[k.ID]:
			v.add(key+".id", "duplicate key id %q", k.ID)
		}
		ids[k.ID] = true
		if (k.Env == "") == (k.File == "") {
			v.add(key, "set exactly one of env and file")
		}
	}
	if e.Active != "" && !ids[e.Active] {
		v.add("privacy.encryption.active", "names no key in privacy.encryption.keys")
	}
	if e.Active == "" && len(e.Keys) > 0 {
		v.add("privacy.encryption.active", "must name the key that seals new records")
	}
}

func (v *validator) auth(a Auth) {
	if a.RefreshInterval <= 0 {
		v.add("auth.refresh_interval", "must be greater than 0")
	}
}

func (v *validator) tune(t Tune, backends map[string]bool) {
	seen := map[string]int{}
	for i, tr := range t.Trainers {
		key := fmt.Sprintf("tune.trainers[%d]", i)
		switch prev, dup := seen[tr.Name]; {
		case tr.Name == "":
			v.add(key+".name", "must be set")
		case dup:
			v.add(key+".name", "duplicate trainer name %q (also tune.trainers[%d])", tr.Name, prev)
		default:
			seen[tr.Name] = i
		}
		v.oneOf(key+".kind", tr.Kind, TrainerPEFT, TrainerNeMo, TrainerOpenAIFT)
		v.notNegative(key+".poll_interval", float64(tr.PollInterval))
		// unused names the keys the kind does not read, so that none is set in vain.
		unused := func(name string, set bool) {
			if set {
				v.add(key+"."+name, "is not used by kind %q", tr.Kind)
			}
		}
		switch tr.Kind {
		case TrainerPEFT:
			unused("base_url", tr.BaseURL != "")
			unused("api_key_env", tr.APIKeyEnv != "")
			unused("api_key_file", tr.APIKeyFile != "")
		case TrainerNeMo, TrainerOpenAIFT:
			if tr.BaseURL == "" {
				v.add(key+".base_url", "must be set for kind %q", tr.Kind)
			} else {
				v.httpURL(key+".base_url", tr.BaseURL)
			}
			v.keySource(key, tr.APIKeyEnv, tr.APIKeyFile)
			unused("python", tr.Python != "")
			unused("script", tr.Script != "")
		}
		v.hyperparameters(key+".hyperparameters", tr.Kind, tr.Hyperparameters)
		if tr.ServeBackend != "" && !backends[tr.ServeBackend] {
			v.add(key+".serve_backend", "names no configured backend: %q", tr.ServeBackend)
		}
		if tr.LoadAdapter && (tr.Kind != TrainerPEFT || tr.ServeBackend == "") {
			v.add(key+".load_adapter", "needs kind %q and serve_backend", TrainerPEFT)
		}
		n := tr.NeMo
		if tr.Kind != TrainerNeMo {
			unused("nemo", n != NeMoTrainer{})
			continue
		}
		if n.DataStoreURL != "" {
			v.httpURL(key+".nemo.datastore_url", n.DataStoreURL)
		}
		if n.EntityStoreURL != "" {
			v.httpURL(key+".nemo.entity_store_url", n.EntityStoreURL)
		}
		if n.Namespace != "" && !nemoName.MatchString(n.Namespace) {
			v.add(key+".nemo.namespace", "must be letters, digits, '-', '_' and '.', starting with a letter or digit")
		}
	}
}

// nemoName is what NeMo namespaces and entity names may be.
var nemoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (v *validator) hyperparameters(key, kind string, h Hyperparameters) {
	v.notNegative(key+".rank", float64(h.Rank))
	v.notNegative(key+".alpha", float64(h.Alpha))
	v.notNegative(key+".epochs", float64(h.Epochs))
	v.notNegative(key+".learning_rate", h.LearningRate)
	v.notNegative(key+".learning_rate_multiplier", h.LearningRateMultiplier)
	v.notNegative(key+".batch_size", float64(h.BatchSize))
	v.notNegative(key+".max_length", float64(h.MaxLength))
	if h.Dropout < 0 || h.Dropout >= 1 || math.IsNaN(h.Dropout) {
		v.add(key+".dropout", "must be at least 0 and less than 1")
	}
	unused := func(name string, set bool) {
		if set {
			v.add(key+"."+name, "is not used by kind %q", kind)
		}
	}
	switch kind {
	case TrainerOpenAIFT:
		// The API tunes its own way: no LoRA settings, and a multiplier instead of a rate.
		unused("rank", h.Rank != 0)
		unused("alpha", h.Alpha != 0)
		unused("dropout", h.Dropout != 0)
		unused("max_length", h.MaxLength != 0)
		if h.LearningRate != 0 {
			v.add(key+".learning_rate", "is not used by kind %q; set learning_rate_multiplier", kind)
		}
	case TrainerNeMo:
		// The sequence length is part of the customization config chosen as the base.
		unused("max_length", h.MaxLength != 0)
		unused("learning_rate_multiplier", h.LearningRateMultiplier != 0)
	case TrainerPEFT:
		unused("learning_rate_multiplier", h.LearningRateMultiplier != 0)
	}
}
