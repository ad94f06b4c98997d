//go:build linux

package baton_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/proctest"
)

func init() {
	proctest.Register("relay", relayMain)
}

// relayMain is one generation of a UDP server that keeps "connections"
// in user space, as QUIC does: every datagram starts with the number of
// the generation it belongs to. The generation that reads a datagram
// answers it if it is its own, and relays it otherwise; a generation
// answers relayed datagrams from its own copy of the shared socket. Once
// a successor serves, a generation stops reading the socket. Commands, the
// rest of a datagram: "stats" answers the generation's RelayStats as JSON,
// "remember" keeps the sender's address, anything else is echoed. SIGHUP
// upgrades; SIGUSR2 makes the generation relay "up" to generation+2 on
// behalf of the remembered address; SIGUSR1 ends a draining generation,
// SIGTERM a serving one.
func relayMain() {
	upg, err := baton.New(baton.Options{})
	check(err)
	gen := upg.Generation()
	relayed, err := upg.RelayedPackets("t")
	check(err)
	udp, err := upg.ListenPacket("udp", "127.0.0.1:0")
	check(err)

	var mu sync.Mutex
	var remembered netip.AddrPort
	answer := func(b []byte, from netip.AddrPort, via string) {
		_, cmd, _ := strings.Cut(string(b), " ")
		var reply string
		switch cmd {
		case "stats":
			j, _ := json.Marshal(upg.RelayStats())
			reply = string(j)
		case "remember":
			mu.Lock()
			remembered = from
			mu.Unlock()
			reply = fmt.Sprintf("gen=%d remembered", gen)
		default:
			reply = fmt.Sprintf("gen=%d pid=%d got=%s via=%s", gen, os.Getpid(), cmd, via)
		}
		udp.WriteTo([]byte(reply), net.UDPAddrFromAddrPort(from))
	}
	go func() {
		b := make([]byte, 2048)
		for {
			n, addr, err := udp.ReadFrom(b)
			if err != nil {
				return // Exit: the successor reads the socket now
			}
			from := addr.(*net.UDPAddr).AddrPort()
			target, _, _ := strings.Cut(string(b[:n]), " ")
			g, err := strconv.Atoi(target)
			if err != nil || g == gen {
				answer(b[:n], from, "direct")
				continue
			}
			if err := upg.RelayPacket("t", g, from, b[:n]); err != nil {
				udp.WriteTo(fmt.Appendf(nil, "dropped by=%d gone=%t err=%v", gen, errors.Is(err, baton.ErrRelayDropped), err), addr)
			}
		}
	}()
	go func() {
		for p := range relayed {
			answer(p.Data, p.From, "relay")
		}
	}()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2)
	check(upg.Ready())
	fmt.Printf("relay-ready gen=%d pid=%d udp=%s\n", gen, os.Getpid(), udp.LocalAddr())
	draining := false
	for s := range sigs {
		switch s {
		case syscall.SIGHUP:
			if err := upg.Upgrade(); err != nil {
				fmt.Printf("relay-upgrade-failed gen=%d err=%q\n", gen, err)
				continue
			}
			<-upg.Exit()
			draining = true
			// Stop reading, keep writing: a draining reader would take
			// the successor's datagrams.
			udp.SetReadDeadline(time.Now())
			fmt.Printf("relay-draining gen=%d pid=%d handed-over=%t\n", gen, os.Getpid(), upg.HandedOver())
		case syscall.SIGUSR2:
			mu.Lock()
			to := remembered
			mu.Unlock()
			err := upg.RelayPacket("t", gen+2, to, fmt.Appendf(nil, "%d up", gen+2))
			fmt.Printf("relay-up gen=%d err=%v\n", gen, err)
		case syscall.SIGUSR1, syscall.SIGTERM:
			if s == syscall.SIGUSR1 && !draining {
				continue
			}
			upg.Stop()
			fmt.Printf("relay-exit gen=%d pid=%d handed-over=%t\n", gen, os.Getpid(), upg.HandedOver())
			os.Exit(0)
		}
	}
}

// Datagrams reach the generation they belong to through the generation
// that reads the socket, across two hops, in both directions; one for a
// generation that is gone, or that no link leads to any more, is dropped
// and counted by the generation that could not pass it on.
func TestRelayAcrossGenerations(t *testing.T) {
	t.Parallel()
	p := proctest.Start(t, "relay", nil)
	line, err := p.WaitLine("relay-ready gen=1 ", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := proctest.Field(line, "udp")
	pids := map[int]int{1: p.Pid()}
	for gen := 2; gen <= 3; gen++ {
		syscall.Kill(pids[gen-1], syscall.SIGHUP)
		line, err := p.WaitLine(fmt.Sprintf("relay-ready gen=%d ", gen), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pids[gen], _ = strconv.Atoi(proctest.Field(line, "pid"))
		proctest.Track(t, pids[gen], 15*time.Second)
		line, err = p.WaitLine(fmt.Sprintf("relay-draining gen=%d ", gen-1), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if proctest.Field(line, "handed-over") != "true" {
			t.Errorf("%s: want HandedOver true once a successor took over", line)
		}
	}
	t.Cleanup(func() {
		syscall.Kill(pids[3], syscall.SIGTERM)
		// The last generation's Exit is closed by Stop: nobody took over.
		if line, err := p.WaitLine("relay-exit gen=3 ", 10*time.Second); err != nil || proctest.Field(line, "handed-over") != "false" {
			t.Errorf("generation 3 stopped: %q, %v; want HandedOver false after the final Stop", line, err)
		}
		syscall.Kill(pids[2], syscall.SIGUSR1)
		syscall.Kill(pids[1], syscall.SIGUSR1)
	})

	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(msg string) string {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2048)
		n, err := c.Read(b)
		if err != nil {
			c.Write([]byte("3 stats"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err2 := c.Read(b)
			t.Fatalf("no answer to %q: %v (3 stats: %s %v)", msg, err, b[:n], err2)
		}
		return string(b[:n])
	}
	for _, tc := range []struct{ msg, want string }{
		{"3 hi", fmt.Sprintf("gen=3 pid=%d got=hi via=direct", pids[3])},
		{"2 hi", fmt.Sprintf("gen=2 pid=%d got=hi via=relay", pids[2])},
		{"1 hi", fmt.Sprintf("gen=1 pid=%d got=hi via=relay", pids[1])}, // passed on by generation 2
		{"4 hi", "dropped by=3 gone=true"},                              // nothing newer than the newest
	} {
		if got := ask(tc.msg); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q answered %q, want %q", tc.msg, got, tc.want)
		}
	}

	// Toward newer generations: generation 1, which no longer reads the
	// socket, relays to generation 3 through generation 2.
	if got := ask("1 remember"); got != "gen=1 remembered" {
		t.Fatalf("1 remember: %q", got)
	}
	syscall.Kill(pids[1], syscall.SIGUSR2)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2048)
	n, err := c.Read(b)
	if want := fmt.Sprintf("gen=3 pid=%d got=up via=relay", pids[3]); err != nil || string(b[:n]) != want {
		t.Errorf("after generation 1 relayed up: %q, %v; want %q", b[:n], err, want)
	}

	var stats baton.RelayStats
	if err := json.Unmarshal([]byte(ask("2 stats")), &stats); err != nil {
		t.Fatal(err)
	}
	// Generation 2 passed on "1 hi", "1 remember" and "3 up", and took
	// "2 hi" and "2 stats" itself.
	if want := (baton.RelayStats{Sent: 3, PassedOn: 3, Received: 2}); stats != want {
		t.Errorf("generation 2's RelayStats = %+v; want %+v", stats, want)
	}

	// The middle generation stops: as it does, it passes its relay
	// socket to generation 1 on to generation 3, and generation 1 stays
	// reachable.
	syscall.Kill(pids[2], syscall.SIGUSR1)
	if err := proctest.Reap(pids[2], 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := untilAnswered(t, c, "1 hi", "gen=1 "); got != fmt.Sprintf("gen=1 pid=%d got=hi via=relay", pids[1]) {
		t.Errorf("1 hi after generation 2 stopped: %q; want generation 1 to answer it, relayed", got)
	}

	// Generation 1 dies without a word: its datagrams are dropped at
	// generation 3, and said so.
	syscall.Kill(pids[1], syscall.SIGKILL)
	if _, err := p.Wait(10 * time.Second); err == nil {
		t.Fatal("generation 1 exited cleanly after SIGKILL")
	}
	got := untilAnswered(t, c, "1 hi", "dropped ")
	if !strings.HasPrefix(got, "dropped by=3 gone=true") || !strings.Contains(got, "no generation lives in that direction") {
		t.Errorf("1 hi after generation 1 died: %q, want it dropped by generation 3: no generation lives in that direction", got)
	}
	if err := json.Unmarshal([]byte(ask("3 stats")), &stats); err != nil {
		t.Fatal(err)
	}
	if stats.DroppedGone < 2 || stats.Received != 1 || stats.DroppedMalformed+stats.DroppedFull+stats.DroppedUnclaimed != 0 {
		t.Errorf("generation 3's RelayStats = %+v; want at least 2 dropped as gone (4 hi, 1 hi), 1 received (3 up), nothing else dropped", stats)
	}
}

// untilAnswered sends msg until an answer starting with want comes, for
// at most 5 s, and returns it. Right after a generation exits, a datagram
// may still go the old way and be lost with its socket (the process is
// seen gone a moment before its last thread closes its descriptors, and
// the next generation learns of a passed-on relay socket as it reads the
// link): such datagrams go unanswered, or are answered as dropped.
func untilAnswered(t *testing.T, c net.Conn, msg, want string) string {
	t.Helper()
	b := make([]byte, 2048)
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(b)
		if err != nil {
			continue
		}
		last = string(b[:n])
		if strings.HasPrefix(last, want) {
			return last
		}
	}
	t.Fatalf("no answer to %q starting %q within 5s; the last was %q", msg, want, last)
	return ""
}
