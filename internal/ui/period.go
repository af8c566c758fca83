package ui

import (
	"fmt"
	"net/url"
	"time"
)

// period is a span of time the pages show, ending now, and the bucket size its charts
// are drawn with: between 60 and 300 points each.
type period struct {
	Name string // the ?period= value
	Span time.Duration
	Step time.Duration
}

// periods are the choices of the period selector, shortest first.
var periods = []period{
	{"1h", time.Hour, time.Minute},              // 60 points
	{"24h", 24 * time.Hour, 5 * time.Minute},    // 288
	{"7d", 7 * 24 * time.Hour, time.Hour},       // 168
	{"30d", 30 * 24 * time.Hour, 4 * time.Hour}, // 180
}

const defaultPeriod = "24h"

// parsePeriod reads ?period=; empty is the default.
func parsePeriod(q url.Values) (period, error) {
	name := q.Get("period")
	if name == "" {
		name = defaultPeriod
	}
	for _, p := range periods {
		if p.Name == name {
			return p, nil
		}
	}
	return period{}, badRequest(fmt.Sprintf("Unknown period %q: choose 1h, 24h, 7d or 30d.", name))
}

// window is a period placed in time: Points buckets of Step from Since to Until. Until
// is the end of the bucket now is in, so the latest (partial) bucket is shown; every
// bound is a multiple of Step since the Unix epoch, as rollup buckets are.
type window struct {
	period
	Since, Until time.Time
	Points       int
}

func (p period) at(now time.Time) window {
	step := int64(p.Step / time.Second)
	until := (now.Unix()/step + 1) * step
	n := int(p.Span / p.Step)
	return window{period: p, Since: time.Unix(until-int64(n)*step, 0).UTC(), Until: time.Unix(until, 0).UTC(), Points: n}
}

// index returns the bucket t falls in, or -1 outside the window.
func (w window) index(t time.Time) int {
	if t.Before(w.Since) || !t.Before(w.Until) {
		return -1
	}
	return int(t.Sub(w.Since) / w.Step)
}
