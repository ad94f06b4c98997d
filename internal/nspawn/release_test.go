package nspawn

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRelease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r        Release
		env, dir string
	}{
		{"", EnvRootfs, DefaultRootfs},
		{Bookworm, EnvRootfs, DefaultRootfs},
		{Trixie, "BATON_ROOTFS_TRIXIE", filepath.Join(filepath.Dir(DefaultRootfs), "rootfs-trixie")},
	} {
		if err := tc.r.orDefault().check(); err != nil {
			t.Errorf("%q.check() = %v; want nil", tc.r, err)
		}
		if got := tc.r.EnvRootfs(); got != tc.env {
			t.Errorf("%q.EnvRootfs() = %q; want %q", tc.r, got, tc.env)
		}
		if got := tc.r.DefaultRootfs(); got != tc.dir {
			t.Errorf("%q.DefaultRootfs() = %q; want %q", tc.r, got, tc.dir)
		}
	}
	// A typo must not build a tree of whatever debootstrap makes of it.
	if err := Release("trixy").check(); err == nil || !strings.Contains(err.Error(), "trixy") {
		t.Errorf(`Release("trixy").check() = %v; want an error naming it`, err)
	}
	// Each release builds under its own lock: the lock is named after
	// the directory.
	if Bookworm.DefaultRootfs() == Trixie.DefaultRootfs() {
		t.Errorf("bookworm and trixie share %s", Bookworm.DefaultRootfs())
	}
}

func TestOSReleaseCodename(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n", "bookworm"},
		{"VERSION_CODENAME=\"trixie\"\n", "trixie"},
		{"VERSION_CODENAME='trixie'", "trixie"},
		{"  VERSION_CODENAME=trixie  \n", "trixie"},
		{"ID=debian\n", ""},
		{"VERSION_CODENAME=\"\n", "\""},
		{"", ""},
	} {
		if got := osReleaseCodename(tc.text); got != tc.want {
			t.Errorf("osReleaseCodename(%q) = %q; want %q", tc.text, got, tc.want)
		}
	}
}
