package main

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/answerback/answerback/bench/loadgen"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Every plot is drawn at this size and resolution.
const (
	plotWidth  = 16 * vg.Centimeter
	plotHeight = 10 * vg.Centimeter
	plotDPI    = 150
)

// p99Dashes marks p99 lines; p50 lines are solid.
var p99Dashes = []vg.Length{vg.Points(6), vg.Points(3)}

// writePlots draws the run's plots as PNG files into dir and returns their
// file names (relative to dir), in a stable order: for each mix in order of
// first appearance in r.Series, latency-cdf-<mix>.png then
// latency-vs-load-<mix>.png, where <mix> is mixSlug of the mix name (made
// unique with a -2, -3, … suffix if two mixes share a slug). A system keeps
// its color in every plot. No series, no files.
func writePlots(r results, dir string) ([]string, error) {
	colors := map[string]int{} // system → color index, by first appearance
	var mixOrder []string
	byMix := map[string][]series{}
	for _, s := range r.Series {
		if _, ok := colors[s.System]; !ok {
			colors[s.System] = len(colors)
		}
		if _, ok := byMix[s.Mix]; !ok {
			mixOrder = append(mixOrder, s.Mix)
		}
		byMix[s.Mix] = append(byMix[s.Mix], s)
	}
	var names []string
	slugs := map[string]int{}
	for _, mixName := range mixOrder {
		slug := mixSlug(mixName)
		if slugs[slug]++; slugs[slug] > 1 {
			slug = fmt.Sprintf("%s-%d", slug, slugs[slug])
		}
		for _, f := range []struct {
			name string
			draw func(string, []series, map[string]int) (*plot.Plot, error)
		}{
			{"latency-cdf-" + slug + ".png", latencyCDFPlot},
			{"latency-vs-load-" + slug + ".png", latencyVsLoadPlot},
		} {
			p, err := f.draw(mixName, byMix[mixName], colors)
			if err != nil {
				return names, fmt.Errorf("plotting %s: %w", f.name, err)
			}
			if err := savePNG(p, filepath.Join(dir, f.name)); err != nil {
				return names, err
			}
			names = append(names, f.name)
		}
	}
	return names, nil
}

// mixSlug names a mix in file names: the first word of its name, lowercased,
// keeping only letters, digits and '-'; "mix" if nothing is left.
func mixSlug(mixName string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(mixName), " ")
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, strings.ToLower(first))
	if slug == "" {
		return "mix"
	}
	return slug
}

// latencyCDFPlot draws each system's latency CDF at the highest rate every
// series of the mix sustained, or, when one sustained none, at each series'
// first step. A series without a step at that rate is left out.
func latencyCDFPlot(mixName string, ss []series, colors map[string]int) (*plot.Plot, error) {
	rate := math.Inf(1)
	for _, s := range ss {
		rate = math.Min(rate, s.MaxSustained)
	}
	title := fmt.Sprintf("Latency CDF — %s\nat %.0f /s, the highest rate every system sustained", mixName, rate)
	if rate <= 0 {
		title = fmt.Sprintf("Latency CDF — %s\nat each system's first offered rate (not every system sustained one)", mixName)
	}
	p := newPlot(title, "latency (ms)", "fraction of requests answered within", false, false)
	p.Y.Min, p.Y.Max = 0, 1
	for _, s := range ss {
		step, ok := cdfStep(s, rate)
		if !ok {
			continue
		}
		var xys plotter.XYs
		for _, pt := range step.CDF {
			if pt[0] > 0 {
				xys = append(xys, plotter.XY{X: pt[0], Y: pt[1]})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		line.Color = plotutil.Color(colors[s.System])
		line.Width = vg.Points(1.5)
		p.Add(line)
		label := s.System
		if rate <= 0 {
			label = fmt.Sprintf("%s (%.0f /s)", s.System, step.Rate)
		}
		p.Legend.Add(label, line)
	}
	logAxis(&p.X)
	return p, nil
}

// cdfStep returns s's step at rate, or its first step when rate ≤ 0.
func cdfStep(s series, rate float64) (loadgen.Result, bool) {
	for i, st := range s.Steps {
		if rate > 0 && st.Rate == rate || rate <= 0 && i == 0 {
			return st, true
		}
	}
	return loadgen.Result{}, false
}

// latencyVsLoadPlot draws each system's p50 (solid) and p99 (dashed)
// latency against offered rate, every step, on a log latency axis.
func latencyVsLoadPlot(mixName string, ss []series, colors map[string]int) (*plot.Plot, error) {
	// Latency grows with load, so the bottom right stays clear for the legend.
	p := newPlot("Latency vs offered load — "+mixName, "offered rate (requests/s)", "latency (ms)", false, false)
	p.X.Min = 0
	for _, s := range ss {
		for _, q := range []struct {
			name   string
			value  func(step int) float64
			dashes []vg.Length
		}{
			{"p50", func(i int) float64 { return s.Steps[i].P50 }, nil},
			{"p99", func(i int) float64 { return s.Steps[i].P99 }, p99Dashes},
		} {
			var xys plotter.XYs
			for i, st := range s.Steps {
				if v := q.value(i); v > 0 {
					xys = append(xys, plotter.XY{X: st.Rate, Y: v})
				}
			}
			if len(xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, err
			}
			c := plotutil.Color(colors[s.System])
			line.Color, line.Width, line.Dashes = c, vg.Points(1.5), q.dashes
			points.Color, points.Shape = c, plotutil.Shape(colors[s.System])
			p.Add(line, points)
			p.Legend.Add(s.System+" "+q.name, line, points)
		}
	}
	logAxis(&p.Y)
	return p, nil
}

// scalingPoint is the highest rate one configuration sustained.
type scalingPoint struct {
	Partitions   int     `json:"partitions"`
	Instances    int     `json:"instances"` // aggregators and projectors each
	MaxSustained float64 `json:"maxSustained"`
	// Steps are the rates tried, the last one not sustained.
	Steps []loadgen.Result `json:"steps,omitempty"`
}

// plotScaling draws max sustained rate against partitions, one line per
// instance count (ascending), as a PNG at path. Points need not be sorted.
func plotScaling(points []scalingPoint, path string) error {
	byInstances := map[int]plotter.XYs{}
	var ticks plot.ConstantTicks // one labelled tick per partition count measured
	for _, pt := range points {
		x := float64(pt.Partitions)
		byInstances[pt.Instances] = append(byInstances[pt.Instances], plotter.XY{X: x, Y: pt.MaxSustained})
		if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == x }) {
			ticks = append(ticks, plot.Tick{Value: x, Label: fmt.Sprint(pt.Partitions)})
		}
	}
	// Rates grow with partitions, so the bottom right stays clear for the legend.
	p := newPlot("Highest sustained rate vs partitions", "partitions", "highest rate sustained (requests/s)", false, false)
	p.X.Min, p.Y.Min = 0, 0
	p.X.Tick.Marker = ticks
	instances := make([]int, 0, len(byInstances))
	for n := range byInstances {
		instances = append(instances, n)
	}
	slices.Sort(instances)
	for i, n := range instances {
		xys := byInstances[n]
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		line, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("plotting %d instances: %w", n, err)
		}
		line.Color, line.Width = plotutil.Color(i), vg.Points(1.5)
		pts.Color, pts.Shape = plotutil.Color(i), plotutil.Shape(i)
		p.Add(line, pts)
		p.Legend.Add(fmt.Sprintf("%d aggregator%s + %d projector%s", n, plural(n), n, plural(n)), line, pts)
	}
	return savePNG(p, path)
}

// plural is the suffix of a count-n noun.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// logAxis makes a logarithmic axis widened to whole decades, so that
// plot.LogTicks labels at least two powers of ten. It leaves an axis without
// positive data (Min ≤ 0 or Min > Max) linear.
func logAxis(a *plot.Axis) {
	if !(a.Min > 0 && a.Min <= a.Max) || math.IsInf(a.Max, 0) {
		return
	}
	a.Min = math.Pow10(int(math.Floor(math.Log10(a.Min))))
	a.Max = math.Pow10(int(math.Ceil(math.Log10(a.Max))))
	if a.Max <= a.Min {
		a.Max = a.Min * 10
	}
	a.Scale = plot.LogScale{}
	a.Tick.Marker = plot.LogTicks{Prec: -1}
}

// newPlot returns an empty plot with a grid and its legend, in a small
// font, inset from the corner that top and left name.
func newPlot(title, xLabel, yLabel string, top, left bool) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	p.Add(plotter.NewGrid())
	inset := vg.Points(8)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.Top, p.Legend.Left = top, left
	p.Legend.XOffs, p.Legend.YOffs = -inset, inset
	if left {
		p.Legend.XOffs = inset
	}
	if top {
		p.Legend.YOffs = -inset
	}
	return p
}

// savePNG writes p to path as a plotWidth × plotHeight PNG at plotDPI.
func savePNG(p *plot.Plot, path string) (err error) {
	c := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))
	p.Draw(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
