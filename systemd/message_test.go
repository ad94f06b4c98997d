package systemd

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBuildMessage(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxMessageSize-len("STATUS="))
	for _, tc := range []struct {
		name    string
		fields  []string
		want    string // "" means an error is wanted
		wantErr string // a part of the error text
	}{
		{name: "ready", fields: []string{"READY=1"}, want: "READY=1"},
		{name: "two fields", fields: []string{"RELOADING=1", "MONOTONIC_USEC=123"}, want: "RELOADING=1\nMONOTONIC_USEC=123"},
		{name: "empty value", fields: []string{"STATUS="}, want: "STATUS="},
		{name: "equals in value", fields: []string{"STATUS=a=b"}, want: "STATUS=a=b"},
		{name: "utf-8 value", fields: []string{"STATUS=prêt ✓"}, want: "STATUS=prêt ✓"},
		{name: "custom key", fields: []string{"X_baton_gen=7"}, want: "X_baton_gen=7"},
		{name: "fdname", fields: []string{"FDSTORE=1", "FDNAME=http-8080 (main)"}, want: "FDSTORE=1\nFDNAME=http-8080 (main)"},
		{name: "longest", fields: []string{"STATUS=" + long}, want: "STATUS=" + long},
		{name: "barrier alone", fields: []string{"BARRIER=1"}, want: "BARRIER=1"},

		{name: "no fields", fields: nil, wantErr: "empty notification"},
		{name: "too long", fields: []string{"STATUS=" + long + "x"}, wantErr: "more than the 4096"},
		{name: "too long with newlines", fields: []string{"STATUS=" + long[:len(long)-3], "A=1"}, wantErr: "more than the 4096"},
		{name: "no equals", fields: []string{"READY"}, wantErr: "not KEY=VALUE"},
		{name: "empty field", fields: []string{""}, wantErr: "not KEY=VALUE"},
		{name: "empty key", fields: []string{"=1"}, wantErr: "bad key"},
		{name: "key with space", fields: []string{"READY =1"}, wantErr: "bad key"},
		{name: "key with digit first", fields: []string{"1A=1"}, wantErr: "bad key"},
		{name: "key with newline", fields: []string{"A\nREADY=1"}, wantErr: "bad key"},
		{name: "newline in value", fields: []string{"STATUS=a\nREADY=1"}, wantErr: `contains '\n'`},
		{name: "NUL in value", fields: []string{"STATUS=a\x00b"}, wantErr: `contains '\x00'`},
		{name: "bad utf-8", fields: []string{"STATUS=\xff"}, wantErr: "not UTF-8"},
		{name: "empty fdname", fields: []string{"FDSTORE=1", "FDNAME="}, wantErr: "empty descriptor name"},
		{name: "fdname with colon", fields: []string{"FDNAME=a:b"}, wantErr: "bad descriptor name"},
		{name: "fdname with control", fields: []string{"FDNAME=a\tb"}, wantErr: "bad descriptor name"},
		{name: "fdname non-ascii", fields: []string{"FDNAME=é"}, wantErr: "bad descriptor name"},
		{name: "fdname too long", fields: []string{"FDNAME=" + strings.Repeat("n", MaxFDNameLen+1)}, wantErr: "bad descriptor name"},
		{name: "barrier with more", fields: []string{"BARRIER=1", "READY=1"}, wantErr: "only field"},
		{name: "barrier after more", fields: []string{"READY=1", "BARRIER=1"}, wantErr: "only field"},
	} {
		got, err := buildMessage(tc.fields)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: buildMessage(%q) = %q, %v; want an error containing %q", tc.name, tc.fields, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: buildMessage(%q) = %q, %v; want %q", tc.name, tc.fields, got, err, tc.want)
		}
	}
}

func TestValidFDName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"":                          true, // systemd allows it; checkFDName does not
		"http":                      true,
		"stored fd #1 (tcp/8080)!~": true,
		strings.Repeat("n", 255):    true,
		strings.Repeat("n", 256):    false,
		"a:b":                       false,
		"tab\there":                 false,
		"del\x7f":                   false,
		"nul\x00":                   false,
		"naïve":                     false,
		"new\nline":                 false,
	} {
		if got := validFDName(name); got != want {
			t.Errorf("validFDName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzBuildMessage checks that an accepted message is exactly its fields
// joined by newlines, so that systemd reads back the fields it was given,
// and that nothing systemd would drop or misread is accepted.
func FuzzBuildMessage(f *testing.F) {
	f.Add(uint8(1), "READY=1", "", "")
	f.Add(uint8(2), "RELOADING=1", "MONOTONIC_USEC=1", "")
	f.Add(uint8(3), "FDSTORE=1", "FDNAME=http", "FDPOLL=0")
	f.Add(uint8(2), "STATUS=a\nREADY=1", "X=\x00", "")
	f.Add(uint8(2), "BARRIER=1", "READY=1", "")
	f.Add(uint8(0), "", "", "")
	f.Fuzz(func(t *testing.T, n uint8, a, b, c string) {
		fields := []string{a, b, c}[:n%4]
		msg, err := buildMessage(fields)
		if err != nil {
			if msg != nil {
				t.Fatalf("buildMessage(%q) returned %q with error %v", fields, msg, err)
			}
			return
		}
		if len(msg) == 0 || len(msg) > MaxMessageSize {
			t.Fatalf("buildMessage(%q) = %d bytes, want 1 to %d", fields, len(msg), MaxMessageSize)
		}
		if strings.IndexByte(string(msg), 0) >= 0 || !utf8.Valid(msg) {
			t.Fatalf("buildMessage(%q) = %q: NUL byte or invalid UTF-8", fields, msg)
		}
		got := strings.Split(string(msg), "\n")
		if len(got) != len(fields) {
			t.Fatalf("buildMessage(%q) = %q: reads back as %d fields", fields, msg, len(got))
		}
		for i, field := range got {
			if field != fields[i] {
				t.Fatalf("buildMessage(%q) = %q: field %d reads back as %q", fields, msg, i, field)
			}
			key, value, ok := strings.Cut(field, "=")
			if !ok || !validKey(key) {
				t.Fatalf("buildMessage(%q) accepted field %q", fields, field)
			}
			if key == "FDNAME" && (value == "" || !validFDName(value)) {
				t.Fatalf("buildMessage(%q) accepted descriptor name %q", fields, value)
			}
			if field == "BARRIER=1" && len(fields) != 1 {
				t.Fatalf("buildMessage(%q) accepted BARRIER=1 with other fields", fields)
			}
		}
	})
}
