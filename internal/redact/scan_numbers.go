package redact

import (
	"strings"
)

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
