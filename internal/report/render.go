package report

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/downshift-dev/downshift/internal/textfmt"
)

// WriteJSON writes the report as indented JSON, with the field names documented on
// Report and Row; durations are in nanoseconds, shares are 0..1.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Explanations of the figures, shared by the table and the page.
const (
	movedText     = "moved: calls the candidate answered"
	escalatedText = "escalated: of the calls the candidate tried to answer, those its guards sent to the reference instead"
	savedText     = "saved: what the reference alone would have cost, less what was paid (shadow and verification answers included, so shadowing shows as a loss)"
	latencyText   = "latency: candidate p50 − reference p50"
	totalLatency  = "the total's latency change is the workloads' changes weighted by their calls moved; medians do not add up"
)

// WriteTable writes the report for a terminal: the period, one line per workload and
// the total with the figures that say whether shifting pays (calls moved, escalation
// rate, agreement, money saved, latency change), then how the calls were answered,
// and notes when costs include estimates or answers were simulated.
func WriteTable(w io.Writer, r Report) error {
	fmt.Fprintf(w, "%s\n", periodText(r))
	if len(r.Workloads) == 0 {
		fmt.Fprintln(w, "no gateway calls in this period, and no workload has a policy")
		return nil
	}
	fmt.Fprintf(w, "%s; %s;\n%s;\n%s\n\n", movedText, escalatedText, savedText, latencyText)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tPOLICY\tCALLS\tMOVED\tESCALATED\tAGREEMENT (N)\tPAID\tREFERENCE\tSAVED\tREF P50\tCAND P50\tLATENCY")
	for i, row := range rowsAndTotal(r) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			rowName(r, i), policyText(&row), count(row.Calls), movedCell(&row), escalatedCell(&row), agreementCell(&row),
			textfmt.USD(row.PaidUSD), referenceCell(&row), savedCell(&row),
			millis(row.ReferenceP50), millis(row.CandidateP50), latencyChange(row.LatencyChange))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nhow the calls were answered:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tREFERENCE\tCANDIDATE\tESCALATED\tUNDER POLICY\tSHADOWED\tVERIFIED\tCOMPARED\tPASSED\tGUARD FAILURES\tERRORS\tESC P50\tFIRST\tLAST")
	for i, row := range rowsAndTotal(r) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			rowName(r, i), count(row.ReferenceAnswered), count(row.CandidateAnswered), count(row.Escalated),
			count(row.UnderPolicy), count(row.Shadowed), count(row.Verified), count(row.Compared),
			count(row.Passed), count(row.GuardFailures), count(row.Errors), millis(row.EscalatedP50),
			when(row.First), when(row.Last))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if r.Total.LatencyChange != nil {
		fmt.Fprintf(w, "note: %s\n", totalLatency)
	}
	if n := estimatedNote(r.Total); n != "" {
		fmt.Fprintf(w, "* %s\n", n)
	}
	if n := simulatedNote(r.Total); n != "" {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// rowsAndTotal is the workloads' rows and then the total, in a new slice.
func rowsAndTotal(r Report) []Row {
	return append(slices.Clip(r.Workloads), r.Total)
}

// rowName is the name the i-th row of rowsAndTotal is shown under: the workload's,
// or TOTAL for the last.
func rowName(r Report, i int) string {
	if i == len(r.Workloads) {
		return "TOTAL"
	}
	return textfmt.Cell(r.Workloads[i].Workload, 32)
}

// periodText says which calls the report covers.
func periodText(r Report) string {
	s := "savings of the gateway's calls"
	if r.Workload != "" {
		s += " of workload " + textfmt.Cell(r.Workload, 64)
	}
	switch {
	case !r.Since.IsZero() && !r.Until.IsZero():
		s += fmt.Sprintf(", %s to %s", when(r.Since), when(r.Until))
	case !r.Since.IsZero():
		s += ", since " + when(r.Since)
	case !r.Until.IsZero():
		s += ", before " + when(r.Until)
	default:
		s += ", all recorded"
	}
	if r.Total.Calls > 0 {
		s += fmt.Sprintf(": %s %s, the first at %s, the last at %s", count(r.Total.Calls),
			plural(r.Total.Calls, "call", "calls"), when(r.Total.First), when(r.Total.Last))
	}
	return s
}

// estimatedNote says how many reference costs are estimates, or "" when none is.
func estimatedNote(t Row) string {
	if t.ReferenceEstimated == 0 {
		return ""
	}
	return fmt.Sprintf("%s of %s reference costs are estimates: the reference's prices applied to the candidate's token counts, where no verification answer gave the real cost",
		count(t.ReferenceEstimated), count(t.Calls))
}

// simulatedNote says how many calls had a simulated answer, or "" when none had.
func simulatedNote(t Row) string {
	if t.Simulated == 0 {
		return ""
	}
	return fmt.Sprintf("%s of %s calls had an answer simulated by downshift sim: their cost, latency and agreement are not a real model's",
		count(t.Simulated), count(t.Calls))
}

// policyText is the workload's current policy: "canary small-8b (v3)", "observe
// (v4)", or "-" when it has none.
func policyText(r *Row) string {
	switch {
	case r.Mode == "":
		return "-"
	case r.Candidate == "" || r.Mode == "observe":
		return fmt.Sprintf("%s (v%d)", r.Mode, r.PolicyVersion)
	}
	return fmt.Sprintf("%s %s (v%d)", r.Mode, textfmt.Cell(r.Candidate, 24), r.PolicyVersion)
}

func movedCell(r *Row) string {
	if r.MovedShare == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", count(r.CandidateAnswered), textfmt.Pct1(*r.MovedShare))
}

func escalatedCell(r *Row) string {
	if r.EscalationRate == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", count(r.Escalated), textfmt.Pct1(*r.EscalationRate))
}

func agreementCell(r *Row) string {
	if r.Agreement == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f (%s)", *r.Agreement, count(r.Compared))
}

// estimated marks a cost that includes estimates.
func estimated(r *Row) string {
	if r.ReferenceEstimated > 0 {
		return "*"
	}
	return ""
}

func referenceCell(r *Row) string { return textfmt.USD(r.ReferenceUSD) + estimated(r) }

func savedCell(r *Row) string {
	s := textfmt.USD(r.SavedUSD) + estimated(r)
	if r.SavedShare != nil {
		s += " (" + textfmt.Pct1(*r.SavedShare) + ")"
	}
	return s
}

func count(n int) string { return textfmt.Thousands(strconv.Itoa(n)) }

// millis formats a duration for people: "4.2ms", "850ms", "1.25s"; "-" for 0, which
// means none was measured.
func millis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d <= 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// latencyChange formats a change of latency with its sign ("−450ms", "+1.20s"), or
// "-" when there is none to show.
func latencyChange(d *time.Duration) string {
	switch {
	case d == nil:
		return "-"
	case *d == 0:
		return "0ms"
	case *d < 0:
		return "−" + millis(-*d)
	}
	return "+" + millis(*d)
}

// when formats a time in UTC, or "-" when it is zero.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
