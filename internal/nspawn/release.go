package nspawn

import (
	"fmt"
	"path/filepath"
	"strings"
)

// A Release is the Debian release a rootfs is built from, and so the
// systemd it boots. Each has a tree of its own, built and cached
// independently (its own directory, its own build lock), so that tests of
// one version never wait for, or boot, the other's.
type Release string

const (
	// Bookworm is Debian 12: systemd 252, the last version before
	// Type=notify-reload.
	Bookworm Release = "bookworm"
	// Trixie is Debian 13: systemd 257, with Type=notify-reload (253),
	// NOTIFYACCESS= (254) and pidfd tracking of the main process. Its
	// systemd still boots on a hybrid host's v1 hierarchy in nspawn
	// (tested here), though 256 deprecated it and 258 drops it.
	Trixie Release = "trixie"
)

// DefaultRelease is the release Options.Release and EnsureRootfs take
// when given "".
const DefaultRelease = Bookworm

// releases are those the package knows how to build and boot.
var releases = []Release{Bookworm, Trixie}

// check reports an error for a release the package does not know: a typo
// must fail the test, not build an arbitrary tree.
func (r Release) check() error {
	for _, k := range releases {
		if r == k {
			return nil
		}
	}
	return fmt.Errorf("nspawn: unknown release %q; want one of %q", string(r), releases)
}

func (r Release) orDefault() Release {
	if r == "" {
		return DefaultRelease
	}
	return r
}

// EnvRootfs returns the environment variable that names this release's
// rootfs instead of its default directory: BATON_ROOTFS for bookworm (the
// first and default release, so the name it always had), and
// BATON_ROOTFS_TRIXIE and so on for the others.
func (r Release) EnvRootfs() string {
	r = r.orDefault()
	if r == DefaultRelease {
		return EnvRootfs
	}
	return EnvRootfs + "_" + strings.ToUpper(string(r))
}

// DefaultRootfs returns where the release's rootfs is cached when its
// environment variable is unset: DefaultRootfs for bookworm, and a
// directory beside it named after the release for the others.
func (r Release) DefaultRootfs() string {
	r = r.orDefault()
	if r == DefaultRelease {
		return DefaultRootfs
	}
	return filepath.Join(filepath.Dir(DefaultRootfs), "rootfs-"+string(r))
}

// osReleaseCodename returns VERSION_CODENAME from the text of an
// os-release file (os-release(5)): shell-style KEY=VALUE lines, the value
// possibly quoted.
func osReleaseCodename(text string) string {
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || k != "VERSION_CODENAME" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		return v
	}
	return ""
}
