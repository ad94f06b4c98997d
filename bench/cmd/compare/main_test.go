package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		want []result
	}{
		{
			"BenchmarkHandoff/lib=baton/sockets=64-2   \t      20\t   3156814 ns/op\t   2583204 ns/upgrade",
			[]result{{bench: "Handoff/sockets=64", lib: "baton", unit: "ns/upgrade", value: 2583204}},
		},
		{
			"BenchmarkIdle/lib=tableflip-2 20 6584934 base-rss-bytes 11059 rss-bytes",
			[]result{
				{bench: "Idle", lib: "tableflip", unit: "base-rss-bytes", value: 6584934},
				{bench: "Idle", lib: "tableflip", unit: "rss-bytes", value: 11059},
			},
		},
		{"BenchmarkIdle/lib=baton 20 -11469 rss-bytes", []result{{bench: "Idle", lib: "baton", unit: "rss-bytes", value: -11469}}},
		{"BenchmarkOther-2 20 100 ns/op 5 widgets", nil}, // no lib=
		{"--- FAIL: BenchmarkHandoff/lib=baton/sockets=1", nil},
		{"BenchmarkHandoff/lib=baton/sockets=1-2 --- FAIL", nil},
		{"goos: linux", nil},
		{"PASS", nil},
	}
	for _, tt := range tests {
		if got := parseLine(tt.line); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseLine(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func TestRun(t *testing.T) {
	in := `goos: linux
BenchmarkHandoff/lib=tableflip/sockets=1-2 20 2000000 ns/op 4000000 ns/upgrade
BenchmarkHandoff/lib=baton/sockets=1-2 20 2000000 ns/op 1000000 ns/upgrade
BenchmarkHandoff/lib=baton/sockets=1-2 20 2000000 ns/op 3000000 ns/upgrade
BenchmarkHandoff/lib=tableflip/sockets=1-2 20 2000000 ns/op 4000000 ns/upgrade
BenchmarkIdle/lib=baton-2 20 10240 rss-bytes
PASS
`
	var out, errs bytes.Buffer
	if code := run(nil, strings.NewReader(in), &out, &errs); code != 0 {
		t.Fatalf("run = %d, stderr %q", code, errs.String())
	}
	want := map[string]string{
		"Handoff/sockets=1": "Handoff/sockets=1 ns/upgrade 2ms ±50% (n=2) 4ms ±0% (n=2) 0.50 0.50",
		"Idle":              "Idle rss-bytes 10.0 KiB ±0% (n=1) - - -",
	}
	for line := range strings.Lines(out.String()) {
		f := strings.Fields(line)
		if w, ok := want[f[0]]; ok {
			if got := strings.Join(f, " "); got != w {
				t.Errorf("run printed row %q, want %q", got, w)
			}
			delete(want, f[0])
		}
	}
	for k := range want {
		t.Errorf("run printed no row %s:\n%s", k, out.String())
	}
	if code := run(nil, strings.NewReader("PASS\n"), &out, &errs); code != 1 {
		t.Errorf("run on input without results = %d, want 1", code)
	}
}
