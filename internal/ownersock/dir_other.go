//go:build !unix

package ownersock

// Without Unix ownership and modes there is no owner-only rule to check.

func CheckDir(dir string) error { return ErrNotSupported }

func MakeDir(dir string) error { return ErrNotSupported }

func CheckPath(path string) error { return ErrNotSupported }

func Live(path string) (bool, error) { return false, ErrNotSupported }
