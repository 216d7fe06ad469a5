// Command report turns hyperfine's JSON exports into the Markdown tables of
// BENCHMARKS.md: the median, p90 and mean of each command and its ratio to a baseline.
//
//	report -title T -base NAME [-diff A,B] FILE.json...   prints one section to stdout
//
// The runs of a command found in several files (bench/run.sh measures in
// blocks) make one row. -diff A,B adds a row for the median of A less the
// median of B (what A costs beyond B), with its ratio to the baseline.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type export struct {
	Results []struct {
		Command string    `json:"command"`
		Times   []float64 `json:"times"`
	} `json:"results"`
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// mean is the arithmetic mean of xs, 0 for none: back to back, a tail
// (the kernel's teardown of the run before) shows in it, not in the
// median.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// quantile is the q-quantile of xs (nearest rank), 0 for none.
func quantile(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func main() {
	title := flag.String("title", "", "section title")
	base := flag.String("base", "", "command name the ratios are relative to")
	note := flag.String("note", "", "a line printed under the table")
	diff := flag.String("diff", "", "A,B: add a row for the median of A less that of B")
	flag.Parse()
	type row struct {
		name   string
		median float64
		p90    float64
		mean   float64
		runs   int
	}
	var rows []row
	// Runs of one command in several files (blocks of one measurement)
	// are one row.
	times := map[string][]float64{}
	var order []string
	for _, f := range flag.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var e export
		if err := json.Unmarshal(b, &e); err != nil {
			fmt.Fprintln(os.Stderr, f, err)
			os.Exit(1)
		}
		for _, r := range e.Results {
			if _, ok := times[r.Command]; !ok {
				order = append(order, r.Command)
			}
			times[r.Command] = append(times[r.Command], r.Times...)
		}
	}
	for _, name := range order {
		t := times[name]
		rows = append(rows, row{name, median(t), quantile(t, 0.9), mean(t), len(t)})
	}
	baseline := 0.0
	for _, r := range rows {
		if r.name == *base {
			baseline = r.median
		}
	}
	fmt.Printf("## %s\n\n| command | median | p90 | mean | runs | × %s |\n|---|---:|---:|---:|---:|---:|\n", *title, *base)
	for _, r := range rows {
		ratio := "-"
		if baseline > 0 {
			ratio = fmt.Sprintf("%.2f", r.median/baseline)
		}
		fmt.Printf("| `%s` | %.1f ms | %.1f ms | %.1f ms | %d | %s |\n", r.name, r.median*1000, r.p90*1000, r.mean*1000, r.runs, ratio)
	}
	if a, b, ok := strings.Cut(*diff, ","); ok {
		var ma, mb float64
		found := 0
		for _, r := range rows {
			switch r.name {
			case a:
				ma, found = r.median, found+1
			case b:
				mb, found = r.median, found+1
			}
		}
		if found != 2 {
			fmt.Fprintf(os.Stderr, "report: -diff %s: no rows of those names\n", *diff)
			os.Exit(1)
		}
		ratio := "-"
		if baseline > 0 {
			ratio = fmt.Sprintf("%.2f", (ma-mb)/baseline)
		}
		fmt.Printf("| `%s` less `%s` | %.1f ms | | | | %s |\n", a, b, (ma-mb)*1000, ratio)
	}
	if *note != "" {
		fmt.Printf("\n%s\n", *note)
	}
	fmt.Println()
}
