package redact

import "strings"

// luhn reports whether the digits pass the Luhn checksum.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

func prefixInt(d []byte, n int) int {
	v := 0
	for i := 0; i < n && i < len(d); i++ {
		v = v*10 + int(d[i]-'0')
	}
	return v
}

// cardIIN reports whether the digits start with an issuer prefix that issues numbers
// of that length: Visa, Mastercard, American Express, Discover, Diners Club, JCB,
// UnionPay, Maestro and Mir.
func cardIIN(d []byte) bool {
	n := len(d)
	p2, p3, p4 := prefixInt(d, 2), prefixInt(d, 3), prefixInt(d, 4)
	switch {
	case d[0] == '4':
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return n == 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case p4 == 6011, p3 >= 644 && p3 <= 649, p2 == 65:
		return n >= 16 && n <= 19
	case p4 >= 3528 && p4 <= 3589:
		return n >= 16 && n <= 19
	case p2 == 36, p3 >= 300 && p3 <= 305, p2 == 38, p2 == 39:
		return n >= 14 && n <= 19
	case p2 == 62:
		return n >= 16 && n <= 19
	case p4 >= 2200 && p4 <= 2204:
		return n >= 16 && n <= 19
	case p2 == 50, p2 >= 56 && p2 <= 69:
		return n >= 13 && n <= 19
	}
	return false
}

// validSSN reports whether nine digits are a social security number as issued: area
// not 000, 666 or 900-999; group not 00; serial not 0000.
func validSSN(d []byte) bool {
	if len(d) != 9 {
		return false
	}
	area, group, serial := prefixInt(d, 3), prefixInt(d[3:], 2), prefixInt(d[5:], 4)
	return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

// ibanLengths is the length of an IBAN per country code (ISO 13616 registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
	"BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
	"DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
	"GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
	"IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
	"ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
	"PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
	"SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
	"TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

func ibanLength(cc string) int { return ibanLengths[cc] }

// ibanChecksum reports whether an IBAN (upper-case letters and digits, no spaces)
// passes ISO 7064 mod 97-10: the country code and check digits moved to the end,
// letters as 10-35, the number mod 97 is 1.
func ibanChecksum(v []byte) bool {
	if len(v) < 5 {
		return false
	}
	rem := 0
	add := func(c byte) {
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	for _, c := range v[4:] {
		add(c)
	}
	for _, c := range v[:4] {
		add(c)
	}
	return rem == 1
}

// isPlaceholder reports whether s is one of our placeholders: <TYPE_n> or <TYPE_hex>.
func isPlaceholder(s string) bool {
	return len(s) >= 4 && s[0] == '<' && placeholderLen(s) == len(s)
}

// placeholderLen returns the length of the placeholder s starts with, or 0.
func placeholderLen(s string) int {
	if len(s) < 4 || s[0] != '<' || !isUpper(s[1]) {
		return 0
	}
	k := strings.IndexByte(s[:min(len(s), 64)], '>')
	if k < 0 {
		return 0
	}
	body := s[1:k]
	u := strings.LastIndexByte(body, '_')
	if u <= 0 || u == len(body)-1 {
		return 0
	}
	for i := 0; i < u; i++ {
		if c := body[i]; !isUpper(c) && !isDigit(c) && c != '_' {
			return 0
		}
	}
	id := body[u+1:]
	digits, hex := true, len(id) == 8
	for i := 0; i < len(id); i++ {
		c := id[i]
		digits = digits && isDigit(c)
		hex = hex && (isDigit(c) || (c >= 'a' && c <= 'f'))
	}
	if !digits && !hex {
		return 0
	}
	return k + 1
}
