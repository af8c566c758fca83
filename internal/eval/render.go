package eval

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/downshift-dev/downshift/internal/textfmt"
)

// WriteJSON writes the leaderboard as indented JSON, with the field names documented
// on Leaderboard and Row; durations are in nanoseconds.
func WriteJSON(w io.Writer, lb Leaderboard) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(lb)
}

// WriteTable writes the leaderboard for a terminal: what was measured, the reference
// as recorded, one line per candidate and variant in rank order, the recommendation,
// why rows were ruled out, and a warning when a simulator made up any answer.
func WriteTable(w io.Writer, lb Leaderboard) error {
	fmt.Fprintf(w, "%s: %d test %s; run %s on set %s, %s\n",
		workloadName(lb), lb.Reference.Calls, plural(lb.Reference.Calls, "call", "calls"),
		orDash(lb.RunID), orDash(lb.SetID), when(lb.At))
	fmt.Fprintf(w, "quality is agreement with the reference (1 = the same answer); a candidate is recommended when its interval's lower bound reaches %s of the reference's, it fails at most %s of calls and it costs less\n\n",
		pctTrim(lb.Threshold), pctTrim(maxErrorShare))

	judged := false
	for i := range lb.Rows {
		judged = judged || lb.Rows[i].JudgeCalls > 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "RANK\tCANDIDATE\tVARIANT\tQUALITY [95% CI]\tPASS RATE [95% CI]\tERRORS\tP50/P95\tTTFT P50\tCOST/1K\tSAVING"
	if judged {
		head += "\tJUDGE"
	}
	fmt.Fprintln(tw, head)
	ref := lb.Reference
	fmt.Fprintf(tw, "-\t%s\t(reference, recorded)\t%.2f\t-\t-\t%s\t%s\t%s\t-",
		textfmt.Cell(orDash(ref.Model), 32), ref.Quality, latencies(ref.LatencyP50, ref.LatencyP95),
		millis(ref.TTFTP50), refCost(ref))
	if judged {
		fmt.Fprint(tw, "\t-")
	}
	fmt.Fprintln(tw)
	for i := range lb.Rows {
		r := &lb.Rows[i]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s",
			i+1, textfmt.Cell(r.Candidate, 32), textfmt.Cell(r.Variant, 16),
			fmt.Sprintf("%.2f [%.2f, %.2f]", r.Quality, r.QualityCI.Lo, r.QualityCI.Hi),
			fmt.Sprintf("%s [%s, %s]", textfmt.Pct1(r.PassRate), textfmt.Pct1(r.PassCI.Lo), textfmt.Pct1(r.PassCI.Hi)),
			errorsText(r), latencies(r.LatencyP50, r.LatencyP95), millis(r.TTFTP50),
			answeredCost(r), savingText(r, ref))
		if judged {
			fmt.Fprintf(tw, "\t%s", judgeText(r))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nrecommendation: %s\n", recommendationText(lb.Recommendation))
	noted := false
	for i := range lb.Rows {
		r := &lb.Rows[i]
		if r.Note == "" {
			continue
		}
		if !noted {
			fmt.Fprintln(w, "not eligible:")
			noted = true
		}
		fmt.Fprintf(w, "  %s: %s\n", rowName(r), r.Note)
	}
	if lb.Simulated {
		fmt.Fprintf(w, "note: %s\n", simulatedNote(lb))
	}
	return nil
}

// recommendationText is the recommendation as a sentence: the reason already names
// the candidate, or says to keep the reference.
func recommendationText(r Recommendation) string {
	if r.KeepReference {
		return r.Reason
	}
	return "use " + r.Reason
}

// simulatedNote says how many scored answers a simulator made up.
func simulatedNote(lb Leaderboard) string {
	n, m := 0, 0
	for i := range lb.Rows {
		n += lb.Rows[i].Simulated
		m += lb.Rows[i].Calls
	}
	return fmt.Sprintf("answers marked simulated: %d of %d — the simulator invented or degraded them", n, m)
}

func workloadName(lb Leaderboard) string {
	switch {
	case lb.Workload != "" && lb.WorkloadID != "":
		return fmt.Sprintf("%s (%s)", textfmt.Cell(lb.Workload, 48), lb.WorkloadID)
	case lb.Workload != "":
		return textfmt.Cell(lb.Workload, 48)
	case lb.WorkloadID != "":
		return lb.WorkloadID
	}
	return "workload"
}

func errorsText(r *Row) string {
	if r.Errors == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", r.Errors, textfmt.Pct1(errorShare(r)))
}

// answeredCost is the cost per 1,000 calls, or "-" when no call was answered and so
// nothing was paid for.
func answeredCost(r *Row) string {
	if r.Answered == 0 {
		return "-"
	}
	return usd(r.CostPer1K)
}

// savingText is the row's saving against the reference; negative when it costs more,
// "-" when the reference's cost is unknown.
func savingText(r *Row, ref ReferenceRow) string {
	if ref.CostPer1K <= 0 || r.Answered == 0 {
		return "-"
	}
	return textfmt.Pct1(r.Saving)
}

func judgeText(r *Row) string {
	if r.JudgeCalls == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f (%d)", r.JudgeMean, r.JudgeCalls)
}

func latencies(p50, p95 time.Duration) string {
	if p50 == 0 && p95 == 0 {
		return "-"
	}
	return millis(p50) + "/" + millis(p95)
}

// millis formats a duration for people: "4.2ms", "850ms", "1.25s"; "-" for 0, which
// means not measured.
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

// usd formats dollars: cents from a dollar up ("$9.80", "$1,234.50"), two significant
// digits under a dollar ("$0.12", "$0.0034"), so that a small model's cost per 1,000
// calls does not round to nothing.
func usd(x float64) string {
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	switch {
	case x == 0:
		return "$0"
	case x >= 1:
		return sign + "$" + textfmt.Thousands(fmt.Sprintf("%.2f", x))
	}
	d := max(2, 1-int(math.Floor(math.Log10(x))))
	return fmt.Sprintf("%s$%.*f", sign, d, x)
}

// pctTrim formats a share as a percentage without trailing zeros: "95%", "97.5%".
func pctTrim(x float64) string { return trimFloat(100*x, 2) + "%" }

// signedPct formats a change as a signed percentage with a true minus: "−98.8%", "+4.0%".
func signedPct(x float64) string {
	s := textfmt.Pct1(math.Abs(x))
	if s == "0.0%" {
		return s
	}
	if x < 0 {
		return "−" + s
	}
	return "+" + s
}

// trimFloat formats x rounded to digits decimals, without trailing zeros.
func trimFloat(x float64, digits int) string {
	p := math.Pow10(digits)
	x = math.Round(x*p) / p
	if x == 0 {
		x = 0 // not -0
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// when formats the leaderboard's time, or "-" when it was not given.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("2006-01-02 15:04 MST")
}

// refCost is the reference's cost per 1,000 calls, or "unknown" when none was
// recorded.
func refCost(ref ReferenceRow) string {
	if ref.CostPer1K <= 0 {
		return "unknown"
	}
	return usd(ref.CostPer1K)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
