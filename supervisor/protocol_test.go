package supervisor

import (
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{CmdReload, CmdStatus, CmdStop, CmdExec} {
		if r, err := DecodeRequest([]byte(`{"cmd":"` + cmd + `"}`)); err != nil || r.Cmd != cmd {
			t.Errorf("DecodeRequest(%s) = %+v, %v", cmd, r, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{``, "bad request"},
		{`{"cmd":"frob"}`, `unknown command "frob"`},
		{`{"cmd":"stop","x":1}`, "unknown field"},
		{`{"cmd":"stop"}{"cmd":"stop"}`, "trailing"},
		{`["stop"]`, "bad request"},
		{`{"cmd":"` + strings.Repeat("a", MaxRequestSize) + `"}`, "at most"},
	} {
		if r, err := DecodeRequest([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeRequest(%.40q) = %+v, %v; want an error with %q", tc.in, r, err, tc.want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"cmd":"reload"}`, `{"cmd":"status"}`, `{"cmd":"stop"} `, `{}`, `{"cmd":1}`, `null`, `{"cmd":"stop","cmd":"reload"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if r != (Request{}) {
				t.Fatalf("DecodeRequest(%q) = %+v with error %v; want the zero Request", b, r, err)
			}
			return
		}
		switch r.Cmd {
		case CmdReload, CmdStatus, CmdStop, CmdExec:
		default:
			t.Fatalf("DecodeRequest(%q) accepted command %q", b, r.Cmd)
		}
		if len(b) > MaxRequestSize {
			t.Fatalf("DecodeRequest accepted %d bytes", len(b))
		}
	})
}
