package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chart draws the throughput of every implementation as a multiple of the
// floor's, one group of bars per workload and mode: the median of the runs,
// a whisker from the slowest run to the fastest, and, over the bar of a
// cell whose calls failed, red hatching and "FAILS: N errors" (marks.go).
func chart(path, server string, b *bench, rs []result) error {
	var groups []string
	group := map[string]int{}
	var names []string
	named := map[string]bool{}
	for _, r := range rs {
		g := r.workload + "\n" + r.mode
		if _, ok := group[g]; !ok {
			group[g] = len(groups)
			groups = append(groups, g)
		}
		if !named[r.impl] {
			named[r.impl] = true
			names = append(names, r.impl)
		}
	}
	floor := floors(rs)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("find-or-create throughput on %s, as a multiple of the raw database/sql floor (higher is better)\n"+
		"median of %s of %s per cell, interleaved; whiskers: the slowest and the fastest run", server, plural(b.runs, "run"), b.budget)
	p.Y.Label.Text = "× floor"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	width := vg.Points(9)
	m := &marks{style: p.X.Tick.Label}
	top := 1.0
	for i, name := range names {
		vals := make(plotter.Values, len(groups))
		offset := width * vg.Length(float64(i)-float64(len(names)-1)/2)
		for _, r := range rs {
			f := floor[r.workload+r.mode]
			if r.impl != name || f == 0 {
				continue
			}
			j := group[r.workload+"\n"+r.mode]
			vals[j] = r.opsPerSec / f
			top = max(top, r.maxOps/f)
			m.bars = append(m.bars, bar{group: j, offset: offset, width: width,
				median: vals[j], lo: r.minOps / f, hi: r.maxOps / f, errors: r.errors, calls: r.calls})
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = palette[i%len(palette)]
		if name == floorName {
			bars.Color = color.Gray{Y: 90}
		}
		bars.Offset = offset
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	p.Add(m)
	if m.failed() {
		p.Legend.Add("calls failed (errors over all runs)", m)
	}
	p.Y.Max = top * 1.6 // room for the legend and the failure labels above the bars
	p.NominalX(groups...)
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5 // room for the outer bars
	return p.Save(34*vg.Centimeter, 17*vg.Centimeter, path)
}

// palette gives each implementation a color of its own (plotutil's seven
// would repeat among the ten): Tableau's ten, but gray, the floor's.
var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	color.RGBA{R: 0xbc, G: 0xbd, B: 0x22, A: 0xff},
	color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff},
	color.RGBA{R: 0x39, G: 0x3b, B: 0x79, A: 0xff},
}
