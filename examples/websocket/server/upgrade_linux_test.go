package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// The server runs as this test binary re-executed: every generation,
// successors included, is a real process with real sockets.
func init() {
	proctest.Register("websocket", func() { os.Exit(Main("websocket", os.Args[1:], os.Stderr)) })
}

func TestMain(m *testing.M) { proctest.Main(m) }

// upgradeStep bounds each step of an upgrade as the test sees it: a
// successor started, ready, every connection handed over, the old
// generation gone. Generous for a race-instrumented binary on two busy
// cores; a healthy step takes well under a second.
const upgradeStep = 30 * time.Second

// fdSlack is what a generation holds beside its WebSockets: stdio, the
// listener, the handoff link, the runtime's epoll and pipe, the pid file
// being written; generous, so that only a leak per connection trips it.
const fdSlack = 32

// server is one run of the example: its generations in order.
type server struct {
	t       *testing.T
	p       *proctest.Proc
	pidFile string
	addr    string
	*proctest.Generations
}

func startServer(t *testing.T) *server {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "ws.pid")
	p := proctest.StartServer(t, "websocket", nil, "-listen", "127.0.0.1:0", "-pid-file", pidFile, "-drain", "20s")
	s := &server{t: t, p: p, pidFile: pidFile}
	s.addr = proctest.Field(p.WaitLog(t, "msg=serving", upgradeStep), "addr")
	s.Generations = proctest.FollowGenerations(t, p, pidFile, upgradeStep)
	return s
}

// upgrade sends SIGHUP to the serving generation, waits for its successor
// to be named in the pid file and for the old one to exit: by then every
// connection was handed over or closed.
func (s *server) upgrade() {
	s.t.Helper()
	old := s.Current()
	s.Upgrade()
	s.WaitGone(old)
}

// echoClient sends numbered messages one after another (or two at a time)
// and checks every answer: in order, exactly once, from a generation no
// older than the last one that answered.
type echoClient struct {
	id    int
	tc    *testClient
	split bool // frames written in two parts, so a stop may find half a frame
	burst int  // messages sent before reading their answers
	pace  time.Duration

	sent    int
	lastPID atomic.Int64
	pids    []int // generations that answered, in order, each once
	err     error
}

func (c *echoClient) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(c.pace):
		}
		first := c.sent + 1
		for i := 0; i < c.burst; i++ {
			c.sent++
			if err := c.tc.send(fmt.Sprintf("c%d-%d", c.id, c.sent), c.split); err != nil {
				c.err = fmt.Errorf("sending message %d: %w", c.sent, err)
				return
			}
		}
		for seq := first; seq <= c.sent; seq++ {
			if err := c.check(seq); err != nil {
				c.err = err
				return
			}
		}
	}
}

func (c *echoClient) check(seq int) error {
	op, p, err := c.tc.read(upgradeStep)
	if err != nil {
		return fmt.Errorf("reading the answer to message %d: %w", seq, err)
	}
	if op != ws.OpText {
		return fmt.Errorf("answer to message %d: opcode %v %q; want text", seq, op, p)
	}
	msg, pidText, ok := strings.Cut(string(p), " pid=")
	pid, _ := strconv.Atoi(pidText)
	if want := fmt.Sprintf("c%d-%d", c.id, seq); !ok || msg != want || pid <= 0 {
		return fmt.Errorf("answer %q; want %q pid=PID (lost, repeated or reordered)", p, want)
	}
	if n := len(c.pids); n == 0 || c.pids[n-1] != pid {
		for _, old := range c.pids {
			if old == pid {
				return fmt.Errorf("answer to message %d came from generation %d again, after %v", seq, pid, c.pids)
			}
		}
		c.pids = append(c.pids, pid)
		c.lastPID.Store(int64(pid))
	}
	return nil
}

// N clients exchange messages with the server through U upgrades: no
// client is disconnected, no message is lost, repeated or reordered, every
// connection is answered by every generation in turn, and its message
// count (the application's state) survives every handover.
func TestUpgradesKeepWebSockets(t *testing.T) {
	conns := proctest.EnvInt(t, "BATON_WS_CONNS", 200)
	upgrades := proctest.EnvInt(t, "BATON_WS_UPGRADES", 10)
	srv := startServer(t)

	// Each client waits pace between rounds: ~4,000 messages a second in
	// all, whatever the count, so two cores keep up under the race
	// detector and the upgrades, not the load, are what is measured.
	pace := time.Duration(conns) * 250 * time.Microsecond
	clients := make([]*echoClient, conns)
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
	defer cancel()
	for i := range clients {
		tc, err := dialClient(ctx, srv.addr)
		if err != nil {
			t.Fatalf("client %d: dial: %v", i, err)
		}
		// A quarter split their frames, a quarter send three messages
		// before reading: a stop then finds half a frame, or messages
		// queued behind the boundary, in the socket.
		burst := 1
		if i%4 == 3 {
			burst = 3
		}
		clients[i] = &echoClient{id: i, tc: tc, split: i%4 == 0, burst: burst, pace: pace}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(stop) }()
	}
	stopClients := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClients()

	// Every client must have been answered by the serving generation
	// before the next upgrade: so each connection goes through every
	// handover, none is merely idle in one.
	waitAnswered := func(pid int) {
		deadline := time.Now().Add(upgradeStep)
		for _, c := range clients {
			for c.lastPID.Load() != int64(pid) {
				if time.Now().After(deadline) {
					stopClients()
					t.Fatalf("client %d: no answer from generation %d within %v (err %v)", c.id, pid, upgradeStep, c.err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	start := time.Now()
	waitAnswered(srv.Current())
	for u := 1; u <= upgrades; u++ {
		t0 := time.Now()
		srv.upgrade()
		waitAnswered(srv.Current())
		// One descriptor per connection, and a few of its own: the
		// handovers leak nothing in the successor (the old generation,
		// whose copies were closed, has exited).
		if n := proctest.FdCount(srv.Current()); n < conns || n > conns+fdSlack {
			t.Errorf("generation %d has %d descriptors open for %d connections; want %d to %d", srv.Current(), n, conns, conns, conns+fdSlack)
		}
		// A few rounds more in each generation, so that every upgrade
		// finds messages on their way in every state a client makes.
		time.Sleep(3 * pace)
		if testing.Verbose() {
			t.Logf("upgrade %d: generation %d serves every connection after %v", u, srv.Current(), time.Since(t0).Round(time.Millisecond))
		}
	}
	stopClients()

	var total, failed int
	for _, c := range clients {
		total += c.sent
		if c.err != nil {
			failed++
			if failed <= 10 {
				t.Errorf("client %d: %v", c.id, c.err)
			}
			continue
		}
		if fmt.Sprint(c.pids) != fmt.Sprint(srv.Pids()) {
			t.Errorf("client %d was answered by generations %v; want %v, each in turn", c.id, c.pids, srv.Pids())
		}
		code, reason, err := c.tc.close(upgradeStep)
		if want := fmt.Sprintf("answered=%d", c.sent); err != nil || code != ws.StatusNormalClosure || reason != want {
			t.Errorf("client %d: closing handshake: %d %q, %v; want 1000 %q", c.id, code, reason, err, want)
		}
	}
	srv.Stop()

	// The generations' own account: every connection handed over at
	// every upgrade, none closed.
	var handed, closed, refused int
	for _, l := range strings.Split(srv.p.Output(), "\n") {
		if strings.Contains(l, "msg=drained ") {
			h, _ := strconv.Atoi(proctest.Field(l, "handed"))
			c, _ := strconv.Atoi(proctest.Field(l, "closed"))
			r, _ := strconv.Atoi(proctest.Field(l, "refused"))
			handed, closed, refused = handed+h, closed+c, refused+r
		}
	}
	if handed != conns*upgrades || closed != 0 {
		t.Errorf("the generations handed %d connections over and closed %d; want %d and 0", handed, closed, conns*upgrades)
	}
	t.Logf("handovers: %d, of which %d were first refused (successor's queue full) and offered again", handed, refused)
	t.Logf("%d connections, %d upgrades, %d messages in %v: %d disconnected",
		conns, upgrades, total, time.Since(start).Round(time.Millisecond), failed)
}

// SIGTERM stops the server: with no successor, each connection stays its
// own and is closed properly, with a close frame saying why.
func TestStopClosesWebSockets(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
	defer cancel()
	// A client that offers permessage-deflate gets no extension: the
	// handover carries no compression context.
	conn, _, hs, err := ws.Dialer{Extensions: []httphead.Option{wsflate.DefaultParameters.Option()}}.Dial(ctx, "ws://"+srv.addr+"/echo")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if len(hs.Extensions) != 0 {
		t.Errorf("the server negotiated extensions %v; want none", hs.Extensions)
	}

	var clients []*testClient
	for i := 0; i < 3; i++ {
		tc, err := dialClient(ctx, srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.send("hello", false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tc.read(upgradeStep); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, tc)
	}
	if err := syscall.Kill(srv.Current(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, tc := range clients {
		op, p, err := tc.read(upgradeStep)
		code, reason := ws.ParseCloseFrameData(p)
		if err != nil || op != ws.OpClose || code != ws.StatusGoingAway {
			t.Errorf("client %d after SIGTERM: %v %d %q, %v; want a close frame with 1001", i, op, code, reason, err)
		}
		// Our half of the closing handshake; then the server closes.
		tc.c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "")))
		if _, _, err := tc.read(upgradeStep); err == nil {
			t.Errorf("client %d: the server sent more after its close frame", i)
		}
		tc.c.Close()
	}
	srv.WaitGone(srv.Current())
	if _, err := os.Stat(srv.pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after the final stop: %v; want it removed", err)
	}
}
