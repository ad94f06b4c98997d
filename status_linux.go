package baton

import (
	"os"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/sockdiag"
)

// processStart is when this process started, from /proc; the zero time
// if /proc does not say.
func processStart() time.Time {
	st, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		return time.Time{}
	}
	t, err := procfs.Started(st)
	if err != nil {
		return time.Time{}
	}
	return t
}

// olderGenerations are the generations of the lineage older than this one
// that still run (same pid and start time), oldest first: they drain.
func (u *Upgrader) olderGenerations() []GenerationStatus {
	ids, ok := u.lineage()
	if !ok {
		return nil
	}
	var out []GenerationStatus
	for _, id := range ids {
		if id.Gen >= u.gen || id.PID == os.Getpid() {
			continue
		}
		g := GenerationStatus{Generation: id.Gen, PID: id.PID, State: GenDraining}
		if st, err := procfs.ReadStat(id.PID); err == nil {
			g.Started, _ = procfs.Started(st)
		}
		out = append(out, g)
	}
	return out
}

// observe fills in each generation's connections and resident memory:
// one dump of the TCP connections of the host (sock_diag, filtered by
// state in the kernel), matched against each process's descriptors.
func observe(gens []GenerationStatus) {
	owner := map[uint64]int{}
	for i := range gens {
		g := &gens[i]
		g.Connections, g.RSS = -1, 0
		if kib, err := procfs.VmRSS(g.PID); err == nil {
			g.RSS = kib << 10
		}
		inodes, err := procfs.SocketInodes(g.PID)
		if err != nil {
			continue
		}
		g.Connections = 0
		for _, ino := range inodes {
			owner[ino] = i
		}
	}
	socks, err := sockdiag.TCP(sockdiag.Held)
	if err != nil {
		for i := range gens {
			gens[i].Connections = -1
		}
		return
	}
	for _, s := range socks {
		if i, ok := owner[s.Inode]; ok && s.Inode != 0 {
			gens[i].Connections++
		}
	}
}
