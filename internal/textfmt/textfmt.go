// Package textfmt formats figures and cells for downshift's terminal tables and HTML
// reports, so that every report writes a thousand, a share and a long label the same
// way. It holds pure functions only.
package textfmt

import (
	"fmt"
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
