//go:build linux || darwin

package baton

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// pidFile writes a PID file atomically: a temporary file in the same
// directory, renamed over the old one, so a reader never sees a partial or
// empty file.
type pidFile struct {
	path string // absolute
}

// check reports whether the directory takes a new file, as prepare will
// need; it leaves nothing behind. A PID file that is not set passes.
func (p pidFile) check() error {
	if p.path == "" {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(p.path), "."+filepath.Base(p.path)+".*")
	if err != nil {
		return fmt.Errorf("baton: PID file: %w", err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// prepare writes pid to a temporary file and returns it for commit. It
// fails early — before the predecessor is told to drain — if the directory
// is not writable.
func (p pidFile) prepare(pid int) (tmp string, err error) {
	f, err := os.CreateTemp(filepath.Dir(p.path), "."+filepath.Base(p.path)+".*")
	if err != nil {
		return "", fmt.Errorf("baton: PID file: %w", err)
	}
	tmp = f.Name()
	_, err = f.WriteString(strconv.Itoa(pid) + "\n")
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("baton: PID file: %w", err)
	}
	return tmp, nil
}

func (p pidFile) commit(tmp string) error {
	if err := os.Rename(tmp, p.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("baton: PID file: %w", err)
	}
	return nil
}

// removeIfOurs removes the file only if it still names pid: after a handover
// it names the successor and must stay.
func (p pidFile) removeIfOurs(pid int) {
	b, err := os.ReadFile(p.path)
	if err != nil || !bytes.Equal(bytes.TrimSpace(b), []byte(strconv.Itoa(pid))) {
		return
	}
	os.Remove(p.path)
}

// renamePIDFile writes this process's pid into the PID file again, if
// there is one: after a successor that named itself died. Best effort,
// logged: this generation serves whether or not it can be named.
func (u *Upgrader) renamePIDFile() {
	if u.pid.path == "" {
		return
	}
	tmp, err := u.pid.prepare(os.Getpid())
	if err == nil {
		err = u.pid.commit(tmp)
	}
	if err != nil {
		u.log.Error("PID file: cannot name this generation again", "pid_file", u.pid.path, "err", err)
	}
}
