package nspawn

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// cgroupPrefix starts the name of every cgroup Boot makes; the owning test
// process's pid follows, so a later Boot can tell a stale one.
const cgroupPrefix = "baton-nspawn-"

// cgroupParents returns the directories in which Boot makes a container's
// cgroup: for each hierarchy nspawn uses, the cgroup the test process is
// in. mounts is /proc/self/mounts and self is /proc/self/cgroup.
//
// nspawn uses the unified (cgroup2) hierarchy and the named v1 hierarchy
// "name=systemd", whichever the host has: both on a hybrid host. Controller
// hierarchies (cpu, memory, …) are none of its business, nor of ours. Only
// mounts under /sys/fs/cgroup count: another cgroup2 mount elsewhere is
// someone else's view of the same tree.
func cgroupParents(mounts, self string) ([]string, error) {
	var unified, named string // mount points
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[1] != "/sys/fs/cgroup" && !strings.HasPrefix(f[1], "/sys/fs/cgroup/")) {
			continue
		}
		switch {
		case f[2] == "cgroup2" && unified == "":
			unified = f[1]
		case f[2] == "cgroup" && hasOption(f[3], "name=systemd") && named == "":
			named = f[1]
		}
	}
	var unifiedPath, namedPath string // the test process's cgroups
	for _, line := range strings.Split(self, "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrl, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && ctrl == "":
			unifiedPath = p
		case hasOption(ctrl, "name=systemd"):
			namedPath = p
		}
	}
	var dirs []string
	for _, h := range []struct{ mount, self, what string }{
		{named, namedPath, "name=systemd"},
		{unified, unifiedPath, "cgroup2"},
	} {
		if h.mount == "" {
			continue
		}
		// A path that climbs ("/..") means the process sits outside its
		// cgroup namespace's root: there is no directory to make ours in.
		if !strings.HasPrefix(h.self, "/") || strings.Contains(h.self, "/..") {
			return nil, fmt.Errorf("the %s cgroup of this process is %q, not a path under %s", h.what, h.self, h.mount)
		}
		dirs = append(dirs, path.Join(h.mount, h.self))
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no cgroup2 or name=systemd hierarchy mounted under /sys/fs/cgroup")
	}
	return dirs, nil
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// cgroupOwner returns the pid in a cgroup name Boot made, and whether name
// is one.
func cgroupOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, cgroupPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}
