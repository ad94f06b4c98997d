package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// testClient is the client side of a WebSocket, frame by frame, so that a
// test controls exactly how the bytes go out (split frames, bursts).
type testClient struct {
	c net.Conn
	r io.Reader // c, after whatever the handshake read ahead
}

func dialClient(ctx context.Context, addr string) (*testClient, error) {
	c, br, _, err := ws.Dial(ctx, "ws://"+addr+"/echo")
	if err != nil {
		return nil, err
	}
	var r io.Reader = c
	if br != nil {
		r = io.MultiReader(br, c)
	}
	return &testClient{c: c, r: r}, nil
}

// frame returns a masked client frame.
func clientFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	f := ws.MaskFrame(ws.NewFrame(op, fin, append([]byte(nil), payload...)))
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

// send writes a text message; with split, in two writes some time apart,
// so that the server may be stopped with half a frame read.
func (tc *testClient) send(msg string, split bool) error {
	b := clientFrame(ws.OpText, true, []byte(msg))
	tc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if split {
		if _, err := tc.c.Write(b[:3]); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		b = b[3:]
	}
	_, err := tc.c.Write(b)
	return err
}

// read returns the next frame from the server, which must not be masked.
func (tc *testClient) read(timeout time.Duration) (ws.OpCode, []byte, error) {
	tc.c.SetReadDeadline(time.Now().Add(timeout))
	h, err := ws.ReadHeader(tc.r)
	if err != nil {
		return 0, nil, err
	}
	if h.Masked || !h.Fin || h.Length > MaxMessage {
		return 0, nil, fmt.Errorf("bad frame from the server: %+v", h)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(tc.r, p); err != nil {
		return 0, nil, err
	}
	return h.OpCode, p, nil
}

// close starts the closing handshake and returns the server's answer.
func (tc *testClient) close(timeout time.Duration) (ws.StatusCode, string, error) {
	defer tc.c.Close()
	tc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
		return 0, "", err
	}
	for {
		op, p, err := tc.read(timeout)
		if err != nil {
			return 0, "", err
		}
		if op == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(p)
			return code, reason, nil
		}
	}
}
