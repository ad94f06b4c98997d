// Package exepath chooses the binary a new generation runs, and checks
// it before anything is forked: the library's successor
// (Options.Executable), the master's in-place exec (Config.Executable)
// and the worker a master starts all come here.
//
// The policy, in one place:
//
//   - A name with a slash is a path, made absolute against the initial
//     working directory (a program that changes directory still finds
//     it). A name without one is looked up in PATH, as a shell would.
//   - Symlinks are NOT resolved. In a "current -> releases/N" layout the
//     path keeps naming current, so each upgrade runs whatever release
//     current points at then. os.Executable resolves them (and would
//     re-exec the old release for ever); that is why os.Args[0] is used.
//   - If the file os.Args[0] named is gone — "go run" removed its
//     temporary binary, a deploy deleted the old one — the running binary
//     is used: /proc/self/exe on Linux, which leads to it even when its
//     file was replaced or removed, os.Executable elsewhere.
//   - Whatever is chosen is checked first (Check): it exists, is a regular
//     file, and we may execute it. A failed fork+exec would tell less,
//     later, from inside a child.
package exepath
