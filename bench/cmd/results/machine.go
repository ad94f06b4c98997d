package main

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// describe fills in what does not change during a run: the hardware, the
// software, and the commit measured.
func describe(root string) machine {
	m := machine{
		cores:     runtime.NumCPU(),
		goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		date:      time.Now(),
		others:    -1,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.cpu = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.memory = memTotal(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		m.nofileHard = lim.Max
	}
	m.tableflip = output("go", "list", "-m", "-f", "{{.Path}} {{.Version}}", "github.com/cloudflare/tableflip")
	m.commit = output("git", "-C", root, "rev-parse", "HEAD")
	if m.commit == "" {
		m.commit = "unknown (no git)"
	}
	m.dirty = output("git", "-C", root, "status", "--porcelain", "--untracked-files=no") != ""
	m.loadStart = loadAverage()
	return m
}

// output runs a command and returns its trimmed standard output, or "" if
// it failed.
func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for l := range strings.Lines(cpuinfo) {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// memTotal returns MemTotal of /proc/meminfo in bytes.
func memTotal(meminfo string) int64 {
	for l := range strings.Lines(meminfo) {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuClock is a reading of the CPU time used on the whole machine and by
// this process's reaped children, to tell how much of the machine others
// used in between.
type cpuClock struct {
	busy, total float64 // seconds, all CPUs, from /proc/stat
	children    float64 // seconds, user and system, of reaped children
	ok          bool
}

func readCPU() cpuClock {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuClock{}
	}
	busy, total, ok := parseStat(b)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) != nil {
		return cpuClock{}
	}
	children := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return cpuClock{busy: busy, total: total, children: children, ok: ok}
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// parseStat returns the busy and total CPU seconds of the "cpu" line of
// /proc/stat. Busy is everything but idle and iowait; steal (time the
// hypervisor gave to other machines) counts as busy, since it is lost to us
// too.
func parseStat(stat []byte) (busy, total float64, ok bool) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]float64 // user nice system idle iowait irq softirq steal
	for i := range v {
		n, err := strconv.ParseFloat(f[i+1], 64)
		if err != nil {
			return 0, 0, false
		}
		v[i] = n / clockTicks
		total += v[i]
	}
	return total - v[3] - v[4], total, true
}

// othersShare is the share of the machine's CPU time between a and b used
// by anything but our children, or -1 if unknown.
func othersShare(a, b cpuClock) float64 {
	if !a.ok || !b.ok || b.total <= a.total {
		return -1
	}
	others := (b.busy - a.busy) - (b.children - a.children)
	return min(max(others/(b.total-a.total), 0), 1)
}
