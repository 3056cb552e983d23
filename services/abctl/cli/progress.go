package cli

import (
	"io"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress is a bar on stderr with the count, the rate and the time left;
// under --json it draws nothing.
type progress struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// newProgress starts a bar named name; its total is set as it becomes known.
func (a *App) newProgress(name string) *progress {
	out := a.Err
	if a.JSON {
		out = io.Discard
	}
	p := mpb.New(mpb.WithOutput(out), mpb.WithWidth(40))
	bar := p.AddBar(0,
		mpb.PrependDecorators(decor.Name(name+" "), decor.CountersNoUnit("%d / %d records")),
		mpb.AppendDecorators(decor.AverageSpeed(nil, " %.0f/s"), decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
	return &progress{p: p, bar: bar}
}

// set shows done of total records.
func (pr *progress) set(total, done int64) {
	pr.bar.SetTotal(total, false)
	pr.bar.SetCurrent(done)
}

// finish completes the bar and waits until it is drawn.
func (pr *progress) finish() {
	pr.bar.SetTotal(-1, true)
	pr.p.Wait()
}
