// Package textfmt formats figures and cells for downshift's terminal tables and HTML
// reports, so that every report writes a thousand, a share and a long label the same
// way. It holds pure functions only.
package textfmt

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Thousands puts commas in the integer part of a formatted number: "12345.6" becomes
// "12,345.6". A leading sign is kept in front.
func Thousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	b.WriteString(sign)
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

// Pct1 formats a share (0.988) as a percentage with one decimal ("98.8%").
func Pct1(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

// Cell makes s fit a table cell of n runes: tabs and line breaks become spaces, and a
// longer s is cut, the cut marked with an ellipsis.
func Cell(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// USD formats dollars: cents from a dollar up ("$9.80", "$1,234.50"), up to three
// significant digits under a dollar ("$0.123", "$0.00345", "$0.02"), so that the cost of a
// few small calls does not round to nothing and paid, reference and saved still add
// up to the eye. A negative amount has its sign before the dollar sign ("-$0.0025").
func USD(x float64) string {
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	switch {
	case x < 5e-7: // what is left of a sum of costs that cancel out
		return "$0"
	case x >= 1:
		return sign + "$" + Thousands(fmt.Sprintf("%.2f", x))
	}
	d := max(2, 2-int(math.Floor(math.Log10(x))))
	s := fmt.Sprintf("%.*f", d, x)
	for len(s) > len("0.00") && s[len(s)-1] == '0' {
		s = s[:len(s)-1] // "0.0200" is "0.02"
	}
	return sign + "$" + s
}
