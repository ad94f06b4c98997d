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
// A failed command answers {"ok":false,"code":"...","error":"...", ...};
// a reload that failed carries its Result too. The code (see Code) is what
// a client branches on; the error is for people.

// Limits of the control protocol: a request is one command, a response
// holds at most a Status with its generations and StderrLines lines of
// stderr.
const (
	maxRequestSize  = 4 << 10
	maxResponseSize = 1 << 20
)

// Commands of the control protocol.
const (
	CmdReload = "reload"
	CmdStatus = "status"
	CmdStop   = "stop"
	CmdExec   = "exec-master"
)

// request is a control request.
type request struct {
	Cmd string `json:"cmd"`
}

// Response is a control response: what Call returns.
type Response struct {
	OK     bool    `json:"ok"`
	Code   Code    `json:"code,omitempty"` // why it failed, when OK is false
	Error  string  `json:"error,omitempty"`
	Result *Result `json:"result,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Err is nil for a response that says OK, else a *CommandError that
// errors.Is matches against the sentinel its code stands for.
func (r Response) Err() error {
	if r.OK {
		return nil
	}
	return &CommandError{Code: r.Code, Message: r.Error}
}

// failure is the response to a command that failed with err.
func failure(err error) Response {
	return Response{Code: codeOf(err), Error: err.Error()}
}

// errBadRequest is the response to a request that could not be read.
func errBadRequest(err error) Response {
	return Response{Code: CodeBadRequest, Error: err.Error()}
}

// decodeRequest parses one request line (without its newline). It is
// strict: one JSON object, a known command, no other field, at most
// maxRequestSize bytes.
func decodeRequest(line []byte) (request, error) {
	var r request
	if len(line) > maxRequestSize {
		return r, fmt.Errorf("supervisor: request of %d bytes; at most %d", len(line), maxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return request{}, fmt.Errorf("supervisor: bad request: %w", err)
	}
	if dec.More() {
		return request{}, errors.New("supervisor: bad request: trailing data")
	}
	switch r.Cmd {
	case CmdReload, CmdStatus, CmdStop, CmdExec:
		return r, nil
	}
	return request{}, fmt.Errorf("supervisor: unknown command %q; want reload, status, stop or exec-master", r.Cmd)
}

// encodeLine is v as one JSON line.
func encodeLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(Response{Code: CodeFailed, Error: "supervisor: cannot encode the response: " + err.Error()})
	}
	return append(b, '\n')
}
