package server

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
	}{
		{[]string{"-listen", "127.0.0.1:0", "-pid-file", "x.pid", "-drain", "2s"}, -1},
		{[]string{"-h"}, 0},
		{[]string{"-drain", "0s"}, 2},
		{[]string{"-drain", "-1s"}, 2},
		{[]string{"-nope"}, 2},
		{[]string{"extra"}, 2},
	} {
		var out strings.Builder
		cfg, status := parseFlags("grpc", tc.args, &out)
		if status != tc.status {
			t.Errorf("parseFlags(%q) = status %d (%q); want %d", tc.args, status, out.String(), tc.status)
		}
		if status == -1 && (cfg.Listen != "127.0.0.1:0" || cfg.PIDFile != "x.pid" || cfg.Drain != 2*time.Second) {
			t.Errorf("parseFlags(%q) = %+v", tc.args, cfg)
		}
	}
}

func TestParseCount(t *testing.T) {
	for _, tc := range []struct {
		n, from int
		every   time.Duration
		ok      bool
	}{
		{10, 0, 10 * time.Millisecond, true},
		{10, 10, time.Millisecond, true},
		{MaxCount, 0, MaxInterval, true},
		{MaxCount + 1, 0, time.Millisecond, false},
		{10, 0, 0, false},
		{10, 0, MaxInterval + time.Millisecond, false},
	} {
		n, from, every, err := parseCount(CountRequest(tc.n, tc.from, tc.every))
		if ok := err == nil; ok != tc.ok || ok && (n != tc.n || from != tc.from || every != tc.every) {
			t.Errorf("parseCount(%d, %d, %v) = %d, %d, %v, %v; want ok %v", tc.n, tc.from, tc.every, n, from, every, err, tc.ok)
		}
	}
	// What CountRequest cannot make: a missing field, a fraction, a
	// string.
	for _, req := range []*structpb.Struct{
		{},
		{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(1.5), "from": structpb.NewNumberValue(0), "interval_ms": structpb.NewNumberValue(10)}},
		{Fields: map[string]*structpb.Value{"n": structpb.NewStringValue("1"), "from": structpb.NewNumberValue(0), "interval_ms": structpb.NewNumberValue(10)}},
		{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(1), "from": structpb.NewNumberValue(-1), "interval_ms": structpb.NewNumberValue(10)}},
	} {
		if _, _, _, err := parseCount(req); err == nil {
			t.Errorf("parseCount(%v): no error", req)
		}
	}
}
