//go:build linux

package baton_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	refserver "github.com/batonhq/baton/examples/httpserver/server"
	"github.com/batonhq/baton/internal/proctest"
)

// The reference server, run as a helper process by the test binary: its
// successors are the same binary, re-executed as the same helper.
func init() {
	proctest.Register("reference-server", func() {
		os.Exit(refserver.Main("httpserver", os.Args[1:], os.Stderr))
	})
}

// Parameters of TestHandOverKeepAliveUpgrades: clients that pause up to
// twice IdleGrace, so that at every upgrade some are idle, some are about
// to send and some are waiting for a response.
const (
	hoClients   = 16
	hoUpgrades  = 20
	hoIdleGrace = 200 * time.Millisecond
)

// hoClient is a keep-alive client that never retries: it holds one
// connection from first to last request, and counts it as closed by the
// server if the server ever says "Connection: close" or ends it.
type hoClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

// post sends one POST / and returns the pid that answered it and whether
// the server closed the connection.
func (c *hoClient) post() (pid int, closed bool, err error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, false, fmt.Errorf("dial: %w", err)
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	const body = "hello"
	req := "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c.conn, req); err != nil {
		c.close()
		return 0, true, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodPost})
	if err != nil {
		c.close()
		return 0, true, fmt.Errorf("read response: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return 0, true, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, resp.Close, fmt.Errorf("status %s: %q", resp.Status, b)
	}
	if resp.Close {
		c.close()
	}
	// "pid=P gen=G\n"
	f := strings.Fields(string(b))
	if len(f) > 0 {
		pid, _ = strconv.Atoi(strings.TrimPrefix(f[0], "pid="))
	}
	return pid, resp.Close, nil
}

func (c *hoClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// TestHandOverKeepAliveUpgrades upgrades the reference server 20 times
// under keep-alive clients that never retry: no request may fail, and no
// client may lose its connection, because every idle connection is handed
// to the successor. It measures how long each old generation outlives its
// last response.
func TestHandOverKeepAliveUpgrades(t *testing.T) {
	if testing.Short() {
		t.Skip("20 upgrades of real processes")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close() // the server binds it again; nothing else here uses ports
	// Under -race a process sleeps a second as it exits
	// (atexit_sleep_ms), which would hide the lag measured here.
	env := []string{"GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE")}
	first := proctest.Start(t, "reference-server", env,
		"-listen", addr, "-pid-file", pidFile, "-drain", "10s", "-idle-grace", hoIdleGrace.String())
	readPID := func() int {
		b, _ := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	// Ready once the PID file names the first generation.
	for deadline := time.Now().Add(20 * time.Second); readPID() != first.Pid(); {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not become ready within 20s; output:\n%s", first.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}

	var (
		requests, closedConns atomic.Int64
		mu                    sync.Mutex
		failures              []string
		lastResponse          = map[int]time.Time{} // by pid: when a client last got its answer
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range hoClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &hoClient{addr: addr}
			defer c.close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				pid, closed, err := c.post()
				now := time.Now()
				requests.Add(1)
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("client %d: %v", i, err))
				}
				if pid != 0 && now.After(lastResponse[pid]) {
					lastResponse[pid] = now
				}
				mu.Unlock()
				if closed {
					closedConns.Add(1)
				}
				time.Sleep(rand.N(2 * hoIdleGrace))
			}
		}()
	}

	// Each upgrade: SIGHUP the serving generation, wait for the PID file
	// to name its successor, then for the old one to be gone, and let the
	// clients run across IdleGrace twice before the next.
	var lags []time.Duration
	for i := range hoUpgrades {
		old := readPID()
		if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
			t.Fatalf("upgrade %d: SIGHUP %d: %v", i+1, old, err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for readPID() == old {
			if time.Now().After(deadline) {
				t.Fatalf("upgrade %d: the PID file still names %d after 20s", i+1, old)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Gone or a zombie: exited. Polled each millisecond, which is
		// the resolution of the lag measured below.
		for proctest.Alive(old) {
			if time.Now().After(deadline) {
				t.Fatalf("upgrade %d: generation %d still runs 20s after its successor was ready", i+1, old)
			}
			time.Sleep(time.Millisecond)
		}
		exited := time.Now()
		mu.Lock()
		last := lastResponse[old]
		mu.Unlock()
		if !last.IsZero() {
			lags = append(lags, exited.Sub(last))
		}
		time.Sleep(2 * hoIdleGrace)
	}
	close(stop)
	wg.Wait()

	slices.Sort(lags)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d requests by %d keep-alive clients across %d upgrades: %d failed, %d connections closed by the server",
		requests.Load(), hoClients, hoUpgrades, len(failures), closedConns.Load())
	if len(lags) > 0 {
		t.Logf("an old generation exited after its last response (as seen by a client, polled at 1ms): median %v, max %v, all %v",
			lags[len(lags)/2], lags[len(lags)-1], lags)
	}
	if len(failures) > 0 {
		t.Errorf("%d requests failed, want 0; e.g. %q", len(failures), failures[:min(5, len(failures))])
	}
	if n := closedConns.Load(); n != 0 {
		t.Errorf("%d connections closed by the server, want 0: each client keeps its one connection", n)
	}
}
