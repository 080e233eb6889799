package main

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// bar is one cell's bar on the chart: where it is drawn, as the bar chart
// draws it, and what to mark on it.
type bar struct {
	group         int       // the workload and mode, on the X axis
	offset, width vg.Length // the bar's offset from its group's centre, its width
	median        float64
	lo, hi        float64 // the slowest run, the fastest
	errors, calls int64
}

// marks draws over the bars: a whisker on each from its slowest run to its
// fastest, and on a bar whose calls failed, red hatching, a red outline
// and "FAILS: N errors (P%)" above it (the chart's font has no ✗), so that a failing implementation cannot pass
// for a merely slow one (its bar is short, or none at all when every call
// failed). It implements plot.Plotter, and plot.Thumbnailer for the legend.
type marks struct {
	bars  []bar
	style draw.TextStyle // the labels', from the axis
}

var (
	failRed = color.RGBA{R: 200, A: 255}
	whisker = draw.LineStyle{Color: color.Black, Width: vg.Points(0.7)}
	hatch   = draw.LineStyle{Color: failRed, Width: vg.Points(1)}
	outline = draw.LineStyle{Color: failRed, Width: vg.Points(1.5)}
)

func (m *marks) failed() bool {
	for _, b := range m.bars {
		if b.errors > 0 {
			return true
		}
	}
	return false
}

// Plot implements plot.Plotter.
func (m *marks) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	label := m.style
	label.Color = failRed
	label.Rotation = math.Pi / 2
	label.XAlign = draw.XLeft // upwards from the point
	label.YAlign = draw.YCenter
	for _, b := range m.bars {
		x := trX(float64(b.group)) + b.offset
		lo, hi := trY(b.lo), trY(b.hi)
		if hi > lo {
			c.StrokeLine2(whisker, x, lo, x, hi)
			c.StrokeLine2(whisker, x-b.width/4, lo, x+b.width/4, lo)
			c.StrokeLine2(whisker, x-b.width/4, hi, x+b.width/4, hi)
		}
		if b.errors == 0 {
			continue
		}
		bottom, top := trY(0), trY(b.median)
		r := vg.Rectangle{Min: vg.Point{X: x - b.width/2, Y: bottom}, Max: vg.Point{X: x + b.width/2, Y: top}}
		hatchRect(&c, r)
		c.FillText(label, vg.Point{X: x, Y: max(top, hi) + vg.Points(3)},
			fmt.Sprintf("FAILS: %d errors (%.0f%%)", b.errors, 100*float64(b.errors)/float64(max(b.calls, 1))))
	}
}

// Thumbnail implements plot.Thumbnailer: the legend's sample of a
// failing bar.
func (m *marks) Thumbnail(c *draw.Canvas) {
	hatchRect(c, c.Rectangle)
}

// hatchRect draws r's outline and diagonal lines across it, in red.
func hatchRect(c *draw.Canvas, r vg.Rectangle) {
	const gap = 3 // points between the lines
	x0, y0, x1, y1 := r.Min.X, r.Min.Y, r.Max.X, r.Max.Y
	// The lines y = x + k that cross r, clipped to it.
	for k := y0 - x1 + gap; k < y1-x0; k += gap {
		xa, xb := max(x0, y0-k), min(x1, y1-k)
		if xa < xb {
			c.StrokeLine2(hatch, xa, xa+k, xb, xb+k)
		}
	}
	c.StrokeLines(outline, []vg.Point{{X: x0, Y: y0}, {X: x0, Y: y1}, {X: x1, Y: y1}, {X: x1, Y: y0}, {X: x0, Y: y0}})
}
