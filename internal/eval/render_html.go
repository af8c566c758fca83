package eval

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/downshift-dev/downshift/internal/textfmt"
)

//go:embed leaderboard.html.tmpl
var leaderboardHTML string

var leaderboardTemplate = template.Must(template.New("leaderboard").Parse(leaderboardHTML))

// WriteHTML writes the leaderboard as one self-contained HTML page: inline CSS, an
// inline SVG chart of quality (with its interval) against cost per 1,000 calls, the
// table, quality by reference action, and the recommendation. It loads nothing from
// anywhere, so it can be mailed or archived as is; the markup is well-formed XML as
// well as HTML, which keeps it easy to check. Names come from the catalog and are
// escaped like any other text.
func WriteHTML(w io.Writer, lb Leaderboard) error {
	return leaderboardTemplate.Execute(w, newBoardPage(lb))
}

// boardPage is what the template shows, every figure formatted and every chart
// coordinate computed here, so that the template only places them.
type boardPage struct {
	LB             Leaderboard
	Name           string // the workload, as people know it
	Title, Summary string
	Criteria       string
	Cards          []boardCard
	Advice         string
	Keep           bool
	SimulatedNote  string
	Judged         bool
	Reference      boardRow
	Rows           []boardRow
	Strata         []string
	Chart          boardChart
}

type boardCard struct{ Label, Value string }

type boardRow struct {
	Rank, Candidate, Variant, Quality, Pass, Errors string
	Latency, TTFT, Cost, Saving, Judge, Note        string
	Class                                           string // "recommended", "ineligible" or ""
	ByStratum                                       []string
}

// Chart geometry, in SVG user units; the SVG scales to the page width.
const (
	boardChartW  = 880
	boardChartH  = 460
	boardLeft    = 70
	boardRight   = 40
	boardTop     = 34
	boardBottom  = 56
	boardFreeGap = 72 // room left of the log axis for rows that cost nothing
)

type boardChart struct {
	Width, Height            int
	Label                    string
	Left, Right, Top, Bottom int
	AxisLeft                 float64 // where the log-scale axis starts
	XTicks, YTicks           []boardTick
	BarY                     float64
	BarLabel                 string
	Points                   []boardPoint
	XTitleX, XTitleY         int
	YTitleX, YTitleY         int
}

type boardTick struct {
	X, Y  float64 // label position
	Pos   float64 // grid line position along the other axis
	Label string
}

type boardPoint struct {
	X, Y, Lo, Hi float64
	Class        string // "reference", "recommended", "ineligible" or "candidate"
	Title, Tag   string
	TagX, TagY   float64
	ShowTag      bool
}

func newBoardPage(lb Leaderboard) boardPage {
	p := boardPage{LB: lb, Keep: lb.Recommendation.KeepReference}
	p.Name = workloadName(lb)
	p.Title = "downshift: candidates for " + p.Name
	p.Summary = fmt.Sprintf("%s: %d test %s, replayed against %d %s; run %s on eval set %s, %s.",
		workloadName(lb), lb.Reference.Calls, plural(lb.Reference.Calls, "call", "calls"),
		len(lb.Rows), plural(len(lb.Rows), "candidate and variant", "candidates and variants"),
		orDash(lb.RunID), orDash(lb.SetID), when(lb.At))
	p.Criteria = fmt.Sprintf("Quality is agreement with the reference's recorded answer (1 is the same answer), with its 95%% interval. A candidate is recommended when the interval's lower bound reaches %s of the reference's quality, it fails at most %s of calls, and it costs less; the cheapest such is chosen.",
		pctTrim(lb.Threshold), pctTrim(maxErrorShare))
	p.Advice = recommendationText(lb.Recommendation)
	if lb.Simulated {
		p.SimulatedNote = simulatedNote(lb)
	}

	advice := "keep " + orDash(lb.Reference.Model)
	if !p.Keep {
		advice = fmt.Sprintf("%s (%s)", lb.Recommendation.Candidate, lb.Recommendation.Variant)
	}
	p.Cards = []boardCard{
		{"reference", orDash(lb.Reference.Model)},
		{"test calls", fmt.Sprint(lb.Reference.Calls)},
		{"reference cost per 1,000 calls", refCost(lb.Reference)},
		{"recommendation", advice},
	}

	strata := map[string]bool{}
	for i := range lb.Rows {
		p.Judged = p.Judged || lb.Rows[i].JudgeCalls > 0
		for s := range lb.Rows[i].ByStratum {
			strata[s] = true
		}
	}
	for s := range strata {
		p.Strata = append(p.Strata, s)
	}
	slices.Sort(p.Strata)

	ref := lb.Reference
	p.Reference = boardRow{Rank: "-", Candidate: orDash(ref.Model), Variant: "reference, recorded",
		Quality: fmt.Sprintf("%.2f", ref.Quality), Pass: "-", Errors: "-",
		Latency: latencies(ref.LatencyP50, ref.LatencyP95), TTFT: millis(ref.TTFTP50),
		Cost: refCost(ref), Saving: "-", Judge: "-", Class: "reference"}
	for i := range lb.Rows {
		r := &lb.Rows[i]
		br := boardRow{Rank: fmt.Sprint(i + 1), Candidate: r.Candidate, Variant: r.Variant,
			Quality: fmt.Sprintf("%.2f [%.2f, %.2f]", r.Quality, r.QualityCI.Lo, r.QualityCI.Hi),
			Pass:    fmt.Sprintf("%s [%s, %s]", textfmt.Pct1(r.PassRate), textfmt.Pct1(r.PassCI.Lo), textfmt.Pct1(r.PassCI.Hi)),
			Errors:  errorsText(r), Latency: latencies(r.LatencyP50, r.LatencyP95), TTFT: millis(r.TTFTP50),
			Cost: answeredCost(r), Saving: savingText(r, ref), Judge: judgeText(r), Note: r.Note,
			Class: rowClass(lb, r)}
		for _, s := range p.Strata {
			if q, ok := r.ByStratum[s]; ok {
				br.ByStratum = append(br.ByStratum, fmt.Sprintf("%.2f", q))
			} else {
				br.ByStratum = append(br.ByStratum, "-")
			}
		}
		p.Rows = append(p.Rows, br)
	}
	p.Chart = newBoardChart(lb)
	return p
}

func rowClass(lb Leaderboard, r *Row) string {
	switch {
	case !lb.Recommendation.KeepReference && r.Candidate == lb.Recommendation.Candidate && r.Variant == lb.Recommendation.Variant:
		return "recommended"
	case r.Note != "":
		return "ineligible"
	}
	return ""
}

// newBoardChart places one point per row and one for the reference: quality up, with
// the row's interval as a whisker, cost per 1,000 calls across on a log scale. Rows
// that cost nothing (or answered nothing) sit in a "$0" column left of the axis,
// since a log scale has no zero.
func newBoardChart(lb Leaderboard) boardChart {
	c := boardChart{Width: boardChartW, Height: boardChartH,
		Left: boardLeft, Right: boardChartW - boardRight, Top: boardTop, Bottom: boardChartH - boardBottom}
	c.Label = fmt.Sprintf("Chart: quality (agreement with the reference, up) against cost per 1,000 calls (across, log scale) for %d %s and the reference; whiskers are 95%% intervals; the dashed line is %s of the reference's quality.",
		len(lb.Rows), plural(len(lb.Rows), "candidate", "candidates"), pctTrim(lb.Threshold))

	costs := []float64{lb.Reference.CostPer1K}
	qualities := []float64{lb.Reference.Quality, lb.Threshold * lb.Reference.Quality}
	for i := range lb.Rows {
		costs = append(costs, lb.Rows[i].CostPer1K)
		qualities = append(qualities, lb.Rows[i].QualityCI.Lo)
	}

	// Cost axis: whole decades around the positive costs.
	free := slices.ContainsFunc(costs, func(x float64) bool { return x <= 0 })
	loExp, hiExp := -2, 0
	first := true
	for _, x := range costs {
		if x <= 0 {
			continue
		}
		e := math.Log10(x)
		if first {
			loExp, hiExp, first = int(math.Floor(e)), int(math.Ceil(e)), false
			continue
		}
		loExp, hiExp = min(loExp, int(math.Floor(e))), max(hiExp, int(math.Ceil(e)))
	}
	if hiExp <= loExp {
		hiExp = loExp + 1
	}
	c.AxisLeft = float64(c.Left)
	if free {
		c.AxisLeft += boardFreeGap
	}
	span := float64(c.Right) - c.AxisLeft
	xOf := func(cost float64) float64 {
		if cost <= 0 {
			return float64(c.Left) + boardFreeGap/2
		}
		return c.AxisLeft + span*(math.Log10(cost)-float64(loExp))/float64(hiExp-loExp)
	}
	if free {
		c.XTicks = append(c.XTicks, boardTick{X: xOf(0), Y: float64(c.Bottom + 18), Label: "$0"})
	}
	for e := loExp; e <= hiExp; e++ {
		x := round1(xOf(math.Pow10(e)))
		c.XTicks = append(c.XTicks, boardTick{X: x, Y: float64(c.Bottom + 18), Pos: x, Label: axisUSD(e)})
	}

	// Quality axis: from a tenth below the lowest bound shown, to 1.
	yMin := math.Max(0, math.Floor(10*slices.Min(qualities)-0.5)/10)
	yMin = math.Min(yMin, 0.9)
	plotH := float64(c.Bottom - c.Top)
	yOf := func(q float64) float64 {
		return round1(float64(c.Bottom) - plotH*(clamp01(q)-yMin)/(1-yMin))
	}
	step := 0.1
	if 1-yMin <= 0.3 {
		step = 0.05
	}
	for k := 0; ; k++ {
		v := yMin + float64(k)*step
		if v > 1+1e-9 {
			break
		}
		y := yOf(v)
		c.YTicks = append(c.YTicks, boardTick{X: float64(c.Left - 8), Y: y + 4, Pos: y, Label: fmt.Sprintf("%.2f", v)})
	}
	c.BarY = yOf(lb.Threshold * lb.Reference.Quality)
	c.BarLabel = pctTrim(lb.Threshold) + " of the reference"

	ref := lb.Reference
	refY := yOf(ref.Quality)
	c.Points = append(c.Points, boardPoint{X: round1(xOf(ref.CostPer1K)), Y: refY, Lo: refY, Hi: refY,
		Class: "reference", Tag: textfmt.Cell(orDash(ref.Model), 28) + " (reference)",
		Title: fmt.Sprintf("%s, the reference as recorded: quality %.2f, cost per 1,000 calls %s", orDash(ref.Model), ref.Quality, refCost(ref))})
	for i := range lb.Rows {
		r := &lb.Rows[i]
		class := rowClass(lb, r)
		if class == "" {
			class = "candidate"
		}
		c.Points = append(c.Points, boardPoint{
			X: round1(xOf(r.CostPer1K)), Y: yOf(r.Quality), Lo: yOf(r.QualityCI.Lo), Hi: yOf(r.QualityCI.Hi),
			Class: class, Tag: textfmt.Cell(rowName(r), 32),
			Title: fmt.Sprintf("#%d %s: quality %.2f [%.2f, %.2f], %s per 1,000 calls, errors %s",
				i+1, rowName(r), r.Quality, r.QualityCI.Lo, r.QualityCI.Hi, answeredCost(r), errorsText(r)),
		})
	}
	placeTags(c.Points, 0, float64(c.Right))

	c.XTitleX, c.XTitleY = (c.Left+c.Right)/2, c.Bottom+44
	c.YTitleX, c.YTitleY = 18, (c.Top+c.Bottom)/2
	return c
}

// placeTags puts each point's name to its right, or to its left when the right is
// taken or off the chart, and leaves to the tooltip any name that would overprint
// another point or a name placed before it: points come in order (the reference, then
// rank), so the reference and the better rows keep their names.
func placeTags(pts []boardPoint, left, right float64) {
	const charW, tagH, dot = 6.6, 13.0, 6.0
	var taken [][4]float64 // x0, x1, y0, y1
	overlaps := func(a, b [4]float64) bool { return a[0] < b[1] && b[0] < a[1] && a[2] < b[3] && b[2] < a[3] }
	free := func(i int, box [4]float64) bool {
		if box[0] < left || box[1] > right {
			return false
		}
		for j := range pts {
			if j != i && overlaps(box, [4]float64{pts[j].X - dot, pts[j].X + dot, pts[j].Y - dot, pts[j].Y + dot}) {
				return false
			}
		}
		for _, b := range taken {
			if overlaps(box, b) {
				return false
			}
		}
		return true
	}
	for i := range pts {
		pt := &pts[i]
		w := charW * float64(len([]rune(pt.Tag)))
		pt.TagY = pt.Y + 4
		for _, x0 := range []float64{pt.X + 8, pt.X - 8 - w} {
			box := [4]float64{x0, x0 + w, pt.TagY - tagH, pt.TagY}
			if free(i, box) {
				pt.TagX, pt.ShowTag = x0, true
				taken = append(taken, box)
				break
			}
		}
	}
}

// axisUSD labels a decade of dollars: $0.01, $0.1, $1, $10, $1,000.
func axisUSD(exp int) string {
	if exp >= 0 {
		return "$" + textfmt.Thousands(fmt.Sprintf("%.0f", math.Pow10(exp)))
	}
	return "$" + strings.TrimRight(fmt.Sprintf("%.*f", -exp, math.Pow10(exp)), "0")
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
