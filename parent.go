//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// parent is what a successor knows of the incumbent that started it.
type parent struct {
	pid  int
	conn *net.UnixConn
	// relay takes the relay socket the incumbent passes on as it stops
	// (frameRelay); set by New, read by watch.
	relay atomic.Pointer[relay]
	// generation is the one the incumbent gave this process.
	generation int

	ack  chan struct{} // closed when the incumbent has acknowledged ready
	gone chan struct{} // closed when the incumbent has exited (EOF)
	// probation is the window the ack announced (0: none, the
	// incumbent has committed and drains); set before ack is closed.
	probation time.Duration
	// passed is closed when the incumbent says the probation passed.
	passed chan struct{}

	// state is the predecessor's named blobs (its state frame); never
	// changed after adoption.
	state map[string][]byte
	// handed receives the connections the predecessor hands over the
	// link after the ack.
	handed *handedSet

	// writeMu keeps frames whole: after adoption both Ready (ready,
	// serving, abort) and watch (the answers to handed connections)
	// write.
	writeMu sync.Mutex
}

// adoptParent reads the handoff from the incumbent: hello, then every
// descriptor. On failure it tells the incumbent why (best effort), closes
// whatever it received, and returns the error; the incumbent keeps serving.
func adoptParent(fd, ppid int, timeout time.Duration, handed *handedSet) (*parent, []*entry, error) {
	conn, err := handoffConn(fd)
	if err != nil {
		return nil, nil, err
	}
	return adoptConn(conn, ppid, timeout, handed)
}

// adoptConn is adoptParent over a connection already open: the inherited
// socketpair, or the control socket of a running instance (see
// takeOverFrom). Connections the incumbent hands over later go to handed.
func adoptConn(conn *net.UnixConn, ppid int, timeout time.Duration, handed *handedSet) (*parent, []*entry, error) {
	p := &parent{pid: ppid, conn: conn, ack: make(chan struct{}), gone: make(chan struct{}), passed: make(chan struct{}), handed: handed}
	entries, err := p.receive(timeout)
	if err != nil {
		for _, e := range entries {
			closeFds([]int{e.fd})
		}
		p.abort(err.Error())
		conn.Close()
		return nil, nil, fmt.Errorf("baton: handoff from pid %d: %w", ppid, err)
	}
	conn.SetDeadline(time.Time{})
	go p.watch()
	return p, entries, nil
}

func (p *parent) receive(timeout time.Duration) (entries []*entry, err error) {
	p.conn.SetDeadline(time.Now().Add(timeout))
	typ, body, fds, err := recvFrame(p.conn)
	if err != nil {
		return nil, err
	}
	if typ == frameAbort && len(fds) == 0 {
		return nil, fmt.Errorf("refused: %s", parseAbort(body).Reason)
	}
	if typ != frameHello || len(fds) > 0 {
		closeFds(fds)
		return nil, protoErrorf("want hello first, got %q frame with %d descriptors", typ, len(fds))
	}
	hello, err := parseHello(body)
	if err != nil {
		return nil, err
	}
	if hello.PID != p.pid {
		return nil, protoErrorf("hello from pid %d, but the parent is %d", hello.PID, p.pid)
	}
	p.generation = hello.Generation
	// parseFds catches a name used twice within one frame; this catches
	// one used again in a later frame. The value is the first user's index.
	names := make(map[string]int)
	for got := 0; got < hello.Fds; {
		typ, body, fds, err := recvFrame(p.conn)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return entries, fmt.Errorf("after %d of %d descriptors: %w", got, hello.Fds, err)
		}
		if typ != frameFds {
			closeFds(fds)
			return entries, protoErrorf("want fds, got %q frame", typ)
		}
		metas, err := parseFds(body, len(fds))
		if err == nil && got+len(fds) > hello.Fds {
			err = protoErrorf("received %d descriptors, hello announced %d", got+len(fds), hello.Fds)
		}
		if err == nil {
			err = checkNames(names, metas, got)
		}
		if err != nil {
			closeFds(fds)
			return entries, err
		}
		for i, m := range metas {
			entries = append(entries, &entry{meta: m, fd: fds[i], inherited: true})
		}
		got += len(fds)
	}
	typ, body, fds, err = recvFrame(p.conn)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return entries, fmt.Errorf("before the state: %w", err)
	}
	if typ != frameState || len(fds) > 0 {
		closeFds(fds)
		return entries, protoErrorf("want the state, got %q frame with %d descriptors", typ, len(fds))
	}
	if p.state, err = parseState(body); err != nil {
		return entries, err
	}
	return entries, nil
}

// checkNames checks that no name in metas, the descriptions of descriptors
// first, first+1, …, was used by an earlier one, and records them in names
// with their indexes.
func checkNames(names map[string]int, metas []fdMeta, first int) error {
	for i, m := range metas {
		if m.Name == "" {
			continue
		}
		if j, ok := names[m.Name]; ok {
			return protoErrorf("descriptor %d: name %q already used by descriptor %d", first+i, m.Name, j)
		}
		names[m.Name] = first + i
	}
	return nil
}

// watch reads until the incumbent acknowledges ready and then, over the
// generation link, the connections it hands over, until it is gone.
// Anything else from it is a protocol error and ends the watch too: the
// incumbent then sees EOF and keeps whatever it had not heard us
// acknowledge.
func (p *parent) watch() {
	// Once the predecessor is gone nothing more can come over the link:
	// close it, or every generation but the first keeps one descriptor
	// more than it needs. After gone is closed (deferred calls run last
	// first), so that a write failing on the closed socket finds the
	// predecessor gone, which is the truth.
	defer p.conn.Close()
	defer close(p.gone)
	for {
		typ, body, fds, truncated, err := recvFrameTrunc(p.conn)
		if err != nil {
			return
		}
		acked, onProbation := false, false
		select {
		case <-p.ack:
			acked = true
			select {
			case <-p.passed:
			default:
				onProbation = p.probation > 0
			}
		default:
		}
		switch {
		case !acked && typ == frameAck && len(fds) == 0:
			d, err := parseAck(body)
			if err != nil {
				return
			}
			p.probation = d
			close(p.ack)
		case onProbation && typ == framePassed && len(fds) == 0 && parsePassed(body) == nil:
			close(p.passed)
		case acked && !onProbation && typ == frameConn:
			if !p.takeConn(body, fds, truncated) {
				return
			}
		case acked && !onProbation && typ == frameRelay && len(body) == 0 && len(fds) == 1 && !truncated:
			conn, err := relayConn(fds[0])
			if err != nil {
				return
			}
			if r := p.relay.Load(); r != nil {
				r.attach(toOlder, conn)
			} else {
				conn.Close()
			}
		default:
			// A second ack, a passed without a probation or twice, a
			// conn before the ack or during the probation (only a
			// draining incumbent hands connections over), anything else.
			closeFds(fds)
			return
		}
	}
}

// takeConn answers one conn frame: it queues the connection on the
// Handed listener for its name and acknowledges it, or closes this
// process's descriptor and refuses it. It reports false if the frame
// breaks the protocol or the answer cannot be sent (the predecessor is
// gone; a connection queued is ours, since it can no longer keep it).
func (p *parent) takeConn(body []byte, fds []int, truncated bool) bool {
	m, err := parseConn(body)
	if err != nil {
		closeFds(fds)
		return false
	}
	var refusal error
	switch {
	case truncated:
		// The kernel dropped the descriptor: it could not install it.
		closeFds(fds)
		refusal = errTruncated(len(fds))
	case len(fds) != 1:
		closeFds(fds)
		return false
	default:
		refusal = p.handed.deliver(m, fds[0])
	}
	var frame []byte
	switch {
	case errors.Is(refusal, errHandedBusy):
		// Backpressure: the predecessor keeps it and may offer it again.
		p.handed.log.Debug("refused a connection the predecessor handed over; it keeps it", "name", m.Name, "reason", refusal)
	case refusal != nil:
		p.handed.log.Warn("refused a connection the predecessor handed over; it keeps it", "name", m.Name, "reason", refusal)
	}
	reason := ""
	if refusal != nil {
		reason = refusal.Error()
	}
	if reason == "" {
		body, err = encodeConnAck(m.ID)
		if err == nil {
			frame, err = encodeFrame(frameConnAck, body)
		}
	} else {
		body, err = encodeConnRefuse(connRefuseMsg{ID: m.ID, Reason: reason})
		if err == nil {
			frame, err = encodeFrame(frameConnRefuse, body)
		}
	}
	if err != nil {
		return false
	}
	// No deadline: at most maxInFlight answers of a few bytes are ever
	// outstanding, far below the socket's buffer, and the incumbent
	// reads them at once. A deadline could cut an ack in half, and then
	// both processes would think the connection theirs.
	return p.send(frame, time.Time{}) == nil
}

// send writes one frame to the predecessor, whole, by deadline (zero:
// none).
func (p *parent) send(frame []byte, deadline time.Time) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.conn.SetWriteDeadline(deadline)
	return sendFrame(p.conn, frame, nil)
}

func (p *parent) abort(reason string) {
	if frame, err := encodeFrame(frameAbort, encodeAbort(abortMsg{Reason: reason})); err == nil {
		p.send(frame, time.Now().Add(time.Second))
	}
}

// onProbation reports whether the incumbent acknowledged ready with a
// probation that has neither passed nor ended with the incumbent. Call
// it once ready has returned.
func (p *parent) onProbation() bool {
	select {
	case <-p.ack:
	default:
		return false // gone before the ack: nobody else serves
	}
	if p.probation == 0 {
		return false
	}
	select {
	case <-p.passed:
		return false
	case <-p.gone:
		return false
	default:
		return true
	}
}

// window is the probation the incumbent announced; 0 before the ack.
func (p *parent) window() time.Duration {
	select {
	case <-p.ack:
		return p.probation
	default:
		return 0
	}
}

// errParentSilent reports an incumbent that neither acknowledged ready nor
// exited in time: it may be stopped (SIGSTOP) or wedged.
var errParentSilent = errors.New("predecessor neither acknowledged ready nor exited")

// ready tells the incumbent this generation is ready, passing it relay,
// the other end of this generation's relay socket to it (relay.go), and
// waits until it has acknowledged: committed to draining, or put this
// generation on probation (see onProbation). An incumbent that is gone
// counts as committed: there is nobody else to serve.
func (p *parent) ready(timeout time.Duration, relay *os.File) error {
	body, err := encodeReady(readyMsg{PID: os.Getpid()})
	if err != nil {
		return err
	}
	frame, err := encodeFrame(frameReady, body)
	if err != nil {
		return err
	}
	p.writeMu.Lock()
	p.conn.SetWriteDeadline(time.Now().Add(timeout))
	err = sendFrame(p.conn, frame, []int{int(relay.Fd())})
	p.writeMu.Unlock()
	if err != nil {
		select {
		case <-p.gone:
			return nil
		default:
			return fmt.Errorf("baton: telling the predecessor we are ready: %w", err)
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.ack:
		return nil
	case <-p.gone:
		return nil
	case <-t.C:
		return errParentSilent
	}
}

// serving tells the incumbent that this generation's PID file and control
// socket are in place. Nobody may be left to hear it, and nothing depends
// on its arrival but a wait that has a deadline of its own: errors are
// ignored.
func (p *parent) serving() {
	frame, err := encodeFrame(frameServing, nil)
	if err != nil {
		return
	}
	p.send(frame, time.Now().Add(time.Second))
}
