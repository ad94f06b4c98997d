package exepath

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNotSupported is returned by Check and Running where generations
// cannot be started: off Unix.
var ErrNotSupported = errors.New("exepath: starting generations needs Unix")

// Resolve makes name a path: made absolute against wd if it holds a
// slash, looked up in PATH if not. Symlinks are kept. wd "" means the
// current working directory. As in os/exec, a name found only through a
// relative PATH entry (".") is refused with exec.ErrDot: whoever controls
// the working directory would choose the binary.
func Resolve(name, wd string) (string, error) {
	if name == "" {
		return "", errors.New("exepath: no executable named")
	}
	if !strings.Contains(name, "/") {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", err
		}
		name = p
	}
	if filepath.IsAbs(name) {
		return filepath.Clean(name), nil
	}
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return "", fmt.Errorf("exepath: %s is relative and the working directory is unknown: %w", name, err)
		}
	}
	return filepath.Join(wd, name), nil
}

// Self is the binary this program was started as: os.Args[0], resolved
// with Resolve against wd, the initial working directory. If that cannot
// be resolved or its file is gone (stat fails), it is the running binary
// (Running). Either is checked with Check; the path is returned with the
// error, to name it.
func Self(wd string) (string, error) {
	if p, err := Resolve(os.Args[0], wd); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, Check(p)
		}
	}
	return Running()
}
