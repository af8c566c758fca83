package discover

import (
	"fmt"
	"os"
)

func init() {
	if os.Getenv("DISCOVER_DEBUG") != "" {
		debugScores = func(g string, ks []int, s []float64) {
			fmt.Fprintf(os.Stderr, "%s", g)
			for i := range ks {
				fmt.Fprintf(os.Stderr, " %d:%.3f", ks[i], s[i])
			}
			fmt.Fprintln(os.Stderr)
		}
	}
}
