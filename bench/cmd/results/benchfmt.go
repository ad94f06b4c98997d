package main

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// A result is one line of go test -bench output:
//
//	BenchmarkHandoff/lib=baton/sockets=1-2  20  2725434 ns/op  2270712 ns/upgrade
//
// The name is split at "/" into the benchmark (Handoff) and its key=value
// components; the -GOMAXPROCS suffix is dropped.
type result struct {
	bench   string            // "Handoff"
	params  map[string]string // "lib": "baton", "sockets": "1"
	n       int               // iterations
	metrics map[string]float64
}

// parseBench returns the result lines of go test -bench output, in order,
// and the SKIP lines the benchmarks print (on stderr). Any other line is
// ignored.
func parseBench(r io.Reader) (results []result, skips []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "SKIP "); ok {
			skips = append(skips, s)
			continue
		}
		if res, ok := parseLine(line); ok {
			results = append(results, res)
		}
	}
	return results, skips, sc.Err()
}

// parseLine parses one result line; ok is false for any other line.
func parseLine(line string) (res result, ok bool) {
	f := strings.Fields(line)
	if len(f) < 2 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return res, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return res, false
	}
	name := strings.TrimPrefix(f[0], "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	parts := strings.Split(name, "/")
	res = result{bench: parts[0], params: map[string]string{}, n: n, metrics: map[string]float64{}}
	for _, p := range parts[1:] {
		k, v, found := strings.Cut(p, "=")
		if !found {
			return res, false
		}
		res.params[k] = v
	}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return res, false
		}
		res.metrics[f[i+1]] = v
	}
	return res, true
}

// find returns the results of bench whose params include all of want.
func find(rs []result, bench string, want map[string]string) []result {
	var out []result
	for _, r := range rs {
		if r.bench != bench {
			continue
		}
		match := true
		for k, v := range want {
			if r.params[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, r)
		}
	}
	return out
}

// values returns metric of each result that has it.
func values(rs []result, metric string) []float64 {
	var out []float64
	for _, r := range rs {
		if v, ok := r.metrics[metric]; ok {
			out = append(out, v)
		}
	}
	return out
}

// summary is a few numbers of the same measurement from several runs.
type summary struct {
	n                int
	median, min, max float64
}

func summarise(vs []float64) summary {
	if len(vs) == 0 {
		return summary{}
	}
	s := slices.Sorted(slices.Values(vs))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{n: len(s), median: m, min: s[0], max: s[len(s)-1]}
}

// sum adds metric over rs, and says whether any result had it.
func sum(rs []result, metric string) (float64, bool) {
	vs := values(rs, metric)
	var t float64
	for _, v := range vs {
		t += v
	}
	return t, len(vs) > 0
}
