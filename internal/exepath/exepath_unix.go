//go:build unix

package exepath

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Check refuses what cannot be executed: a missing file (the error wraps
// fs.ErrNotExist), anything but a regular file, or a file we may not
// execute. Symlinks are followed: their target is what runs.
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	// access(2) answers for our real uid and groups, as execve(2)
	// decides; root gets it if any execute bit is set.
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Errorf("%s is not executable: %w", path, err)
	}
	return nil
}

// selfExe leads to the running binary even after its file was replaced
// or removed: the kernel keeps the inode.
const selfExe = "/proc/self/exe"

// Running is the binary this process runs: /proc/self/exe on Linux, which
// exec(2) follows to the very inode that runs, even if its path now holds
// another file or none; os.Executable elsewhere. It is checked with
// Check; the path is returned with the error, to name it.
func Running() (string, error) {
	if runtime.GOOS == "linux" {
		return selfExe, Check(selfExe)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("exepath: the running binary is unknown: %w", err)
	}
	return self, Check(self)
}
