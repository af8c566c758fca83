package report

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"

	"github.com/downshift-dev/downshift/internal/textfmt"
)

//go:embed report.html.tmpl
var htmlSource string

var htmlTemplate = template.Must(template.New("report").Parse(htmlSource))

// WriteHTML writes the report as one self-contained HTML page: inline CSS, two inline
// SVG charts (cost share per workload; readiness against monthly cost), the table and
// the reasons. It loads nothing from anywhere, so it can be mailed or archived as is.
// The markup is well-formed XML as well as HTML, which keeps it easy to check.
func WriteHTML(w io.Writer, r *Report) error {
	return htmlTemplate.Execute(w, newPage(r))
}

// page is what the template shows: the report, with every figure formatted and every
// chart coordinate computed here, so that the template only places them.
type page struct {
	R       *Report
	Summary string
	Cards   []card
	Rows    []row
	Bars    barChart
	Scatter scatter
}

type card struct{ Label, Value string }

type row struct {
	ID, Label, Calls, CallShare, Cost, CostShare, P50, P95  string
	ToolCall, JSON, Text, Tools, Diversity, Answer, Errors  string
	Readiness, Band, Saves, Candidate, Note, Representative string
	Reasons                                                 []Reason
	ToolNames                                               string
}

// Chart geometry, in SVG user units; the SVGs scale to the page width.
const (
	chartWidth  = 880
	barLabelW   = 260
	barRowH     = 28
	barTop      = 36
	barBottom   = 44
	maxBars     = 20
	plotLeft    = 90
	plotRight   = 30
	plotTop     = 30
	plotBottom  = 60
	plotHeight  = 440
	maxPointTag = 12
)

type barChart struct {
	Width, Height int
	Label         string // aria-label: what the chart shows, in words
	Bars          []bar
	Ticks         []tick
	AxisY         int
	AxisX0        int
	AxisX1        int
	AxisTitleX    int
	AxisTitleY    int
}

type bar struct {
	Y, TextY, Width, ValueX int
	Label, Value, Title     string
	Band                    string
}

type tick struct {
	X, Y  float64 // where the label goes
	LineY float64 // where a horizontal grid line goes
	Label string
}

type scatter struct {
	Width, Height                  int
	Label                          string
	Left, Right, Top, Bottom       int
	ReadyX, ReadyW                 float64
	XTicks, YTicks                 []tick
	Points                         []point
	XTitleX, XTitleY               int
	YTitleX, YTitleY, PlotH, PlotW int
}

type point struct {
	X, Y, R       float64
	Title, Tag    string
	TagX, TagY    float64
	Band          string
	ShowTag       bool
	TagAnchorLeft bool
}

// band names a readiness range for colour: ready, maybe, not yet.
func band(readiness, threshold int) string {
	switch {
	case readiness >= threshold:
		return "ready"
	case readiness >= threshold-20:
		return "maybe"
	}
	return "later"
}

func newPage(r *Report) page {
	p := page{R: r}
	p.Summary = fmt.Sprintf("%d %s from %d calls between %s and %s (%s of traffic; monthly figures are x%s).",
		len(r.Workloads), plural(len(r.Workloads), "workload", "workloads"), r.Calls,
		r.From.Format("2006-01-02 15:04 MST"), r.To.Format("2006-01-02 15:04 MST"),
		days(r.SpanDays), trimFloat(r.MonthFactor, 2))
	saving := money(r.ReadyMonthlySavingsUSD)
	if len(r.Candidates) == 0 {
		saving = NoteNoCandidate
	}
	ready := 0
	for i := range r.Workloads {
		if r.Workloads[i].Readiness >= r.ReadyThreshold {
			ready++
		}
	}
	p.Cards = []card{
		{"calls", fmt.Sprint(r.Calls)},
		{"cost recorded", money(r.CostUSD)},
		{"cost per month", money(r.MonthlyCostUSD)},
		{fmt.Sprintf("workloads ready (%d+)", r.ReadyThreshold), fmt.Sprintf("%d of %d", ready, len(r.Workloads))},
		{"monthly savings if they moved", saving},
	}
	for i := range r.Workloads {
		x := &r.Workloads[i]
		rw := row{
			ID: x.ID, Label: x.Label, Calls: fmt.Sprint(x.Calls), CallShare: textfmt.Pct1(x.CallShare),
			Cost: money(x.CostUSD), CostShare: textfmt.Pct1(x.CostShare),
			P50: millis(x.LatencyP50MS), P95: millis(x.LatencyP95MS),
			ToolCall: pct(x.Outputs.ToolCall), JSON: pct(x.Outputs.JSON), Text: pct(x.Outputs.Text),
			Tools: fmt.Sprint(len(x.Tools)), Diversity: fmt.Sprintf("%.2f", x.PromptDiversity),
			Answer: fmt.Sprintf("%.0f", x.MeanCompletionTokens), Errors: textfmt.Pct1(x.ErrorRate),
			Readiness: fmt.Sprint(x.Readiness), Band: band(x.Readiness, r.ReadyThreshold),
			Saves: money(x.Savings.MonthlyUSD), Candidate: x.Savings.Candidate, Note: x.Savings.Note,
			Representative: x.Representative, Reasons: x.Reasons,
		}
		if x.Outputs.Answered == 0 {
			rw.ToolCall, rw.JSON, rw.Text = "-", "-", "-"
		}
		if rw.Candidate == "" {
			rw.Saves, rw.Candidate = "-", "none"
		}
		for k, t := range x.Tools {
			if k > 0 {
				rw.ToolNames += ", "
			}
			rw.ToolNames += fmt.Sprintf("%s (%d)", t.Name, t.Calls)
		}
		p.Rows = append(p.Rows, rw)
	}
	p.Bars = newBarChart(r)
	p.Scatter = newScatter(r)
	return p
}

func newBarChart(r *Report) barChart {
	type item struct {
		label string
		share float64
		cost  float64
		band  string
	}
	var items []item
	for i := range r.Workloads {
		x := &r.Workloads[i]
		if i < maxBars-1 || len(r.Workloads) == maxBars {
			items = append(items, item{textfmt.Cell(x.Label, 36), x.CostShare, x.CostUSD, band(x.Readiness, r.ReadyThreshold)})
			continue
		}
		if i == maxBars-1 {
			items = append(items, item{label: fmt.Sprintf("%d other workloads", len(r.Workloads)-i), band: "other"})
		}
		items[len(items)-1].share += x.CostShare
		items[len(items)-1].cost += x.CostUSD
	}
	top := 0.0
	for _, it := range items {
		top = max(top, it.share)
	}
	top = min(niceCeil(top), 1)
	if top == 0 {
		top = 1
	}
	plotW := chartWidth - barLabelW - 80
	c := barChart{Width: chartWidth, Height: barTop + len(items)*barRowH + barBottom,
		Label:  fmt.Sprintf("Bar chart: share of recorded cost for each of %d workloads, highest first.", len(r.Workloads)),
		AxisX0: barLabelW, AxisX1: barLabelW + plotW}
	for k, it := range items {
		y := barTop + k*barRowH
		wd := int(math.Round(float64(plotW) * it.share / top))
		c.Bars = append(c.Bars, bar{
			Y: y + 4, TextY: y + barRowH/2 + 5, Width: wd, ValueX: barLabelW + wd + 6,
			Label: it.label, Value: textfmt.Pct1(it.share), Band: it.band,
			Title: fmt.Sprintf("%s: %s of cost (%s)", it.label, textfmt.Pct1(it.share), money(it.cost)),
		})
	}
	c.AxisY = barTop + len(items)*barRowH + 4
	for k := 0; k <= 4; k++ {
		f := float64(k) / 4
		c.Ticks = append(c.Ticks, tick{X: float64(barLabelW) + f*float64(plotW), Y: float64(c.AxisY + 18), Label: pct(f * top)})
	}
	c.AxisTitleX, c.AxisTitleY = barLabelW+plotW/2, c.AxisY+38
	return c
}

func newScatter(r *Report) scatter {
	s := scatter{Width: chartWidth, Height: plotTop + plotHeight + plotBottom,
		Left: plotLeft, Right: chartWidth - plotRight, Top: plotTop, Bottom: plotTop + plotHeight,
		Label: fmt.Sprintf("Scatter chart: SLM readiness (0 to 100, across) against monthly cost in US dollars (up), one point per workload, %d workloads; point size grows with the share of calls.", len(r.Workloads)),
	}
	s.PlotW, s.PlotH = s.Right-s.Left, s.Bottom-s.Top
	xOf := func(readiness float64) float64 { return float64(s.Left) + float64(s.PlotW)*readiness/100 }
	top := 0.0
	for i := range r.Workloads {
		top = max(top, r.Workloads[i].Savings.CurrentMonthlyUSD)
	}
	top = niceCeil(top)
	yOf := func(cost float64) float64 { return float64(s.Bottom) - float64(s.PlotH)*cost/top }
	s.ReadyX = xOf(float64(r.ReadyThreshold))
	s.ReadyW = float64(s.Right) - s.ReadyX
	for k := 0; k <= 5; k++ {
		v := float64(k) * 20
		s.XTicks = append(s.XTicks, tick{X: xOf(v), Y: float64(s.Bottom + 20), Label: fmt.Sprint(v)})
	}
	step := top / 4
	for k := 0; k <= 4; k++ {
		v := step * float64(k)
		s.YTicks = append(s.YTicks, tick{X: float64(s.Left - 8), Y: round1(yOf(v) + 4), LineY: round1(yOf(v)), Label: axisMoney(v, step)})
	}
	s.XTitleX, s.XTitleY = s.Left+s.PlotW/2, s.Bottom+46
	s.YTitleX, s.YTitleY = 20, s.Top+s.PlotH/2

	// The most costly workloads get a name beside their point; the rest a tooltip.
	byCost := make([]int, len(r.Workloads))
	for i := range byCost {
		byCost[i] = i
	}
	slices.SortStableFunc(byCost, func(a, b int) int {
		return cmp.Compare(r.Workloads[b].Savings.CurrentMonthlyUSD, r.Workloads[a].Savings.CurrentMonthlyUSD)
	})
	tagged := map[int]bool{}
	for _, i := range byCost[:min(maxPointTag, len(byCost))] {
		tagged[i] = true
	}
	for i := range r.Workloads {
		x := &r.Workloads[i]
		pt := point{X: round1(xOf(float64(x.Readiness))), Y: round1(yOf(x.Savings.CurrentMonthlyUSD)),
			R: round1(4 + 14*math.Sqrt(x.CallShare)), Band: band(x.Readiness, r.ReadyThreshold),
			Title: fmt.Sprintf("%s: readiness %d, %s a month, %s of calls", x.Label, x.Readiness,
				money(x.Savings.CurrentMonthlyUSD), textfmt.Pct1(x.CallShare)),
			Tag: textfmt.Cell(x.Label, 28), ShowTag: tagged[i]}
		pt.TagY = pt.Y + 4
		pt.TagX = pt.X + pt.R + 4
		if pt.X > float64(s.Left)+0.7*float64(s.PlotW) {
			pt.TagX, pt.TagAnchorLeft = pt.X-pt.R-4, true
		}
		s.Points = append(s.Points, pt)
	}
	// Workloads often sit close together; a name that would overprint one placed
	// before it (in cost order) is left to the point's tooltip.
	var placed [][4]float64 // x0, x1, y0, y1
	for _, i := range byCost {
		pt := &s.Points[i]
		if !pt.ShowTag {
			continue
		}
		w := tagCharWidth * float64(len([]rune(pt.Tag)))
		box := [4]float64{pt.TagX, pt.TagX + w, pt.TagY - tagHeight, pt.TagY}
		if pt.TagAnchorLeft {
			box[0], box[1] = pt.TagX-w, pt.TagX
		}
		for _, b := range placed {
			if box[0] < b[1] && b[0] < box[1] && box[2] < b[3] && b[2] < box[3] {
				pt.ShowTag = false
				break
			}
		}
		if pt.ShowTag {
			placed = append(placed, box)
		}
	}
	return s
}

// tagCharWidth and tagHeight estimate the size of a point's name at the chart's font
// size, to keep names from overprinting one another.
const tagCharWidth, tagHeight = 6.6, 13.0

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// axisMoney formats an axis value in dollars with as many decimals as the step between
// ticks needs, the same for every tick: $0.25, $0.50 ... or $250, $500 ...
func axisMoney(v, step float64) string {
	d := 0
	for d < 6 && math.Abs(step*math.Pow10(d)-math.Round(step*math.Pow10(d))) > 1e-9 {
		d++
	}
	if d > 0 {
		d = max(d, 2) // cents, when there are fractions at all
	}
	return "$" + textfmt.Thousands(fmt.Sprintf("%.*f", d, v))
}
