// Command results runs this module's benchmarks — baton against
// cloudflare/tableflip and an SO_REUSEPORT re-bind — and writes
// docs/RESULTS.md: the tables, the machine they were measured on, and the
// exact commands. "make results" at the repository's root runs it.
//
// Usage (in bench/):
//
//	go run ./cmd/results [-o FILE] [-upgrades N] [-handoff-runs N]
//	                     [-handoff-upgrades N] [-handoff-large-upgrades N] [-idle N]
//
// It builds the benchmarks once (go test -c), then runs the binary:
//
//	-test.bench '^BenchmarkIdle' -test.benchtime <idle>x
//	-test.bench for up to 1,000 sockets, -test.benchtime <handoff-upgrades>x,
//	    then for more, -test.benchtime <handoff-large-upgrades>x; both
//	    <handoff-runs> times (each run alternates the libraries, and the
//	    page shows the median of the runs)
//	-test.bench '^BenchmarkUpgradeUnderLoad$' -test.benchtime <upgrades>x
//	-test.bench '^BenchmarkPausingClients$' -test.benchtime <pausing-upgrades>x
//
// and the gRPC and HTTP/3 examples' benchmarks, built from
// ../examples/grpc and ../examples/http3 (modules of their own) and run in
// their server directories:
//
//	-test.bench '^BenchmarkDrain$' -test.benchtime <grpc-upgrades>x
//	-test.bench '^BenchmarkUpgrades$' -test.benchtime <http3-upgrades>x
//
// The benchmarks' output passes through to stderr as they run. The page
// is written even if a benchmark fails, with a note that says which; the
// exit status is then 1. SIGINT or SIGTERM stops the run without writing
// the page. With the defaults a run takes about 7 minutes on 2 cores, most
// of it under load (100 upgrades, about 0.45 s each, for each of 3 servers
// and 2 drains).
//
// Flags:
//
//	-o FILE              where to write the page (default ../docs/RESULTS.md)
//	-upgrades N          upgrades under load per server and drain (default 100)
//	-handoff-runs N      runs of the handoff benchmark (default 5)
//	-handoff-upgrades N  upgrades per size up to 1,000 sockets in each run
//	                     (default 20)
//	-handoff-large-upgrades N
//	                     upgrades per size above 1,000 sockets (default 5)
//	-idle N              idle processes measured per kind (default 10)
//	-pausing-upgrades N  upgrades per server with pausing clients (default 20)
//	-grpc-upgrades N     upgrades per gRPC drain (default 20)
//	-http3-upgrades N    upgrades per HTTP/3 routing mode (default 20)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "../docs/RESULTS.md", "where to write the page")
	upgrades := fs.Int("upgrades", 100, "upgrades under load per server and drain")
	handoffRuns := fs.Int("handoff-runs", 5, "runs of the handoff benchmark")
	handoffUpgrades := fs.Int("handoff-upgrades", 20, "upgrades per size up to 1,000 sockets in each handoff run")
	handoffLargeUpgrades := fs.Int("handoff-large-upgrades", 5, "upgrades per size above 1,000 sockets in each handoff run")
	idle := fs.Int("idle", 10, "idle processes measured per kind")
	pausing := fs.Int("pausing-upgrades", 20, "upgrades per server with pausing keep-alive clients")
	grpcUpgrades := fs.Int("grpc-upgrades", 20, "upgrades per gRPC drain")
	http3Upgrades := fs.Int("http3-upgrades", 20, "upgrades per HTTP/3 routing mode")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *upgrades < 1 || *handoffRuns < 1 || *handoffUpgrades < 1 || *handoffLargeUpgrades < 1 || *idle < 1 || *pausing < 1 || *grpcUpgrades < 1 || *http3Upgrades < 1 {
		fmt.Fprintln(stderr, "results: flags only, each count at least 1")
		fs.Usage()
		return 2
	}
	if b, err := os.ReadFile("go.mod"); err != nil || !bytes.Contains(b, []byte("module github.com/batonhq/baton/bench\n")) {
		fmt.Fprintln(stderr, "results: run me in bench/, the module github.com/batonhq/baton/bench (make results does)")
		return 2
	}
	// On SIGINT or SIGTERM the benchmark binary is killed (its helpers
	// exit by themselves once it is gone) and no page is written.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	p := &page{
		command: "cd bench && go run ./cmd/results " + strings.Join(args, " "),
		build:   "go test -c -o bench.test .\n(cd ../examples/grpc && go test -c -o grpc.test ./server)\n(cd ../examples/http3 && go test -c -o http3.test ./server)",
	}
	p.command = strings.TrimSpace(p.command)
	p.machine = describe("..")

	tmp, err := os.MkdirTemp("", "baton-results-")
	if err != nil {
		fmt.Fprintln(stderr, "results:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bench.test")
	fmt.Fprintln(stderr, "results: building the benchmarks:", p.build)
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, ".")
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(stderr, "results: go test -c:", err)
		return 1
	}
	grpcBin := filepath.Join(tmp, "grpc.test")
	http3Bin := filepath.Join(tmp, "http3.test")
	for _, ex := range []struct{ bin, dir string }{{grpcBin, grpcDir}, {http3Bin, http3Dir}} {
		build = exec.CommandContext(ctx, "go", "test", "-c", "-o", ex.bin, "./server")
		build.Dir = ex.dir
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(stderr, "results: go test -c in", ex.dir+":", err)
			return 1
		}
	}

	// A plan runs bin in dir ("" for bench/).
	type plan struct {
		what     string
		bin, dir string
		args     []string
	}
	bench := func(pattern string, n int) []string {
		return []string{"-test.run", "^$", "-test.bench", pattern, "-test.benchtime", strconv.Itoa(n) + "x", "-test.timeout", "30m"}
	}
	plans := []plan{{"idle", bin, "", bench("^BenchmarkIdle", *idle)}}
	for range *handoffRuns {
		plans = append(plans,
			plan{"handoff", bin, "", bench(handoffSmall, *handoffUpgrades)},
			plan{"handoff", bin, "", bench(handoffLarge, *handoffLargeUpgrades)})
	}
	plans = append(plans, plan{"load", bin, "", bench("^BenchmarkUpgradeUnderLoad$", *upgrades)})
	plans = append(plans, plan{"pausing", bin, "", bench("^BenchmarkPausingClients$", *pausing)})
	plans = append(plans, plan{"grpc", grpcBin, grpcServerDir, bench("^BenchmarkDrain$", *grpcUpgrades)})
	plans = append(plans, plan{"http3", http3Bin, http3ServerDir, bench("^BenchmarkUpgrades$", *http3Upgrades)})

	clock := readCPU()
	failed := false
	for i, pl := range plans {
		cmd := "./" + filepath.Base(pl.bin) + " " + quoteArgs(pl.args)
		if pl.dir != "" {
			cmd = "(cd " + pl.dir + " && ../" + filepath.Base(pl.bin) + " " + quoteArgs(pl.args) + ")"
		}
		fmt.Fprintf(stderr, "results: [%d/%d] %s\n", i+1, len(plans), cmd)
		r := execBench(ctx, pl.bin, pl.dir, pl.args, stderr)
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "results: interrupted; no page written")
			return 1
		}
		r.what, r.cmd = pl.what, cmd
		if r.err != "" {
			failed = true
			fmt.Fprintf(stderr, "results: %s: %s\n", cmd, r.err)
		}
		p.runs = append(p.runs, r)
	}
	p.machine.others = othersShare(clock, readCPU())
	p.machine.loadEnd = loadAverage()
	p.took = time.Since(start)

	var buf bytes.Buffer
	if err := render(&buf, p); err != nil {
		fmt.Fprintln(stderr, "results:", err)
		return 1
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(stderr, "results:", err)
		return 1
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintln(stderr, "results:", err)
		return 1
	}
	fmt.Fprintf(stderr, "results: wrote %s in %s\n", *out, roundDuration(p.took))
	if failed {
		return 1
	}
	return 0
}

// The gRPC and HTTP/3 examples, modules of their own: each built in its
// directory, its benchmark run in its server package's directory, as go
// test runs it.
const (
	grpcDir        = "../examples/grpc"
	grpcServerDir  = "../examples/grpc/server"
	http3Dir       = "../examples/http3"
	http3ServerDir = "../examples/http3/server"
)

// The handoff benchmark runs in two parts: up to 1,000 sockets a handoff
// takes milliseconds, above it (thousands of sockets) up to a second on 2
// cores, so those get fewer upgrades. A -test.bench pattern has one
// regular expression per level of the name, split at slashes.
const (
	handoffSmall = "^BenchmarkHandoff$/^lib=/^sockets=(1|10|100|1000)$"
	handoffLarge = "^BenchmarkHandoff$/^lib=/^sockets=([2-9]|[1-9][0-9])[0-9]{3}$"
)

// execBench runs the benchmark binary with args in dir ("": the current
// directory),
// its output passed on to log as it comes and parsed: results from its
// standard output, SKIP lines from its standard error. Apart, because the
// testing package prints a benchmark's name before it runs and its numbers
// after, and a line on stderr in between would split the result line.
func execBench(ctx context.Context, bin, dir string, args []string, log io.Writer) benchRun {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout = io.MultiWriter(&stdout, log)
	cmd.Stderr = io.MultiWriter(&stderr, log)
	start := time.Now()
	err := cmd.Run()
	r := benchRun{took: time.Since(start)}
	var perr, serr error
	r.results, _, perr = parseBench(&stdout)
	_, r.skips, serr = parseBench(&stderr)
	switch {
	case err != nil:
		r.err = err.Error()
	case perr != nil || serr != nil:
		r.err = errors.Join(perr, serr).Error()
	case len(r.results) == 0:
		r.err = "no benchmark results in its output"
	}
	return r
}

// quoteArgs joins args for a POSIX shell, quoting those that need it.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]^|&;<>(){}#~") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
