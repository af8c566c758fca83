package redact

import (
	"strings"
)

// matchToken matches, at the start of a word, our own rules for well-known secret
// formats: OpenAI and Anthropic keys (sk-...), Stripe (sk_live_, rk_live_), AWS access
// key ids (AKIA...), Google API keys (AIza...), GitHub (ghp_, github_pat_), GitLab
// (glpat-), Slack (xox?-), and JWTs. gitleaks knows these and ~200 more; these run
// without it and cost next to nothing, since they only look at word starts.
func matchToken(s string, i int) int {
	rest := s[i:]
	tail := func(prefix int, min int, ok func(byte) bool) int {
		j := i + prefix
		for j < len(s) && ok(s[j]) {
			j++
		}
		if j-i-prefix < min {
			return 0
		}
		return j
	}
	alnum := isAlnum
	urlsafe := func(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }
	switch s[i] {
	case 's':
		if strings.HasPrefix(rest, "sk-") {
			return tail(3, 20, urlsafe)
		}
		if strings.HasPrefix(rest, "sk_live_") || strings.HasPrefix(rest, "sk_test_") {
			return tail(8, 16, alnum)
		}
	case 'r':
		if strings.HasPrefix(rest, "rk_live_") {
			return tail(8, 16, alnum)
		}
	case 'A':
		if len(rest) >= 20 && (strings.HasPrefix(rest, "AKIA") || strings.HasPrefix(rest, "ASIA")) {
			if e := tail(4, 16, func(c byte) bool { return isUpper(c) || isDigit(c) }); e == i+20 {
				return e
			}
		}
		if strings.HasPrefix(rest, "AIza") {
			if e := tail(4, 35, urlsafe); e == i+39 {
				return e
			}
		}
	case 'g':
		if len(rest) > 4 && strings.HasPrefix(rest, "gh") && strings.IndexByte("pousr", rest[2]) >= 0 && rest[3] == '_' {
			return tail(4, 36, alnum)
		}
		if strings.HasPrefix(rest, "github_pat_") {
			return tail(11, 22, func(c byte) bool { return isAlnum(c) || c == '_' })
		}
		if strings.HasPrefix(rest, "glpat-") {
			return tail(6, 20, urlsafe)
		}
	case 'x':
		if len(rest) > 5 && strings.HasPrefix(rest, "xox") && strings.IndexByte("abposr", rest[3]) >= 0 && rest[4] == '-' {
			return tail(5, 10, urlsafe)
		}
	case 'e':
		if strings.HasPrefix(rest, "eyJ") {
			return matchJWT(s, i)
		}
	}
	return 0
}

func matchJWT(s string, i int) int {
	j := i
	for part := 0; part < 3; part++ {
		if part > 0 {
			if j >= len(s) || s[j] != '.' {
				return 0
			}
			j++
		}
		k := j
		for k < len(s) && (isAlnum(s[k]) || s[k] == '-' || s[k] == '_') {
			k++
		}
		if k-j < 8 {
			return 0
		}
		j = k
	}
	return j
}

// scanPEM finds private-key blocks, BEGIN line to END line.
func scanPEM(s string, out []span) []span {
	off := 0
	for {
		k := strings.Index(s[off:], "-----BEGIN ")
		if k < 0 {
			return out
		}
		a := off + k
		hdrEnd := strings.Index(s[a+11:], "-----")
		if hdrEnd < 0 || hdrEnd > 60 || !strings.Contains(s[a+11:a+11+hdrEnd], "PRIVATE KEY") {
			off = a + 11
			continue
		}
		endTag := strings.Index(s[a:], "-----END ")
		if endTag < 0 {
			// A truncated block: take it to the end of the text.
			return append(out, span{a, len(s), SECRET})
		}
		e := a + endTag + 9
		if c := strings.Index(s[e:], "-----"); c >= 0 && c <= 60 {
			e += c + 5
		}
		out = append(out, span{a, e, SECRET})
		off = e
	}
}

// secretKeys are assignment keys whose value is a secret.
var secretKeys = map[string]bool{
	"password": true, "passwd": true, "pwd": true, "pass": true, "passphrase": true,
	"secret": true, "client_secret": true, "api_key": true, "apikey": true,
	"access_token": true, "auth_token": true, "refresh_token": true, "id_token": true,
	"token": true, "private_key": true, "secret_key": true, "secret_access_key": true,
	"aws_secret_access_key": true, "authorization": true, "x_api_key": true,
	"session_token": true, "bearer": true,
}

func isSecretKey(k string) bool {
	if len(k) < 3 || len(k) > 40 {
		return false
	}
	var buf [40]byte
	b := buf[:0]
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case isUpper(c):
			c += 'a' - 'A'
		case c == '-' || c == '.':
			c = '_'
		}
		b = append(b, c)
	}
	w := string(b)
	if secretKeys[w] {
		return true
	}
	for _, suf := range []string{"_password", "_passwd", "_secret", "_token", "_api_key", "_apikey", "_secret_key"} {
		if strings.HasSuffix(w, suf) {
			return true
		}
	}
	return false
}

// matchAssignment matches "password=...", "api_key: ...", "\"token\": \"...\"" with
// the operator at i, and returns the value's bounds. An unquoted value must hold a
// digit or a symbol, so that prose ("password: forgotten") is left alone.
func matchAssignment(s string, i int) (int, int) {
	// The key, before the operator: skip spaces and one quote.
	j := i
	for j > 0 && s[j-1] == ' ' {
		j--
	}
	if j > 0 && (s[j-1] == '"' || s[j-1] == '\'') {
		j--
	}
	ke := j
	for j > 0 && ke-j < 40 && (isWord(s[j-1]) || s[j-1] == '-' || s[j-1] == '.') {
		j--
	}
	if ke == j || !isSecretKey(s[j:ke]) {
		return 0, 0
	}
	// The value.
	v := i + 1
	for v < len(s) && s[v] == ' ' {
		v++
	}
	var q byte
	if v < len(s) && (s[v] == '"' || s[v] == '\'') {
		q = s[v]
		v++
	}
	if low := strings.ToLower(s[v:min(len(s), v+7)]); strings.HasPrefix(low, "bearer ") || strings.HasPrefix(low, "basic ") {
		v += strings.IndexByte(s[v:], ' ') + 1
	}
	e := v
	symbol := false
	for e < len(s) {
		c := s[e]
		if q != 0 {
			if c == q || c == '\n' {
				break
			}
		} else if c <= ' ' || strings.IndexByte(",;\"'&)}]<>", c) >= 0 {
			break
		}
		if !isAlpha(c) {
			symbol = true
		}
		e++
	}
	if q == 0 {
		for e > v && s[e-1] == '.' {
			e--
		}
	}
	if e-v < 6 || (q == 0 && !symbol) || isPlaceholder(s[v:e]) {
		return 0, 0
	}
	switch strings.ToLower(s[v:e]) {
	case "null", "undefined", "********", "redacted", "<redacted>":
		return 0, 0
	}
	return v, e
}

// scanByKey adds what the JSON key a value sits under says it is: a secret under
// "password" or "api_key"; a phone number or SSN in bare digits under "phone" or
// "ssn" is found by the scanners themselves through the hint.
func (r *Redactor) scanByKey(s string, h hint, out []span) []span {
	if r.secrets == nil || !h.secret {
		return out
	}
	a, b := 0, len(s)
	for a < b && s[a] == ' ' {
		a++
	}
	for b > a && s[b-1] == ' ' {
		b--
	}
	if low := strings.ToLower(s[a:min(b, a+7)]); strings.HasPrefix(low, "bearer ") || strings.HasPrefix(low, "basic ") {
		a += strings.IndexByte(s[a:], ' ') + 1
	}
	if b-a < 4 || isPlaceholder(s[a:b]) {
		return out
	}
	return append(out, span{a, b, SECRET})
}
