package server

import (
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
	}{
		{[]string{"-listen", "127.0.0.1:0", "-pid-file", "x.pid", "-drain", "2s"}, -1},
		{[]string{"-listen", "127.0.0.1:0", "-pid-file", "x.pid", "-drain", "2s", "-tls-cert", "c.pem", "-tls-key", "k.pem", "-route=false"}, -1},
		{[]string{"-h"}, 0},
		{[]string{"-drain", "0s"}, 2},
		{[]string{"-drain", "-1s"}, 2},
		{[]string{"-tls-cert", "c.pem"}, 2},
		{[]string{"-tls-key", "k.pem"}, 2},
		{[]string{"-route=maybe"}, 2},
		{[]string{"-nope"}, 2},
		{[]string{"extra"}, 2},
	} {
		var out strings.Builder
		cfg, status := parseFlags("http3", tc.args, &out)
		if status != tc.status {
			t.Errorf("parseFlags(%q) = status %d (%q); want %d", tc.args, status, out.String(), tc.status)
		}
		if status == -1 && (cfg.Listen != "127.0.0.1:0" || cfg.PIDFile != "x.pid" || cfg.Drain != 2*time.Second) {
			t.Errorf("parseFlags(%q) = %+v", tc.args, cfg)
		}
	}
	cfg, _ := parseFlags("http3", nil, new(strings.Builder))
	if !cfg.Route || cfg.TLSCert != "" {
		t.Errorf("parseFlags() = %+v; want routing on and a self-signed certificate by default", cfg)
	}
}

func TestSelfSigned(t *testing.T) {
	conf, err := loadTLS(Config{})
	if err != nil {
		t.Fatalf("loadTLS (self-signed): %v", err)
	}
	if len(conf.Certificates) != 1 || conf.Certificates[0].PrivateKey == nil {
		t.Fatalf("loadTLS (self-signed) = %+v; want one certificate with its key", conf)
	}
	if _, err := loadTLS(Config{TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem"}); err == nil {
		t.Errorf("loadTLS with missing files: no error")
	}
}
