package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/downshift-dev/downshift/internal/textfmt"
)

// WriteJSON writes the report as indented JSON, with the field names documented on
// Report and Workload.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for a terminal: a summary, one row per workload in the
// report's order (highest cost first), and the reasons behind each readiness score.
func WriteTable(w io.Writer, r *Report) error {
	fmt.Fprintf(w, "%d %s from %d calls, %s to %s (%s; monthly = x%s)\n",
		len(r.Workloads), plural(len(r.Workloads), "workload", "workloads"), r.Calls,
		r.From.Format("2006-01-02 15:04"), r.To.Format("2006-01-02 15:04"),
		days(r.SpanDays), trimFloat(r.MonthFactor, 2))
	fmt.Fprintf(w, "cost %s recorded, %s a month", money(r.CostUSD), money(r.MonthlyCostUSD))
	if len(r.Candidates) == 0 {
		fmt.Fprintf(w, "; savings: %s\n", NoteNoCandidate)
	} else {
		fmt.Fprintf(w, "; workloads with readiness %d+ would save %s a month\n", r.ReadyThreshold, money(r.ReadyMonthlySavingsUSD))
	}
	if len(r.Workloads) == 0 {
		return nil
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tLABEL\tCALLS\tCALLS%\tCOST\tCOST%\tP50\tP95\tTOOL/JSON/TEXT\tTOOLS\tDIVERSITY\tANSWER TOK\tERRORS\tREADY\tSAVES/MONTH\tCANDIDATE")
	for i := range r.Workloads {
		x := &r.Workloads[i]
		saves, cand := money(x.Savings.MonthlyUSD), x.Savings.Candidate
		if cand == "" {
			saves, cand = "-", "none"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.2f\t%.0f\t%s\t%d\t%s\t%s\n",
			textfmt.Cell(x.ID, 24), textfmt.Cell(x.Label, 32), x.Calls, textfmt.Pct1(x.CallShare), money(x.CostUSD), textfmt.Pct1(x.CostShare),
			millis(x.LatencyP50MS), millis(x.LatencyP95MS), mix(x.Outputs), len(x.Tools),
			x.PromptDiversity, x.MeanCompletionTokens, textfmt.Pct1(x.ErrorRate), x.Readiness, saves, cand)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nreadiness, and why:")
	for i := range r.Workloads {
		x := &r.Workloads[i]
		fmt.Fprintf(w, "  %s %s: %d\n", x.ID, textfmt.Cell(x.Label, 48), x.Readiness)
		for _, reason := range x.Reasons {
			fmt.Fprintf(w, "    %s\n", reason)
		}
		if x.Savings.Note != "" && x.Savings.Note != NoteNoCandidate {
			fmt.Fprintf(w, "    note: %s\n", x.Savings.Note)
		}
	}
	return nil
}

// mix is the output mix as whole percentages, "70/10/20", or "-" with no answers.
func mix(m OutputMix) string {
	if m.Answered == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/%.0f/%.0f", 100*m.ToolCall, 100*m.JSON, 100*m.Text)
}

// money formats dollars with cents, or to the hundredth of a cent under a dollar.
func money(x float64) string {
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	if x < 1 && x != 0 {
		return fmt.Sprintf("%s$%.4f", sign, x)
	}
	return sign + "$" + textfmt.Thousands(fmt.Sprintf("%.2f", x))
}

// millis formats a latency in milliseconds: "850ms", "1.25s".
func millis(ms float64) string {
	if ms < 1000 {
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// trimFloat formats x with at most digits decimals and no trailing zeros.
func trimFloat(x float64, digits int) string {
	s := fmt.Sprintf("%.*f", digits, x)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// days formats a span in days: "1 day", "6.5 days".
func days(d float64) string {
	s := trimFloat(d, 1)
	if s == "1" {
		return "1 day"
	}
	return s + " days"
}

// niceCeil rounds x up to 1, 2 or 5 times a power of ten, for chart axes.
func niceCeil(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow10(int(math.Floor(math.Log10(x))))
	for _, m := range []float64{1, 2, 5, 10} {
		if x <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}
