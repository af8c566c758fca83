package redact

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
)

// secretScanner runs gitleaks' default rules (222 in v8.30) as a library.
//
// Measured on the bundled tau-bench calls (2 shared cores, one test goroutine): the
// whole default rule set scans agent text at 4.9 MB/s, ~2.2 ms per call, almost all of
// it in two rules whose keywords are everywhere in prose: generic-api-key (keywords
// "key", "api", "token", ...; 1.36 ms on the 6 KB system prompt alone) and
// vault-service-token (keyword "s.", any sentence ending in a plural; 0.16 ms). Without
// those two the rest runs at 42 MB/s. So the two run apart, only on the windows of
// text that they can match: a keyword followed by an assignment operator, or "s." /
// "hvs." at the start of a word followed by a token-shaped run. Their findings are the
// same, since both rules match within a line and the windows cover the line around
// the keyword.
type secretScanner struct {
	main *detect.Detector // all default rules but the slow ones; nil without gitleaks
	slow *detect.Detector // the slow ones, run on windows
}

var slowRules = map[string]bool{"generic-api-key": true, "vault-service-token": true}

func newSecretScanner(gitleaks bool) (*secretScanner, error) {
	if !gitleaks {
		return &secretScanner{}, nil
	}
	// A viper of our own: gitleaks' NewDetectorDefaultConfig sets up the global one.
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(config.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("redact: gitleaks default config: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return nil, fmt.Errorf("redact: gitleaks default config: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("redact: gitleaks default config: %w", err)
	}
	main, slow := subset(cfg, func(id string) bool { return !slowRules[id] }), subset(cfg, func(id string) bool { return slowRules[id] })
	return &secretScanner{main: detect.NewDetector(main), slow: detect.NewDetector(slow)}, nil
}

// subset returns cfg with the rules keep accepts and their keywords.
func subset(cfg config.Config, keep func(id string) bool) config.Config {
	out := cfg
	out.Rules = make(map[string]config.Rule)
	out.Keywords = make(map[string]struct{})
	out.OrderedRules = nil
	for _, id := range cfg.OrderedRules {
		r, ok := cfg.Rules[id]
		if !ok || !keep(id) {
			continue
		}
		out.Rules[id] = r
		out.OrderedRules = append(out.OrderedRules, id)
		for _, k := range r.Keywords {
			out.Keywords[strings.ToLower(k)] = struct{}{}
		}
	}
	return out
}

// secretsIn returns the secrets gitleaks finds in s, each once.
func (g *secretScanner) secretsIn(s string) []string {
	if g.main == nil || len(s) < 8 {
		return nil
	}
	var found []string
	add := func(v string) {
		// generic-api-key's value class takes the full stop that ends a sentence.
		v = strings.TrimRight(strings.TrimSpace(v), ".")
		if len(v) >= 6 && !isPlaceholder(v) && !containsString(found, v) {
			found = append(found, v)
		}
	}
	for _, f := range g.main.DetectString(s) {
		add(f.Secret)
	}
	for _, w := range slowWindows(s) {
		for _, f := range g.slow.DetectString(s[w[0]:w[1]]) {
			add(f.Secret)
		}
	}
	return found
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// addOccurrences appends a SECRET span for every occurrence of every value in s.
func addOccurrences(s string, values []string, t Type, out []span) []span {
	for _, v := range values {
		off := 0
		for {
			k := strings.Index(s[off:], v)
			if k < 0 {
				break
			}
			out = append(out, span{off + k, off + k + len(v), t})
			off += k + len(v)
		}
	}
	return out
}

// genericKeywords are generic-api-key's keywords, in the case its regexp matches them.
var genericKeywords = []string{"access", "auth", "api", "credential", "creds", "key", "passwd", "password", "secret", "token"}

// slowWindows returns the windows of s that the slow rules can match in, merged.
//
// generic-api-key is [\w.-]{0,50}? keyword [ \t\w.-]{0,20} [\s'"]{0,3} operator
// [\x60'"\s=]{0,5} value{10,150} end, so a window runs from 60 bytes before a keyword
// that an operator follows within 24 bytes, to 200 bytes after it and on to the next
// space. vault-service-token is \b(hvs\.[\w-]{90,120}|s\.[a-z0-9]{24}) end.
func slowWindows(s string) [][2]int {
	var lower []byte
	var wins [][2]int
	add := func(a, b int) {
		a, b = max(0, a), min(len(s), b)
		for b < len(s) && s[b] > ' ' && b-a < 600 {
			b++
		}
		if n := len(wins); n > 0 && a <= wins[n-1][1] {
			wins[n-1][1] = max(wins[n-1][1], b)
			return
		}
		wins = append(wins, [2]int{a, b})
	}
	lower = asciiLower(make([]byte, 0, len(s)), s)
	ls := string(lower)
	type hit struct{ a, b int }
	var hits []hit
	for _, kw := range genericKeywords {
		off := 0
		for {
			k := strings.Index(ls[off:], kw)
			if k < 0 {
				break
			}
			a := off + k
			off = a + len(kw)
			if operatorFollows(s, off) {
				hits = append(hits, hit{a, off})
			}
		}
	}
	for off := 0; ; {
		k := strings.Index(ls[off:], "s.")
		if k < 0 {
			break
		}
		a := off + k
		off = a + 2
		if a > 0 && isWord(s[a-1]) && !(a >= 2 && strings.HasPrefix(ls[a-2:], "hvs.") && (a < 3 || !isWord(s[a-3]))) {
			continue
		}
		j := off
		for j < len(s) && (isWord(s[j]) || s[j] == '-') {
			j++
		}
		if j-off >= 24 {
			hits = append(hits, hit{a - 2, j})
		}
	}
	if len(hits) == 0 {
		return nil
	}
	// Windows in order of position, so that add can merge neighbours.
	slices.SortFunc(hits, func(x, y hit) int { return x.a - y.a })
	for _, h := range hits {
		add(h.a-60, h.b+200)
	}
	return wins
}

// operatorFollows reports whether, from i, up to 20 of [ \t\w.-] and up to 3 of
// [\s'"] lead to one of generic-api-key's assignment operators.
func operatorFollows(s string, i int) bool {
	j := i
	for j < len(s) && j-i < 20 && (isWord(s[j]) || s[j] == ' ' || s[j] == '\t' || s[j] == '.' || s[j] == '-') {
		j++
	}
	for k := 0; k < 3 && j < len(s) && (s[j] <= ' ' || s[j] == '\'' || s[j] == '"'); k++ {
		j++
	}
	return j < len(s) && strings.IndexByte("=>:|?,", s[j]) >= 0
}

// asciiLower appends s to dst with ASCII letters lower-cased; every other byte,
// multi-byte UTF-8 included, is kept, so offsets stay the same.
func asciiLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
