package ui

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/textfmt"
)

// funcs are the templates' formatting functions. Each writes "–" for a figure that
// does not exist (NaN: a share of no calls).
var funcs = template.FuncMap{
	"count":         fmtCount,
	"int64":         func(n int) int64 { return int64(n) },
	"add":           func(a, b int64) int64 { return a + b },
	"usd":           fmtUSD,
	"pct":           fmtPct,
	"dur":           fmtDur,
	"when":          fmtWhen,
	"iso":           func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"num":           fmtNum,
	"raw":           rawValue,
	"pathesc":       url.PathEscape,
	"chart":         func(c chart) chartView { return c.view() },
	"defaultCanary": func() string { return fmtPct(policy.DefaultCanaryShare) },
}

const none = "–"

func fmtCount(n int64) string { return textfmt.Thousands(fmt.Sprint(n)) }

// fmtUSD writes dollars with cents, or four decimals under a dollar so that the
// cost of a few small calls does not read $0.00.
func fmtUSD(x float64) string {
	if math.IsNaN(x) {
		return none
	}
	sign := ""
	if x < 0 {
		sign, x = "−", -x
	}
	switch {
	case x == 0:
		return "$0"
	case x < 1:
		return sign + "$" + strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", x), "0"), ".")
	}
	return sign + "$" + textfmt.Thousands(fmt.Sprintf("%.2f", x))
}

func fmtPct(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return none
	}
	return textfmt.Pct1(x)
}

// fmtDur writes a latency in milliseconds, or seconds from 10 s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return none
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return textfmt.Thousands(fmt.Sprintf("%.0f", ms(d))) + " ms"
}

func fmtWhen(t time.Time) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// fmtNum writes a figure with up to two decimals.
func fmtNum(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return none
	}
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", x), "0"), ".")
	if s == "-0" {
		s = "0"
	}
	return textfmt.Thousands(s)
}

// rawValue writes a figure for a data-value attribute, which browser tests compare
// with the store's: full precision, "" for none.
func rawValue(x any) string {
	switch v := x.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ""
		}
		return fmt.Sprint(v)
	case time.Duration:
		return fmt.Sprint(ms(v))
	}
	return fmt.Sprint(x)
}

// Formats of chart values.
func fmtRate(x float64) string { return fmtNum(x) }
func fmtMS(x float64) string   { return fmtNum(x) }
