package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far a long command has got: a bar on a terminal, and a line at
// every tenth of the way elsewhere (CI logs, pipes), so logs stay readable.
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	what  string
	total int

	mu       sync.Mutex
	done     int
	nextLine int
	start    time.Time
}

func newProgress(w io.Writer, what string, total int) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now(), nextLine: total / 10}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	return p
}

func (p *progress) add(n int) {
	if p.bar != nil {
		_ = p.bar.Add(n)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.total > 0 && p.done >= p.nextLine && p.done < p.total {
		fmt.Fprintf(p.w, "%s: %d/%d (%d%%) after %s\n", p.what, p.done, p.total, 100*p.done/p.total, time.Since(p.start).Round(100*time.Millisecond))
		p.nextLine += max(p.total/10, 1)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
