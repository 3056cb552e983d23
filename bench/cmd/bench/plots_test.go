package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// checkPNG fails t unless path is a PNG of at least 400×250 pixels.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 250 {
		t.Errorf("%s is %d×%d pixels, want at least 400×250", path, b.Dx(), b.Dy())
	}
}

func TestWritePlotsFromResults(t *testing.T) {
	raw, err := os.ReadFile("../../../docs/bench/results.json")
	if err != nil {
		t.Fatal(err)
	}
	var r results
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Series) == 0 {
		t.Fatal("results.json has no series")
	}
	var want []string
	for _, s := range r.Series {
		slug := mixSlug(s.Mix)
		if name := "latency-cdf-" + slug + ".png"; !slices.Contains(want, name) {
			want = append(want, name, "latency-vs-load-"+slug+".png")
		}
	}
	dir := t.TempDir()
	names, err := writePlots(r, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("writePlots returned %q, want %q", names, want)
	}
	for _, name := range names {
		checkPNG(t, filepath.Join(dir, name))
	}
}

func TestPlotMixSlug(t *testing.T) {
	for in, want := range map[string]string{
		"spread (1,000 orders)": "spread",
		"hot (10 orders)":       "hot",
		"Hot/Cold":              "hotcold",
		"(weird)":               "weird",
		"":                      "mix",
	} {
		if got := mixSlug(in); got != want {
			t.Errorf("mixSlug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWritePlotsNoSeries(t *testing.T) {
	dir := t.TempDir()
	names, err := writePlots(results{}, dir)
	if err != nil || len(names) != 0 {
		t.Fatalf("writePlots(no series) = %q, %v; want no files, no error", names, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("writePlots(no series) wrote %d files", len(entries))
	}
}

func TestPlotScaling(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scaling.png")
	points := []scalingPoint{
		{Partitions: 4, Instances: 1, MaxSustained: 1000},
		{Partitions: 1, Instances: 1, MaxSustained: 500},
		{Partitions: 1, Instances: 2, MaxSustained: 500},
		{Partitions: 4, Instances: 2, MaxSustained: 1500},
		{Partitions: 8, Instances: 2, MaxSustained: 0},
	}
	if err := plotScaling(points, path); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, path)
}
