package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart draws the throughput of every implementation as a multiple of the
// floor's, one group of bars per workload and mode.
func chart(path, kind string, rs []result) error {
	var groups []string
	seen := map[string]bool{}
	floor := map[string]float64{}
	var names []string
	named := map[string]bool{}
	for _, r := range rs {
		g := r.workload + "\n" + r.mode
		if !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
		if !named[r.impl] {
			named[r.impl] = true
			names = append(names, r.impl)
		}
		if r.impl == "raw database/sql floor" {
			floor[g] = r.opsPerSec
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("find-or-create throughput on %s, as a multiple of the raw database/sql floor (higher is better)", kind)
	p.Y.Label.Text = "× floor"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	width := vg.Points(9)
	top := 1.0
	for i, name := range names {
		vals := make(plotter.Values, len(groups))
		for _, r := range rs {
			if r.impl != name {
				continue
			}
			g := r.workload + "\n" + r.mode
			for j, gg := range groups {
				if gg == g && floor[g] > 0 {
					vals[j] = r.opsPerSec / floor[g]
					top = max(top, vals[j])
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		if name == "raw database/sql floor" {
			bars.Color = color.Gray{Y: 90}
		}
		bars.Offset = width * vg.Length(i-len(names)/2)
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	p.Y.Max = top * 1.5 // room for the legend above the bars
	p.NominalX(groups...)
	return p.Save(34*vg.Centimeter, 16*vg.Centimeter, path)
}
