//go:build linux

package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The paths of examples/kubernetes the tests read.
const (
	exampleDir       = "/examples/kubernetes/"
	containerPrefix  = ".spec.template.spec.containers[0]"
	podSpecPrefix    = ".spec.template.spec"
	exampleHealthURL = "/healthz" // examples/kubernetes: HealthPath
)

// example is the container of the example's Deployment.
type example struct {
	m   *manifest
	doc string // the Deployment's document index, as a path prefix
	// command and args of the container: baton, "run", its flags, "--",
	// and the worker's argv.
	command, args []string
	batonFlags    []string // between "run" and "--"
	program       []string // after "--"
}

// readExampleDeployment reads the Deployment of examples/kubernetes and
// splits its command line.
func readExampleDeployment(t *testing.T) *example {
	t.Helper()
	m := readExample(t)
	d := m.doc("Deployment")
	if d < 0 {
		t.Fatalf("examples/kubernetes/deployment.yaml has no Deployment (kinds %v)", m.kinds)
	}
	e := &example{m: m, doc: strconv.Itoa(d)}
	e.command = m.list(e.doc + containerPrefix + ".command")
	e.args = m.list(e.doc + containerPrefix + ".args")
	dd := slices.Index(e.args, "--")
	if len(e.command) != 1 || path.Base(e.command[0]) != "baton" || len(e.args) == 0 || e.args[0] != "run" || dd < 0 || dd == len(e.args)-1 {
		t.Fatalf("the example's container runs %q %q; want baton, then run FLAGS -- PROGRAM ARGS", e.command, e.args)
	}
	e.batonFlags, e.program = e.args[1:dd], e.args[dd+1:]
	return e
}

// flagValues returns the values given to the flag name (without dashes)
// in args: "-name V", "--name V", "-name=V" or "--name=V".
func flagValues(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if args[i] == a {
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok && k == name {
			out = append(out, v)
		} else if a == name && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
	}
	return out
}

// one returns the only value of the flag, or fails the test.
func one(t *testing.T, args []string, name string) string {
	t.Helper()
	v := flagValues(args, name)
	if len(v) != 1 {
		t.Fatalf("the example gives -%s %d times (%q); want once", name, len(v), v)
	}
	return v[0]
}

// accepts runs bin with args and "-h" after them: the flag packages of
// baton and of the worker stop at the first flag they do not know, or
// whose value does not parse (exit 2), and exit 0 on -h only if
// everything before it was good.
func accepts(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "-h")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s %s -h: %v; its flags do not take what the example gives:\n%s", path.Base(bin), strings.Join(args, " "), err, out.String())
	}
}

// TestKubernetesExample keeps examples/kubernetes honest: baton run and
// the worker accept the flags of the Deployment; the probes, the ports
// and --ready name the address and path the worker serves; the ConfigMap
// is mounted where --watch and -config look, as a directory (a subPath
// mount is never updated); the grace period outlasts preStop and the
// drain; the Containerfile puts the binaries where the command finds
// them. TestConfigMapWatch runs the same command line.
func TestKubernetesExample(t *testing.T) {
	t.Parallel()
	e := readExampleDeployment(t)
	m, c, spec := e.m, e.doc+containerPrefix, e.doc+podSpecPrefix

	// The flags, by the real flag sets.
	accepts(t, batonBin, append([]string{"run"}, e.batonFlags...)...)
	if e.program[0] != "/greeter" {
		t.Errorf("the worker is %q; want /greeter, the Containerfile's", e.program[0])
	}
	accepts(t, greeterBin, e.program[1:]...)

	// Ports and paths.
	listen := one(t, e.batonFlags, "listen")
	name, addr, _ := strings.Cut(listen, "=")
	socket := "web" // the worker's default -socket
	if v := flagValues(e.program, "socket"); len(v) > 0 {
		socket = v[len(v)-1]
	}
	if name != socket {
		t.Errorf("baton run --listen %s names its socket %q; the worker takes %q", listen, name, socket)
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "tcp" {
		t.Fatalf("--listen %s: want NAME=tcp://ADDRESS", listen)
	}
	_, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatalf("--listen %s: %v", listen, err)
	}
	ready, err := url.Parse(one(t, e.batonFlags, "ready"))
	if err != nil || ready.Scheme != "http" || ready.Port() != port || ready.Path != exampleHealthURL || !net.ParseIP(ready.Hostname()).IsLoopback() {
		t.Errorf("--ready %s: want http://127.0.0.1:%s%s, the worker's health check through the socket", ready, port, exampleHealthURL)
	}
	if got, _ := m.get(c + ".ports[0].containerPort"); got != port {
		t.Errorf("containerPort %q; want %s, baton's --listen", got, port)
	}
	for _, probe := range []string{"readinessProbe", "startupProbe"} {
		p, _ := m.get(c + "." + probe + ".httpGet.port")
		h, _ := m.get(c + "." + probe + ".httpGet.path")
		if p != port || h != exampleHealthURL {
			t.Errorf("%s asks for port %q path %q; want %s %s", probe, p, h, port, exampleHealthURL)
		}
	}
	// Liveness asks the master: the command must be one baton takes.
	live := m.list(c + ".livenessProbe.exec.command")
	if len(live) < 2 || live[0] != e.command[0] || live[1] != "status" {
		t.Errorf("livenessProbe runs %q; want %s status", live, e.command[0])
	} else {
		accepts(t, batonBin, live[1:]...)
	}

	// The ConfigMap: mounted as a directory where --watch and -config
	// look, with a config.json the worker takes.
	watch := one(t, e.batonFlags, "watch")
	if cfg := one(t, e.program, "config"); cfg != watch {
		t.Errorf("--watch %s but the worker reads -config %s", watch, cfg)
	}
	mounted := false
	for i := 0; m.has(c + ".volumeMounts[" + strconv.Itoa(i) + "]"); i++ {
		vm := c + ".volumeMounts[" + strconv.Itoa(i) + "]"
		if mp, _ := m.get(vm + ".mountPath"); mp != path.Dir(watch) {
			continue
		}
		mounted = true
		if m.has(vm + ".subPath") {
			t.Errorf("the config volume is mounted with subPath: the kubelet never updates such a mount")
		}
		vname, _ := m.get(vm + ".name")
		for j := 0; m.has(spec + ".volumes[" + strconv.Itoa(j) + "]"); j++ {
			v := spec + ".volumes[" + strconv.Itoa(j) + "]"
			if n, _ := m.get(v + ".name"); n != vname {
				continue
			}
			cm, _ := m.get(v + ".configMap.name")
			d := m.doc("ConfigMap")
			if got, _ := m.get(strconv.Itoa(d) + ".metadata.name"); d < 0 || got != cm {
				t.Errorf("volume %s is ConfigMap %q, which the manifest does not hold", vname, cm)
				continue
			}
			data, ok := m.get(strconv.Itoa(d) + ".data." + path.Base(watch))
			var cfg struct{ Greeting string }
			if !ok || json.Unmarshal([]byte(data), &cfg) != nil || cfg.Greeting == "" {
				t.Errorf("ConfigMap %s: %s is %q; want the worker's JSON with a greeting", cm, path.Base(watch), data)
			}
		}
	}
	if !mounted {
		t.Errorf("no volume is mounted at %s, where --watch looks", path.Dir(watch))
	}

	// Termination: preStop, then SIGTERM and baton's drain, within the
	// grace period; the worker drains before baton would kill it.
	grace := atoi(t, m, spec+".terminationGracePeriodSeconds")
	sleep := atoi(t, m, c+".lifecycle.preStop.sleep.seconds")
	drain, err := time.ParseDuration(one(t, e.batonFlags, "drain-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(grace)*time.Second <= time.Duration(sleep)*time.Second+drain {
		t.Errorf("terminationGracePeriodSeconds %d ≤ preStop %ds + --drain-timeout %v: the kubelet would SIGKILL a drain", grace, sleep, drain)
	}
	if wd, err := time.ParseDuration(one(t, e.program, "drain")); err != nil || wd >= drain {
		t.Errorf("the worker's -drain %v, %v; want less than baton's --drain-timeout %v", wd, err, drain)
	}
	if uid, _ := m.get(c + ".securityContext.runAsUser"); uid != strings.Split(containerUser, ":")[0] {
		t.Errorf("runAsUser %q; the container tests run as %s (distroless nonroot)", uid, containerUser)
	}

	// The Containerfile builds both binaries and puts them where the
	// command line finds them.
	b, err := os.ReadFile(moduleDir + exampleDir + "Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	cf := string(b)
	for _, want := range []string{
		"-o /out/baton ./cmd/baton", "-o /out/greeter ./examples/kubernetes",
		"COPY --from=build /out/baton " + e.command[0], "COPY --from=build /out/greeter " + e.program[0],
		"distroless/static", "CGO_ENABLED=0",
	} {
		if !strings.Contains(cf, want) {
			t.Errorf("the Containerfile does not say %q", want)
		}
	}
}

func atoi(t *testing.T, m *manifest, path string) int {
	t.Helper()
	v, _ := m.get(path)
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %q, not a number", path, v)
	}
	return n
}
