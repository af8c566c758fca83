package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/downshift-dev/downshift/internal/config"
	"github.com/downshift-dev/downshift/internal/redact"
	"github.com/downshift-dev/downshift/internal/seal"
	"github.com/downshift-dev/downshift/internal/store"
)

// privacy is what the recorder does to a call before it is written: redaction, then
// sealing. Both run in the recorder's writer, never on the request path.
type privacy struct {
	redactor *redact.Redactor // nil when redaction is off
	keyring  *seal.Keyring    // not Enabled when encryption is off
}

// newPrivacy builds redaction and encryption from configuration, warning about
// whatever is off.
func newPrivacy(c config.Privacy, log *slog.Logger) (*privacy, error) {
	p := &privacy{}
	if c.Redact {
		opts := redact.Options{}
		for _, r := range c.Rules {
			opts.Rules = append(opts.Rules, redact.Rule{Type: redact.Type(r.Type), Pattern: r.Pattern})
		}
		for i, d := range c.Deny {
			values := append([]string(nil), d.Values...)
			if d.File != "" {
				more, err := readLines(d.File)
				if err != nil {
					return nil, fmt.Errorf("privacy.deny[%d].file: %w", i, err)
				}
				values = append(values, more...)
			}
			opts.Deny = append(opts.Deny, redact.Deny{Type: redact.Type(d.Type), Values: values})
		}
		if c.PseudonymKeyFile != "" {
			key, err := os.ReadFile(c.PseudonymKeyFile)
			if err != nil {
				return nil, fmt.Errorf("privacy.pseudonym_key_file: %w", err)
			}
			if key = bytes.TrimSpace(key); len(key) < 32 {
				return nil, fmt.Errorf("privacy.pseudonym_key_file %s: the key must be at least 32 bytes", c.PseudonymKeyFile)
			}
			opts.PseudonymKey = key
		}
		r, err := redact.New(opts)
		if err != nil {
			return nil, err
		}
		p.redactor = r
	} else {
		log.Warn("redaction is off (privacy.redact: false): PII and secrets in calls are recorded as sent")
	}
	kr, err := seal.NewKeyring(c.Encryption, os.Getenv)
	if err != nil {
		return nil, err
	}
	p.keyring = kr
	if !kr.Enabled() {
		log.Warn("encryption at rest is off (no privacy.encryption keys): payloads are stored unencrypted")
	}
	return p, nil
}

// prepare redacts and seals one call in place. A call it fails on is not written.
func (p *privacy) prepare(c *store.Call) error {
	if p.redactor != nil {
		// One call, one numbering: a value in the request and in the second answer gets
		// the same placeholder in both.
		req, resp, second, sum, err := p.redactor.RedactCallWithSecond(c.Request, c.Response, c.SecondResponse())
		// A body that is not JSON (a malformed request the gateway refused) comes back
		// redacted as text, which is safe to store.
		if err != nil && !errors.Is(err, redact.ErrNotJSON) {
			return fmt.Errorf("redacting call %s: %w", c.ID, err)
		}
		c.Request, c.Response = req, resp
		if c.Second != nil {
			sec := *c.Second // a copy: the gateway's SecondAnswer is not the recorder's to change
			sec.Response = second
			c.Second = &sec
		}
		c.Redactions = sum.ByType()
	}
	if p.keyring.Enabled() {
		return p.keyring.SealCall(c)
	}
	return nil
}

// readLines reads one value a line, skipping blank lines and # comments.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}
