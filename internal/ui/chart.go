package ui

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// A chart is a time series over a window, drawn as inline SVG by the "chart" template:
// one line per series (gaps where a value is NaN), axes with ticks, a legend, a
// <title> and a <desc> summary for screen readers, and the numbers as a table.
type chart struct {
	ID     string // the figure's id and data-testid is "chart-" + ID
	Title  string
	Unit   string // what a value is, for the summary and the table ("calls/min", "ms")
	Window window
	Series []series
	// Format writes a value for ticks, the summary and the table.
	Format func(float64) string
	// Fill shades the area under the first series (which must have no gaps).
	Fill bool
	// Max is the least top of the y axis (1 for a share); 0: from the data.
	Max float64
}

type series struct {
	Name   string
	Values []float64 // one per bucket of the window
}

// Geometry of a chart, in SVG user units; the SVG scales to its container's width.
const (
	chartW      = 720
	chartH      = 220
	chartLeft   = 64
	chartRight  = 12
	chartTop    = 12
	chartBottom = 28
)

// chartView is what the "chart" template draws.
type chartView struct {
	ID, Title, Summary, Unit string
	W, H                     int
	Left, Top, Right, Bottom float64 // the plot area's edges
	TickEnd                  float64 // where the x axis's tick marks end
	YTicks, XTicks           []tick
	Lines                    []lineView
	// Head and Rows are the data table: a time column, then one per series. Buckets
	// where every series is zero or empty are left out.
	Head    []string
	Rows    [][]string
	Omitted int // buckets left out of the table
}

type tick struct {
	Pos   float64 // y for the y axis, x for the x axis
	Label string
}

type lineView struct {
	Name  string
	Class string  // c0..c5: colour and dash pattern (CSS)
	D     string  // the path
	Dots  []point // values alone between gaps, drawn as dots
	Area  string  // the filled area's path, or ""
}

type point struct{ X, Y float64 }

// view lays the chart out.
func (c *chart) view() chartView {
	v := chartView{ID: c.ID, Title: c.Title, Unit: c.Unit, W: chartW, H: chartH,
		Left: chartLeft, Top: chartTop, Right: chartW - chartRight, Bottom: chartH - chartBottom,
		TickEnd: chartH - chartBottom + 4}
	lo, hi := 0.0, c.Max
	for _, s := range c.Series {
		for _, x := range s.Values {
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
		}
	}
	if hi <= lo {
		hi = lo + 1
	}
	ticks := niceTicks(lo, hi, 5)
	lo, hi = ticks[0], ticks[len(ticks)-1]
	y := func(x float64) float64 { return v.Bottom - (x-lo)/(hi-lo)*(v.Bottom-v.Top) }
	for _, t := range ticks {
		v.YTicks = append(v.YTicks, tick{Pos: round1(y(t)), Label: c.Format(t)})
	}
	n := c.Window.Points
	x := func(i int) float64 { return v.Left + (float64(i)+0.5)/float64(n)*(v.Right-v.Left) }
	for _, t := range timeTicks(c.Window) {
		frac := float64(t.Sub(c.Window.Since)) / float64(c.Window.Until.Sub(c.Window.Since))
		v.XTicks = append(v.XTicks, tick{Pos: round1(v.Left + frac*(v.Right-v.Left)), Label: timeLabel(t, c.Window)})
	}
	var summary []string
	for k, s := range c.Series {
		l := lineView{Name: s.Name, Class: fmt.Sprintf("c%d", k%6)}
		l.D, l.Dots = linePath(s.Values, x, y)
		if k == 0 && c.Fill && l.D != "" {
			l.Area = fmt.Sprintf("%s L%.1f %.1f L%.1f %.1f Z", l.D, x(n-1), y(math.Max(lo, 0)), x(0), y(math.Max(lo, 0)))
		}
		v.Lines = append(v.Lines, l)
		summary = append(summary, describe(s, c.Format))
	}
	v.Summary = fmt.Sprintf("%s, %s to %s UTC, one point per %s, in %s. %s", c.Title,
		c.Window.Since.Format("Jan 2 15:04"), c.Window.Until.Format("Jan 2 15:04"),
		stepName(c.Window.Step), c.Unit, strings.Join(summary, " "))
	v.Head = append(v.Head, "Time (UTC)")
	for _, s := range c.Series {
		v.Head = append(v.Head, s.Name)
	}
	for i := 0; i < n; i++ {
		row := []string{c.Window.Since.Add(time.Duration(i) * c.Window.Step).Format("2006-01-02 15:04")}
		some := false
		for _, s := range c.Series {
			val := s.Values[i]
			if math.IsNaN(val) {
				row = append(row, "–")
				continue
			}
			some = some || val != 0
			row = append(row, c.Format(val))
		}
		if !some {
			v.Omitted++
			continue
		}
		v.Rows = append(v.Rows, row)
	}
	return v
}

// linePath draws values as a path through (x(i), y(value)), lifting the pen over
// gaps; a value alone between gaps is returned as a dot instead.
func linePath(values []float64, x func(int) float64, y func(float64) float64) (string, []point) {
	var b strings.Builder
	var dots []point
	ok := func(i int) bool {
		return i >= 0 && i < len(values) && !math.IsNaN(values[i]) && !math.IsInf(values[i], 0)
	}
	for i, val := range values {
		switch {
		case !ok(i):
		case ok(i - 1):
			fmt.Fprintf(&b, " L%.1f %.1f", x(i), y(val))
		case ok(i + 1):
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "M%.1f %.1f", x(i), y(val))
		default:
			dots = append(dots, point{round1(x(i)), round1(y(val))})
		}
	}
	return b.String(), dots
}

// describe summarises a series for a screen reader: its range and latest value.
func describe(s series, format func(float64) string) string {
	lo, hi, last, n := math.Inf(1), math.Inf(-1), math.NaN(), 0
	for _, v := range s.Values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		lo, hi, last, n = math.Min(lo, v), math.Max(hi, v), v, n+1
	}
	if n == 0 {
		return s.Name + ": no data."
	}
	return fmt.Sprintf("%s: from %s to %s, latest %s.", s.Name, format(lo), format(hi), format(last))
}

// niceTicks returns about n evenly spaced round values (steps of 1, 2 or 5 times a
// power of ten) from at most lo to at least hi.
func niceTicks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(n-1)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	first := math.Floor(lo/step + 1e-9)
	var out []float64
	for k := first; ; k++ {
		t := cleanZero(k * step)
		out = append(out, t)
		if len(out) >= 2 && t >= hi-step*1e-9 {
			return out
		}
	}
}

func cleanZero(x float64) float64 {
	if math.Abs(x) < 1e-12 {
		return 0
	}
	return x
}

// tickSteps are the intervals time ticks may fall at.
var tickSteps = []time.Duration{
	5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour,
}

// timeTicks returns at most 8 round times (multiples of one of tickSteps since the
// Unix epoch) in the window.
func timeTicks(w window) []time.Time {
	span := w.Until.Sub(w.Since)
	step := tickSteps[len(tickSteps)-1]
	for _, s := range tickSteps {
		if span/s <= 8 {
			step = s
			break
		}
	}
	sec := int64(step / time.Second)
	var out []time.Time
	for t := (w.Since.Unix() + sec - 1) / sec * sec; t <= w.Until.Unix(); t += sec {
		out = append(out, time.Unix(t, 0).UTC())
	}
	return out
}

// timeLabel writes a tick's time: the clock within a day, the date at midnight or
// when ticks are a day or more apart.
func timeLabel(t time.Time, w window) string {
	if w.Span > 2*24*time.Hour || (t.Hour() == 0 && t.Minute() == 0) {
		return t.Format("Jan 2")
	}
	return t.Format("15:04")
}

func stepName(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "minute"
	case d%time.Hour == 0 && d == time.Hour:
		return "hour"
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return fmt.Sprintf("%d minutes", d/time.Minute)
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
