package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Call sends one command (CmdReload, CmdStatus or CmdStop) to the master
// whose control socket is at path and returns its response. A failed
// reload is a Response with OK false, its Code and the reason, not an
// error (Response.Err makes one): the error is for a master that could not
// be reached or answered nonsense. Call never retries.
func Call(ctx context.Context, path, cmd string) (Response, error) {
	var resp Response
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return resp, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_, err = c.Write(encodeLine(request{Cmd: cmd}))
	var line []byte
	if err == nil {
		line, err = readLine(bufio.NewReader(c), maxResponseSize)
	}
	if err != nil {
		if ctx.Err() != nil {
			return resp, ctx.Err()
		}
		// A master refuses a peer of another uid by closing the
		// connection at once, before or after the request is written.
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			return resp, ErrRefused
		}
		return resp, err
	}
	return decodeResponse(line)
}

// decodeResponse parses one response line (without its newline): one JSON
// object of at most maxResponseSize bytes.
func decodeResponse(line []byte) (Response, error) {
	var resp Response
	if len(line) > maxResponseSize {
		return resp, fmt.Errorf("supervisor: response of %d bytes; at most %d", len(line), maxResponseSize)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("supervisor: bad response: %w", err)
	}
	return resp, nil
}

// readLine reads one line of at most max bytes, without its newline.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max+1 {
			return nil, fmt.Errorf("supervisor: line longer than %d bytes", max)
		}
		if err == nil {
			return line[:len(line)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}
