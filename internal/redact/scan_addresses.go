package redact

import (
	"net/netip"
	"strings"
)

// scanEmails finds e-mail addresses around each '@'.
func scanEmails(s string, out []span) []span {
	off := 0
	for {
		k := strings.IndexByte(s[off:], '@')
		if k < 0 {
			return out
		}
		at := off + k
		off = at + 1
		a := at
		for a > 0 && isLocal(s[a-1]) {
			a--
		}
		for a < at && s[a] == '.' {
			a++
		}
		if a == at || s[at-1] == '.' {
			continue
		}
		e, labels, last := at+1, 0, 0
		for {
			j := e
			for j < len(s) && (isAlnum(s[j]) || s[j] == '-') {
				j++
			}
			if j == e || s[e] == '-' || s[j-1] == '-' {
				break
			}
			labels++
			last = e
			e = j
			if e+1 < len(s) && s[e] == '.' && isAlnum(s[e+1]) {
				e++
				continue
			}
			break
		}
		if labels < 2 || e-last < 2 || !allAlpha(s[last:e]) {
			continue
		}
		out = append(out, span{a, e, EMAIL})
		off = e
	}
}

func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func allAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlpha(s[i]) {
			return false
		}
	}
	return true
}

// scanURLCredentials finds URLs with a password in their user info
// (scheme://user:pass@host) and reports the whole URL: the host and path of a
// credentialed URL say too much about the account it opens, and cutting only the user
// info would leave a password-shaped tail whenever the user info holds an unescaped
// '@'.
func scanURLCredentials(s string, out []span) []span {
	off := 0
	for {
		k := strings.Index(s[off:], "://")
		if k < 0 {
			return out
		}
		p := off + k
		off = p + 3
		a := p
		for a > 0 && (isAlnum(s[a-1]) || s[a-1] == '+' || s[a-1] == '.' || s[a-1] == '-') {
			a--
		}
		for a < p && !isAlpha(s[a]) {
			a++
		}
		if a == p {
			continue
		}
		// The URL runs to whitespace, a quote or a closing bracket.
		e := p + 3
		for e < len(s) && s[e] > ' ' && strings.IndexByte("\"'<>`)]}|\\", s[e]) < 0 {
			e++
		}
		for e > p+3 && strings.IndexByte(".,;:!?", s[e-1]) >= 0 {
			e--
		}
		auth := s[p+3 : e]
		if c := strings.IndexAny(auth, "/?#"); c >= 0 {
			auth = auth[:c]
		}
		at := strings.LastIndexByte(auth, '@')
		if at < 0 || at == len(auth)-1 {
			continue
		}
		colon := strings.IndexByte(auth[:at], ':')
		if colon < 0 || colon == at-1 {
			continue
		}
		out = append(out, span{a, e, URLCredentials})
		off = e
	}
}

// scanIPv6 finds IPv6 addresses: runs of hex digits and colons (with an IPv4 tail)
// holding at least two colons and a decimal digit, that net/netip accepts.
func scanIPv6(s string, out []span) []span {
	off := 0
	for {
		k := strings.IndexByte(s[off:], ':')
		if k < 0 {
			return out
		}
		c := off + k
		a := c
		for a > 0 && (isHex(s[a-1]) || s[a-1] == ':') {
			a--
		}
		e := c
		for e < len(s) && (isHex(s[e]) || s[e] == ':' || s[e] == '.') {
			e++
		}
		off = e
		for e > a && s[e-1] == '.' {
			e--
		}
		if e-a >= 2 && s[e-1] == ':' && s[e-2] != ':' {
			e--
		}
		if (a > 0 && (isWord(s[a-1]) || s[a-1] == '.')) || (e < len(s) && isWord(s[e])) {
			continue
		}
		cand := s[a:e]
		if strings.Count(cand, ":") < 2 || !strings.ContainsAny(cand, "0123456789") {
			continue
		}
		if ip, err := netip.ParseAddr(cand); err == nil && ip.Is6() {
			out = append(out, span{a, e, IPV6})
		}
	}
}

func canonicalIPv6(s string) string {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.String()
	}
	return strings.ToLower(s)
}
