package supervisor

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzMasterState decodes BATON_MASTER_STATE as adoptState does. Whatever
// it accepts, the master's new image would hand on unchanged at its own
// exec: encoding it again and decoding that gives back the same bytes.
func FuzzMasterState(f *testing.F) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, st := range []masterState{
		{Started: t0, Next: 3, Current: 2, Control: 3, Answer: -1,
			Sockets: []sockState{{Name: "web", Desc: "tcp://127.0.0.1:8080", TCP: "127.0.0.1:8080", Fd: 4}},
			Gens: []genState{
				{N: 1, PID: 100, State: "draining", Started: t0, ReadyAt: t0, Draining: t0.Add(time.Second), Signaled: true, Stderr: 5, Notify: 6, NotifyPath: "/run/baton/x/notify-1.sock"},
				{N: 2, PID: 101, State: "serving", Started: t0, ReadyAt: t0, Stderr: 7, Notify: -1},
			}},
		{Answer: 9, Control: 3, Sockets: []sockState{{Desc: "unix:///run/app.sock", Unix: "/run/app.sock", Fd: 4}}},
		{},
	} {
		b, err := json.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`null`, `{"started":"0000-01-01T00:00:00+01:00"}`, `{"control_fd":-1,"generations":[{"pid":-1}]}`, `{"sockets":[{"name":"\xff"}]}`, `{"next":1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st masterState
		if json.Unmarshal(b, &st) != nil {
			return
		}
		enc, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("state %q decoded as %+v, which does not encode: %v", b, st, err)
		}
		var st2 masterState
		if err := json.Unmarshal(enc, &st2); err != nil {
			t.Fatalf("state %q re-encoded as %q, which does not decode: %v", b, enc, err)
		}
		enc2, err := json.Marshal(st2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("state %q re-encodes as %q, then as %q (%v)", b, enc, enc2, err)
		}
	})
}
