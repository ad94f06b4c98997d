package baton

import "net"

// The control socket needs SO_PEERCRED and pidfds: Linux only.

type controlServer struct{}

func listenControl(path string) (*controlServer, error) { return nil, errLinuxOnly }

func (s *controlServer) commit() error { return errLinuxOnly }

func (s *controlServer) close(unlink bool) {}

func (u *Upgrader) serveControl(s *controlServer) {}

func checkControlPath(path string) error { return errLinuxOnly }

func dialControl(path string) (*net.UnixConn, int, error) { return nil, 0, errLinuxOnly }
