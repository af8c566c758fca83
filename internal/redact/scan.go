package redact

import (
	"net/netip"
	"strings"
)

// The built-in scanners are hand-written rather than regular expressions: Go's regexp
// has no DFA, and a dozen patterns over a 20 KB call would cost milliseconds. Each
// scanner is driven by a cheap trigger (a word that starts with a digit or an
// upper-case letter, '+', '(', '@', "://", ':') and checks the value's structure and
// checksum before it reports a span.

const numBuiltin = 9

func builtinIndex(t Type) int {
	for i, b := range BuiltinTypes {
		if b == t {
			return i
		}
	}
	return -1
}

func (r *Redactor) on(t Type) bool { return r.enabled[builtinIndex(t)] }

// rank orders types for overlaps of equal length: the higher, the more specific.
func rank(t Type) int8 {
	switch t {
	case SECRET:
		return 8
	case URLCredentials:
		return 7
	case CARD:
		return 6
	case IBAN:
		return 5
	case SSN:
		return 4
	case EMAIL:
		return 3
	case IPV6:
		return 2
	case IPV4:
		return 1
	case PHONE:
		return 0
	}
	return 9 // the operator's own rules and deny-lists
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isWord reports whether c continues a word: a detected value must not start or end
// next to one.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func isHex(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }

// scanBuiltin appends the spans of the enabled built-in PII types and of our own secret
// rules found in s.
func (r *Redactor) scanBuiltin(s string, h hint, out []span) []span {
	phone, card, ssn, ip4, iban := r.on(PHONE), r.on(CARD), r.on(SSN), r.on(IPV4), r.on(IBAN)
	secrets := r.secrets != nil
	n := len(s)
	for i := 0; i < n; {
		c := s[i]
		if !isWord(c) {
			switch {
			case (c == '+' || c == '(') && phone && i+1 < n && isDigit(s[i+1]) && (i == 0 || !isWord(s[i-1])):
				if e := matchPhone(s, i, h); e > 0 {
					out = append(out, span{i, e, PHONE})
					i = e
					continue
				}
			case (c == ':' || c == '=') && secrets:
				if a, b := matchAssignment(s, i); b > a {
					out = append(out, span{a, b, SECRET})
					i = b
					continue
				}
			}
			i++
			continue
		}
		// i starts a word.
		end := i + 1
		for end < n && isWord(s[end]) {
			end++
		}
		best := 0
		add := func(t Type, e int) {
			if e > 0 {
				out = append(out, span{i, e, t})
				best = max(best, e)
			}
		}
		if isDigit(c) && digitLeftOK(s, i) {
			if ip4 {
				add(IPV4, matchIPv4(s, i))
			}
			if ssn {
				add(SSN, matchSSN(s, i, h))
			}
			if card {
				add(CARD, matchCard(s, i))
			}
			if phone {
				add(PHONE, matchPhone(s, i, h))
			}
		}
		if iban && isUpper(c) {
			add(IBAN, matchIBAN(s, i))
		}
		if secrets {
			add(SECRET, matchToken(s, i))
		}
		i = max(end, best)
	}
	if r.on(EMAIL) {
		out = scanEmails(s, out)
	}
	if r.on(URLCredentials) {
		out = scanURLCredentials(s, out)
	}
	if r.on(IPV6) {
		out = scanIPv6(s, out)
	}
	if secrets {
		out = scanPEM(s, out)
	}
	if len(h.key) > 0 {
		out = r.scanByKey(s, h, out)
	}
	return out
}

// digitLeftOK reports whether a number may start at i: not glued to a longer dotted or
// dashed number (version 1.2.3.4.5, a date's tail), not a price or an order reference.
func digitLeftOK(s string, i int) bool {
	if i == 0 {
		return true
	}
	switch p := s[i-1]; p {
	case '.', '-', ',', '/', ':':
		return i < 2 || !isAlnum(s[i-2])
	case '$', '#', '%', '&', '@':
		return false
	}
	return !strings.HasSuffix(s[:i], "€") && !strings.HasSuffix(s[:i], "£")
}

// rightOK reports whether a number may end at e: not followed by a word, nor by a
// separator that glues on more digits.
func rightOK(s string, e int) bool {
	if e >= len(s) {
		return true
	}
	c := s[e]
	if isWord(c) {
		return false
	}
	if (c == '-' || c == '.' || c == '/' || c == ',') && e+1 < len(s) && isDigit(s[e+1]) {
		return false
	}
	return true
}

// contextBefore reports whether one of words appears (ASCII case-insensitively) in the
// 32 bytes before i.
func contextBefore(s string, i int, words ...string) bool {
	var buf [32]byte
	w := buf[:0]
	for j := max(0, i-32); j < i; j++ {
		c := s[j]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		w = append(w, c)
	}
	for _, word := range words {
		if strings.Contains(string(w), word) {
			return true
		}
	}
	return false
}

// wordBefore returns the word before i, across spaces.
func wordBefore(s string, i int) string {
	j := i
	for j > 0 && s[j-1] == ' ' {
		j--
	}
	e := j
	for j > 0 && isAlpha(s[j-1]) && e-j < 16 {
		j--
	}
	return s[j:e]
}

// clauseBefore is contextBefore limited to the clause the number is in: the words must
// not be separated from it by punctuation or another number.
func clauseBefore(s string, i int, words ...string) bool {
	a := max(0, i-32)
	for j := i - 1; j >= a; j-- {
		if c := s[j]; c == '.' || c == ';' || c == ',' || c == '\n' || isDigit(c) {
			a = j + 1
			break
		}
	}
	return contextBefore(s[a:i], i-a, words...)
}

var phoneWords = []string{"phone", "tel", "mobile", "cell", "call", "fax", "sms", "whatsapp", "contact", "text", "reach", "dial"}

// numTok is a run of digit groups: 415-555-0132, (415) 555-0132, +44 20 7946 0958.
type numTok struct {
	n     int
	lens  [8]int
	ends  [8]int
	seps  [8]byte // separator before group k (0 for the first)
	paren int     // index of the group written in parentheses, or -1
	plus  bool
	first [8]byte // first digit of each group
	// second0 is the second digit of the first group (0 when there is none).
	second0 byte
	// afterNumber is set when the token follows another number and a space, as the
	// middle of a longer grouped number would.
	afterNumber bool
}

func parseNum(s string, i int) numTok {
	t := numTok{paren: -1}
	t.afterNumber = i >= 2 && s[i-1] == ' ' && (isDigit(s[i-2]) || groupBefore(s, i-1))
	if i+1 < len(s) && isDigit(s[i+1]) {
		t.second0 = s[i+1]
	}
	j := i
	if s[j] == '+' {
		t.plus = true
		j++
	}
	var sep byte
	for t.n < len(t.lens) && j < len(s) {
		start := j
		if s[j] == '(' {
			if t.paren >= 0 {
				break
			}
			k := j + 1
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			if k == j+1 || k-j-1 > 4 || k >= len(s) || s[k] != ')' {
				break
			}
			t.paren = t.n
			t.lens[t.n], t.first[t.n] = k-j-1, s[j+1]
			j = k + 1
		} else {
			k := j
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			if k == j || k-j > 15 {
				break
			}
			t.lens[t.n], t.first[t.n] = k-j, s[j]
			j = k
		}
		_ = start
		t.seps[t.n] = sep
		t.ends[t.n] = j
		t.n++
		// A separator, then another group.
		if j >= len(s) {
			break
		}
		switch {
		case s[j] == ' ' || s[j] == '-' || s[j] == '.':
			if j+1 < len(s) && (isDigit(s[j+1]) || s[j+1] == '(') {
				sep = s[j]
				j++
				continue
			}
		case t.paren == t.n-1 && isDigit(s[j]):
			sep = ')'
			continue
		}
		break
	}
	return t
}

// groupBefore reports whether the four bytes before sp are an upper-case group of an
// IBAN or a code (" AWCS 0817 ..."), so that what follows is its tail, not a number.
func groupBefore(s string, sp int) bool {
	if sp < 4 || (sp > 4 && s[sp-5] != ' ') {
		return false
	}
	for _, c := range []byte(s[sp-4 : sp]) {
		if !isUpper(c) && !isDigit(c) {
			return false
		}
	}
	return true
}

func (t *numTok) digits(k int) int {
	d := 0
	for g := 0; g < k; g++ {
		d += t.lens[g]
	}
	return d
}

// matchPhone matches a phone number at i: E.164 with '+', North American
// (415) 555-0132, 415-555-0132, 415.555.0132, national numbers with a leading 0 in
// groups (020 7946 0958, 01 23 45 67 89), and bare 10-11 digit numbers only where the
// text or the JSON key says it is a phone. It returns the end, or 0.
func matchPhone(s string, i int, h hint) int {
	t := parseNum(s, i)
	ctx := h.phone || clauseBefore(s, i, phoneWords...)
	for k := t.n; k >= 1; k-- {
		e := t.ends[k-1]
		if !rightOK(s, e) || (k < t.n && t.seps[k] != ' ' && t.seps[k] != ')') {
			continue
		}
		if phoneShape(&t, k, ctx) {
			return e
		}
	}
	return 0
}

func phoneShape(t *numTok, k int, ctx bool) bool {
	d := t.digits(k)
	if t.plus {
		if k > 1 && t.lens[0] > 4 {
			return false
		}
		return d >= 8 && d <= 15
	}
	// All separators the same, except after a parenthesised group.
	var sep byte
	for g := 1; g < k; g++ {
		if g == t.paren+1 {
			continue
		}
		if sep == 0 {
			sep = t.seps[g]
		} else if t.seps[g] != sep {
			return false
		}
	}
	nanp := func(g int) bool { // area code and exchange start with 2-9
		return t.lens[g] == 3 && t.lens[g+1] == 3 && t.lens[g+2] == 4 &&
			t.first[g] >= '2' && t.first[g+1] >= '2'
	}
	switch {
	case k == 3 && nanp(0) && (t.paren < 0 || t.paren == 0):
		return true
	case k == 4 && t.lens[0] == 1 && t.first[0] == '1' && t.paren != 0 && nanp(1):
		return true
	case k >= 2 && t.first[0] == '0' && t.second0 != '0' && t.lens[0] >= 2 && d >= 9 && d <= 12 && !t.afterNumber:
		if k == 3 && t.lens[0] == 3 && t.lens[1] == 2 && t.lens[2] == 4 {
			return false // SSN-shaped
		}
		for g := 0; g < k; g++ {
			if t.lens[g] < 2 || t.lens[g] > 8 {
				return false
			}
		}
		if sep == '-' && k > 2 {
			return false // 030-1234567 is a number; 0509-4008-116 is a product code
		}
		if sep == '.' { // 01.23.45.67.89
			for g := 0; g < k; g++ {
				if t.lens[g] != 2 {
					return false
				}
			}
		}
		return true
	case k == 1 && ctx && t.paren < 0 && !t.afterNumber:
		switch {
		case d == 10 && t.first[0] == '0':
			return true
		case d == 10:
			return t.first[0] >= '2'
		case d == 11:
			return t.first[0] == '1' || t.first[0] == '0'
		}
	case k == 2 && ctx && t.paren < 0 && t.lens[0] == 3 && t.lens[1] == 4 && t.first[0] >= '2':
		return true // 555-0132 after "call me at"
	}
	return false
}

// matchCard matches a payment card number at i: 13-19 digits, bare or in groups
// separated by one kind of space or dash (4-4-4-4, 4-6-5, 4-4-4-4-3), with a valid
// Luhn checksum and an issuer prefix of the right length.
func matchCard(s string, i int) int {
	if i >= 2 && s[i-1] == ' ' && (isDigit(s[i-2]) || groupBefore(s, i-1)) {
		return 0 // the tail of a longer grouped number, such as an IBAN that failed its check
	}
	var lens [8]int
	var ends [8]int
	n := 0
	var sep byte
	j := i
	for n < len(lens) {
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k == j || k-j > 19 {
			break
		}
		lens[n], ends[n] = k-j, k
		n++
		j = k
		if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) && (sep == 0 || sep == s[j]) {
			sep = s[j]
			j++
			continue
		}
		break
	}
	var buf [19]byte
	for k := n; k >= 1; k-- {
		d := 0
		for g := 0; g < k; g++ {
			d += lens[g]
		}
		if d < 13 || d > 19 || !rightOK(s, ends[k-1]) {
			continue
		}
		if k > 1 && !cardGroups(lens[:k]) {
			continue
		}
		num := buf[:0]
		for j := i; j < ends[k-1]; j++ {
			if isDigit(s[j]) {
				num = append(num, s[j])
			}
		}
		if luhn(num) && cardIIN(num) {
			return ends[k-1]
		}
	}
	return 0
}

func cardGroups(lens []int) bool {
	k := len(lens)
	switch {
	case k == 3 && lens[0] == 4 && lens[1] == 6 && (lens[2] == 5 || lens[2] == 4):
		return true // American Express, Diners
	case k >= 4:
		for g := 0; g < k-1; g++ {
			if lens[g] != 4 {
				return false
			}
		}
		return lens[k-1] >= 1 && lens[k-1] <= 4
	}
	return false
}

// matchSSN matches a US social security number 123-45-6789 at i (or, after "SSN" or
// "social security" or under a JSON key saying so, 123 45 6789 and 123456789), with
// area, group and serial in their issued ranges.
func matchSSN(s string, i int, h hint) int {
	t := parseNum(s, i)
	ctx := h.ssn || contextBefore(s, i, "ssn", "social security", "social sec")
	var e int
	switch {
	case t.n >= 3 && t.lens[0] == 3 && t.lens[1] == 2 && t.lens[2] == 4 && t.paren < 0 && !t.plus &&
		t.seps[1] == t.seps[2] && (t.seps[1] == '-' || (ctx && t.seps[1] == ' ')):
		e = t.ends[2]
	case ctx && t.n >= 1 && t.lens[0] == 9 && !t.plus && t.paren < 0:
		e = t.ends[0]
	default:
		return 0
	}
	if !rightOK(s, e) || (e < len(s) && s[e] == '-') {
		return 0
	}
	var buf [9]byte
	d := buf[:0]
	for j := i; j < e; j++ {
		if isDigit(s[j]) {
			d = append(d, s[j])
		}
	}
	if !validSSN(d) {
		return 0
	}
	return e
}

// matchIPv4 matches a dotted-quad IPv4 address at i: four decimal octets 0-255 without
// leading zeros, not part of a longer dotted number and not after "version".
func matchIPv4(s string, i int) int {
	j := i
	for octet := 0; octet < 4; octet++ {
		if octet > 0 {
			if j >= len(s) || s[j] != '.' {
				return 0
			}
			j++
		}
		k := j
		v := 0
		for k < len(s) && isDigit(s[k]) && k-j < 3 {
			v = v*10 + int(s[k]-'0')
			k++
		}
		if k == j || v > 255 || (s[j] == '0' && k-j > 1) || (k < len(s) && isDigit(s[k])) {
			return 0
		}
		j = k
	}
	if !rightOK(s, j) || (j < len(s) && s[j] == '.' && j+1 < len(s) && isDigit(s[j+1])) {
		return 0
	}
	switch strings.ToLower(wordBefore(s, i)) {
	case "version", "ver", "v", "release", "build", "firmware", "python", "go", "node":
		return 0
	}
	return j
}

// matchIBAN matches an IBAN at i: a known country code, two check digits and the
// country's length of letters and digits, bare or in groups separated by single
// spaces, passing the mod-97 check.
func matchIBAN(s string, i int) int {
	if i+4 > len(s) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) {
		return 0
	}
	want := ibanLength(s[i : i+2])
	if want == 0 {
		return 0
	}
	var buf [34]byte
	v := buf[:0]
	j := i
	for j < len(s) && len(v) < want {
		c := s[j]
		switch {
		case isDigit(c) || isUpper(c):
			v = append(v, c)
			j++
		case c == ' ' && j+1 < len(s) && (isDigit(s[j+1]) || isUpper(s[j+1])) && len(v) >= 4:
			j++
		default:
			return 0
		}
	}
	if len(v) != want || (j < len(s) && isWord(s[j])) || !ibanChecksum(v) {
		return 0
	}
	return j
}

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
