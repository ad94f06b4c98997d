package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The control protocol: one request line, one response line, then the
// connection is closed. Each line is a JSON object and a newline.
//
//	→ {"cmd":"reload"}        ← {"ok":true,"result":{...}}
//	→ {"cmd":"status"}        ← {"ok":true,"status":{...}}
//	→ {"cmd":"stop"}          ← {"ok":true} once every generation is gone
//	→ {"cmd":"exec-master"}   ← {"ok":true,"status":{...}} from the master's
//	                            new binary, same pid (see Master.ExecMaster)
//
// A failed command answers {"ok":false,"error":"...", ...}; a reload that
// failed carries its Result too.

// Limits of the control protocol.
const (
	MaxRequestSize  = 4 << 10
	MaxResponseSize = 1 << 20
)

// Commands of the control protocol.
const (
	CmdReload = "reload"
	CmdStatus = "status"
	CmdStop   = "stop"
	CmdExec   = "exec-master"
)

// Request is a control request.
type Request struct {
	Cmd string `json:"cmd"`
}

// Response is a control response.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Result *Result `json:"result,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// DecodeRequest parses one request line (without its newline). It is
// strict: one JSON object, a known command, no other field, at most
// MaxRequestSize bytes.
func DecodeRequest(line []byte) (Request, error) {
	var r Request
	if len(line) > MaxRequestSize {
		return r, fmt.Errorf("supervisor: request of %d bytes; at most %d", len(line), MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("supervisor: bad request: %w", err)
	}
	if dec.More() {
		return Request{}, errors.New("supervisor: bad request: trailing data")
	}
	switch r.Cmd {
	case CmdReload, CmdStatus, CmdStop, CmdExec:
		return r, nil
	}
	return Request{}, fmt.Errorf("supervisor: unknown command %q; want reload, status, stop or exec-master", r.Cmd)
}

// encodeLine is v as one JSON line.
func encodeLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(Response{Error: "supervisor: cannot encode the response: " + err.Error()})
	}
	return append(b, '\n')
}
