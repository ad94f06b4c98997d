// Command compare summarises the output of this module's benchmarks: for
// each benchmark and metric, the mean over all runs (-count) for each
// library, how far the runs strayed from it, and the ratio of the two
// libraries' means and of their medians (the median resists a run that
// other load on the machine slowed down).
//
// Usage:
//
//	compare [-a baton] [-b tableflip] [file ...]
//
// It reads go test -bench output from the files, or from standard input if
// there are none. A benchmark's library is its lib=NAME component; the
// other components make the row. The loop time ns/op is left out: the
// metrics that matter are reported by the benchmarks themselves.
//
// Example:
//
//	go test -run '^$' -bench . -benchtime 20x -count 5 . | tee bench.txt
//	go run ./cmd/compare bench.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := fs.String("a", "baton", "the library in the ratio's numerator")
	b := fs.String("b", "tableflip", "the library in the ratio's denominator")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var results []result
	read := func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			results = append(results, parseLine(sc.Text())...)
		}
		return sc.Err()
	}
	if fs.NArg() == 0 {
		if err := read(stdin); err != nil {
			fmt.Fprintln(stderr, "compare:", err)
			return 1
		}
	}
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "compare:", err)
			return 1
		}
		err = read(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "compare:", err)
			return 1
		}
	}
	if len(results) == 0 {
		fmt.Fprintln(stderr, "compare: no benchmark results with a lib= component in the input")
		return 1
	}
	write(stdout, summarise(results), *a, *b)
	return 0
}

// result is one metric of one benchmark run.
type result struct {
	bench string // the name without lib=… and without the -GOMAXPROCS suffix
	lib   string
	unit  string
	value float64
}

// parseLine returns the metrics of a benchmark result line, or nothing for
// any other line or a benchmark without a lib= component.
func parseLine(line string) []result {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return nil
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return nil
	}
	name := f[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	var lib string
	var parts []string
	for _, p := range strings.Split(strings.TrimPrefix(name, "Benchmark"), "/") {
		if v, ok := strings.CutPrefix(p, "lib="); ok {
			lib = v
			continue
		}
		parts = append(parts, p)
	}
	if lib == "" {
		return nil
	}
	var out []result
	for i := 2; i+1 < len(f); i += 2 {
		if f[i+1] == "ns/op" {
			continue
		}
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil
		}
		out = append(out, result{bench: strings.Join(parts, "/"), lib: lib, unit: f[i+1], value: v})
	}
	return out
}

// row is one benchmark and metric, with the statistics of each library.
type row struct {
	bench, unit string
	libs        map[string]stats
}

type stats struct {
	n    int
	mean float64
	// median resists the odd run disturbed by other load on the machine.
	median float64
	// spread is the largest distance of a run from the mean, relative to
	// the mean.
	spread float64
}

// summarise groups results into rows, in the order they first appear.
func summarise(results []result) []row {
	type key struct{ bench, unit string }
	var order []key
	values := map[key]map[string][]float64{}
	for _, r := range results {
		k := key{r.bench, r.unit}
		if values[k] == nil {
			values[k] = map[string][]float64{}
			order = append(order, k)
		}
		values[k][r.lib] = append(values[k][r.lib], r.value)
	}
	var rows []row
	for _, k := range order {
		rw := row{bench: k.bench, unit: k.unit, libs: map[string]stats{}}
		for lib, vs := range values[k] {
			var sum float64
			for _, v := range vs {
				sum += v
			}
			s := stats{n: len(vs), mean: sum / float64(len(vs)), median: median(vs)}
			for _, v := range vs {
				if s.mean != 0 {
					s.spread = max(s.spread, math.Abs(v-s.mean)/math.Abs(s.mean))
				}
			}
			rw.libs[lib] = s
		}
		rows = append(rows, rw)
	}
	return rows
}

func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func write(w io.Writer, rows []row, a, b string) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "benchmark\tmetric\t%s\t%s\t%s/%s\tof medians\n", a, b, a, b)
	for _, r := range rows {
		sa, okA := r.libs[a]
		sb, okB := r.libs[b]
		ratio, mratio := "-", "-"
		if okA && okB && sb.mean != 0 && sb.median != 0 {
			ratio = fmt.Sprintf("%.2f", sa.mean/sb.mean)
			mratio = fmt.Sprintf("%.2f", sa.median/sb.median)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.bench, r.unit, cell(r.unit, sa, okA), cell(r.unit, sb, okB), ratio, mratio)
	}
	tw.Flush()
	var others []string
	for _, r := range rows {
		for lib := range r.libs {
			if lib != a && lib != b && !slices.Contains(others, lib) {
				others = append(others, lib)
			}
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(w, "(left out: lib=%s)\n", strings.Join(others, ", lib="))
	}
}

// cell formats a mean in the metric's natural unit, with the spread and
// the number of runs.
func cell(unit string, s stats, ok bool) string {
	if !ok {
		return "-"
	}
	var v string
	switch {
	case strings.HasPrefix(unit, "ns/"):
		v = time.Duration(s.mean).Round(time.Microsecond).String()
	case strings.Contains(unit, "bytes"):
		v = fmt.Sprintf("%.1f KiB", s.mean/1024)
	default:
		v = strconv.FormatFloat(s.mean, 'g', 4, 64)
	}
	return fmt.Sprintf("%s ±%.0f%% (n=%d)", v, 100*s.spread, s.n)
}
