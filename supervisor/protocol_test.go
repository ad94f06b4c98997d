package supervisor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{CmdReload, CmdStatus, CmdStop, CmdExec} {
		if r, err := decodeRequest([]byte(`{"cmd":"` + cmd + `"}`)); err != nil || r.Cmd != cmd {
			t.Errorf("decodeRequest(%s) = %+v, %v", cmd, r, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{``, "bad request"},
		{`{"cmd":"frob"}`, `unknown command "frob"`},
		{`{"cmd":"stop","x":1}`, "unknown field"},
		{`{"cmd":"stop"}{"cmd":"stop"}`, "trailing"},
		{`["stop"]`, "bad request"},
		{`{"cmd":"` + strings.Repeat("a", maxRequestSize) + `"}`, "at most"},
	} {
		if r, err := decodeRequest([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decodeRequest(%.40q) = %+v, %v; want an error with %q", tc.in, r, err, tc.want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"cmd":"reload"}`, `{"cmd":"status"}`, `{"cmd":"stop"} `, `{}`, `{"cmd":1}`, `null`, `{"cmd":"stop","cmd":"reload"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			if r != (request{}) {
				t.Fatalf("decodeRequest(%q) = %+v with error %v; want the zero Request", b, r, err)
			}
			return
		}
		switch r.Cmd {
		case CmdReload, CmdStatus, CmdStop, CmdExec:
		default:
			t.Fatalf("decodeRequest(%q) accepted command %q", b, r.Cmd)
		}
		if len(b) > maxRequestSize {
			t.Fatalf("DecodeRequest accepted %d bytes", len(b))
		}
	})
}

// FuzzDecodeResponse is the client's side of the control protocol: what
// the decoder accepts, the master's encoder writes back, and that line
// decodes and encodes to itself.
func FuzzDecodeResponse(f *testing.F) {
	started := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, r := range []Response{
		{OK: true},
		{Error: "supervisor: a reload is already in progress"},
		{Code: CodeReloadInProgress, Error: "supervisor: a reload is already in progress"},
		{OK: true, Result: &Result{OK: true, Gen: 2, OldPID: 10, NewPID: 11, Duration: time.Second}},
		{Result: &Result{Gen: 3, Error: "exited", Stderr: []string{"panic: x", ""}}, Error: "exited"},
		{OK: true, Status: &Status{PID: 1, Started: started, State: "serving", Listeners: []string{"tcp://127.0.0.1:8080"},
			Generations: []GenerationStatus{{Gen: 1, PID: 7, State: "draining", Started: started, DrainingSince: started.Add(time.Second)}}}},
	} {
		line := encodeLine(r)
		f.Add(line[:len(line)-1])
	}
	for _, s := range []string{``, `null`, `{"ok":true}{"ok":true}`, `{"status":{"started":"0000-01-01T00:00:00+01:00"}}`, `{"result":{"stderr":["\xff"]}}`, `{"ok":"yes"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := decodeResponse(line)
		if err != nil {
			return
		}
		if len(line) > maxResponseSize {
			t.Fatalf("decodeResponse accepted %d bytes", len(line))
		}
		enc := encodeLine(r)
		if bytes.IndexByte(enc, '\n') != len(enc)-1 {
			t.Fatalf("encodeLine(decodeResponse(%q)) = %q: not one line", line, enc)
		}
		r2, err := decodeResponse(enc[:len(enc)-1])
		if err != nil {
			t.Fatalf("decodeResponse(%q), re-encoded as %q, does not decode: %v", line, enc, err)
		}
		if enc2 := encodeLine(r2); !bytes.Equal(enc2, enc) {
			t.Fatalf("decodeResponse(%q) re-encodes as %q, then as %q", line, enc, enc2)
		}
	})
}

// FuzzReadLine reads what a peer wrote on the control socket: it returns
// the bytes before the first newline if there are at most max of them, and
// fails otherwise, whatever the reader's buffer size.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("{\"cmd\":\"status\"}\n"), uint16(maxRequestSize))
	f.Add([]byte("0123456789abcdefghij\n"), uint16(20))
	f.Add([]byte("0123456789abcdefghijk\n"), uint16(20))
	f.Add([]byte("no newline"), uint16(100))
	f.Add([]byte("\n\n"), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, max uint16) {
		line, err := readLine(bufio.NewReaderSize(bytes.NewReader(b), 16), int(max))
		i := bytes.IndexByte(b, '\n')
		switch {
		case i < 0 || i > int(max):
			if err == nil {
				t.Fatalf("readLine(%q, %d) = %q; want an error (newline at %d)", b, max, line, i)
			}
		case err != nil || !bytes.Equal(line, b[:i]):
			t.Fatalf("readLine(%q, %d) = %q, %v; want %q", b, max, line, err, b[:i])
		}
	})
}

// A failure travels as a code, and comes back as an error that matches
// the sentinel it stood for; states travel as their text.
func TestResponseCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code Code
	}{
		{ErrReloadInProgress, CodeReloadInProgress},
		{ErrStopped, CodeStopped},
		{ErrNotServing, CodeNotServing},
		{&GenerationError{Gen: 2, Reason: "exited", Err: ErrStopped}, CodeStopped},
		{&GenerationError{Gen: 2, Reason: "exited"}, CodeGenerationFailed},
		{errors.New("supervisor: exec /x: permission denied"), CodeFailed},
	} {
		line := encodeLine(failure(tc.err))
		resp, err := decodeResponse(line[:len(line)-1])
		if err != nil || resp.OK || resp.Code != tc.code || resp.Error != tc.err.Error() {
			t.Errorf("failure(%v) decodes as %+v, %v; want code %q", tc.err, resp, err, tc.code)
			continue
		}
		for _, s := range []error{ErrReloadInProgress, ErrStopped, ErrNotServing} {
			if got, want := errors.Is(resp.Err(), s), sentinels[tc.code] == s; got != want {
				t.Errorf("errors.Is(Err() of code %q, %v) = %v; want %v", tc.code, s, got, want)
			}
		}
	}
	if err := (Response{OK: true}).Err(); err != nil {
		t.Errorf("Err() of an OK response = %v", err)
	}
	if errors.Is((Response{Error: "supervisor: a reload is already in progress"}).Err(), ErrReloadInProgress) {
		t.Error("a response without a code matches a sentinel by its text")
	}
	b, _ := json.Marshal(Status{State: StateServing, Generations: []GenerationStatus{{State: StateDraining}}})
	if !bytes.Contains(b, []byte(`"state":"serving"`)) || !bytes.Contains(b, []byte(`"state":"draining"`)) {
		t.Errorf("a Status encodes as %s; want the states as text", b)
	}
}
