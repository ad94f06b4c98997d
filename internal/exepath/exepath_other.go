//go:build !unix

package exepath

import "os"

func Check(path string) error { return ErrNotSupported }

func Running() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	return self, ErrNotSupported
}
