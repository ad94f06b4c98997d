package svtest

import (
	"encoding/hex"
	"strings"
	"testing"
)

// unhex decodes "40 00 6b …", the way od -An -tx1 prints a file.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad capture %q: %v", s, err)
	}
	return b
}

// Each capture is a supervise/status file written by the real tool on
// Debian bookworm (daemontools 0.76, runit 2.1.2, s6 2.11.3) for a
// "sleep 1000" service, with what svstat, "sv status" or s6-svstat said
// about it at the same moment.
func TestParseStatusCaptures(t *testing.T) {
	tests := []struct {
		kind    Kind
		tool    string // the tool's own view
		capture string
		want    Status
	}{
		{Daemontools, "up (pid 12693) 1 seconds",
			"40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 00 75",
			Status{PID: 12693, Up: true, WantUp: true}},
		{Daemontools, "up (pid 12693) 1 seconds, paused",
			"40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 01 75",
			Status{PID: 12693, Up: true, WantUp: true, Paused: true}},
		{Daemontools, "up (pid 12923) 1 seconds, want down",
			"40 00 00 00 6b 01 06 25 17 eb aa 34 7b 32 00 00 00 64",
			Status{PID: 12923, Up: true}},
		{Daemontools, "down 0 seconds, normally up",
			"40 00 00 00 6b 01 06 22 22 a1 9f 9c 00 00 00 00 00 64",
			Status{}},

		{Runit, "run: (pid 12695) 1s",
			"40 00 00 00 6b 01 06 21 07 9c 38 24 97 31 00 00 00 75 00 01",
			Status{PID: 12695, Up: true, WantUp: true}},
		{Runit, "run: (pid 12695) 1s, paused",
			"40 00 00 00 6b 01 06 21 07 9c 38 24 97 31 00 00 01 75 00 01",
			Status{PID: 12695, Up: true, WantUp: true, Paused: true}},
		{Runit, "run: (pid 12925) 1s, want down, got TERM",
			"40 00 00 00 6b 01 06 25 17 d8 87 c4 7d 32 00 00 00 64 01 01",
			Status{PID: 12925, Up: true}},
		{Runit, "down: 0s, normally up",
			"40 00 00 00 6b 01 06 22 22 b5 fa 8c 00 00 00 00 00 64 00 00",
			Status{}},

		{S6, "up (pid 12694) 1 seconds",
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 00 00 00 31 96 00 00 04",
			Status{PID: 12694, Up: true, WantUp: true}},
		// A service directory with notification-fd, running the demo
		// server, which says ready on it.
		{S6, "up (pid 27586) 1 seconds, ready 1 seconds",
			"40 00 00 00 6b 01 07 b5 1a 44 82 cc 40 00 00 00 6b 01 07 b5 1a 80 e6 3e" +
				" 00 00 00 00 00 00 6b c2 00 00 0c",
			Status{PID: 27586, Up: true, WantUp: true, Ready: true}},
		{S6, "up (pid 12694) 1 seconds, paused",
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 00 00 00 31 96 00 00 05",
			Status{PID: 12694, Up: true, WantUp: true, Paused: true}},
		{S6, "up (pid 12924) 1 seconds, want down",
			"40 00 00 00 6b 01 06 40 17 ee 36 0f 40 00 00 00 6b 01 06 40 17 d4 54 91" +
				" 00 00 00 00 00 00 32 7c 00 00 00",
			Status{PID: 12924, Up: true}},
		{S6, "down (signal SIGKILL) 0 seconds, normally up (./finish running as pid 12968)",
			"40 00 00 00 6b 01 06 41 36 77 1f ed 40 00 00 00 6b 01 06 40 17 d4 54 91" +
				" 00 00 00 00 00 00 32 a8 00 09 02",
			Status{}},
		{S6, "down (signal SIGTERM) 0 seconds, normally up, ready 0 seconds",
			"40 00 00 00 6b 01 06 3d 22 b6 8d fb 40 00 00 00 6b 01 06 3d 22 bc 7e d3" +
				" 00 00 00 00 00 00 00 00 00 0f 08",
			Status{}},
		// s6 2.12 and newer: the 2.11 "up" capture with a pgid inserted
		// at [32:40], laid out as s6_svstatus_pack.c writes it.
		{S6, "up (pid 12694), s6 2.12 layout",
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 00 00 00 31 96 00 00 00 00 00 00 31 96 00 00 04",
			Status{PID: 12694, Up: true, WantUp: true}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"/"+tt.tool, func(t *testing.T) {
			got, err := ParseStatus(tt.kind, unhex(t, tt.capture))
			if err != nil {
				t.Fatalf("ParseStatus(%s, %s): %v", tt.kind, tt.capture, err)
			}
			if got != tt.want {
				t.Errorf("ParseStatus(%s, %s) = %+v; want %+v", tt.kind, tt.capture, got, tt.want)
			}
		})
	}
}

func TestParseStatusRejects(t *testing.T) {
	dtUp := "40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 00 75"
	tests := []struct {
		name    string
		kind    Kind
		capture string
		errHas  string
	}{
		{"empty", Daemontools, "", "0 bytes"},
		{"runit status read as daemontools", Daemontools, dtUp + " 00 01", "20 bytes; want 18"},
		{"daemontools status read as runit", Runit, dtUp, "18 bytes; want 20"},
		{"daemontools status read as s6", S6, dtUp, "18 bytes; want 35"},
		{"bad want byte", Daemontools, "40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 00 78", "neither 'u' nor 'd'"},
		{"s6 pid out of range", S6,
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 01 00 00 31 96 00 00 04", "out of range"},
		{"runit state out of range", Runit, dtUp + " 00 03", "state byte 3"},
		{"runit run without a pid", Runit, "40 00 00 00 6b 01 06 21 07 9c 38 24 00 00 00 00 00 75 00 01", "without a pid"},
		{"unknown kind", "systemd", dtUp, "unknown supervisor kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus(tt.kind, unhex(t, tt.capture))
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("ParseStatus(%s, %q) = %+v, %v; want an error containing %q", tt.kind, tt.capture, got, err, tt.errHas)
			}
		})
	}
}
