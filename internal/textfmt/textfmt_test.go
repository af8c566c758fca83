package textfmt

import "testing"

func TestThousands(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "999": "999", "1000": "1,000", "12345.67": "12,345.67",
		"1234567": "1,234,567", "-1234.5": "-1,234.5", "100000": "100,000"} {
		if got := Thousands(in); got != want {
			t.Errorf("Thousands(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPct1(t *testing.T) {
	if got := Pct1(0.9876); got != "98.8%" {
		t.Errorf("Pct1 = %q", got)
	}
}

func TestCell(t *testing.T) {
	if got := Cell("a\tb\nc", 10); got != "a b c" {
		t.Errorf("Cell = %q", got)
	}
	if got := Cell("réservation", 5); got != "rése…" {
		t.Errorf("Cell = %q", got)
	}
}

func TestUSD(t *testing.T) {
	for x, want := range map[float64]string{0: "$0", 1e-9: "$0", 0.02: "$0.02", 0.1: "$0.10", 0.0955: "$0.0955",
		0.00123456: "$0.00123", -0.0025: "-$0.0025", 1: "$1.00", 1234.5: "$1,234.50", 0.999: "$0.999"} {
		if got := USD(x); got != want {
			t.Errorf("USD(%v) = %q, want %q", x, got, want)
		}
	}
}
