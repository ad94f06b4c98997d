//go:build !linux

package supervisor

import (
	"context"
	"os"
)

// Master is not supported here: New returns ErrNotSupported.
type Master struct{}

// New returns ErrNotSupported: the master needs Linux (child subreaper,
// SCM_CREDENTIALS, /proc).
func New(cfg Config) (*Master, error) { return nil, ErrNotSupported }

func (m *Master) Run(ctx context.Context) error              { return ErrNotSupported }
func (m *Master) Reload(ctx context.Context) (Result, error) { return Result{}, ErrNotSupported }
func (m *Master) Status() Status                             { return Status{} }
func (m *Master) ExecMaster() error                          { return ErrNotSupported }
func (m *Master) Stop()                                      {}
func (m *Master) Signal(sig os.Signal)                       {}
func (m *Master) HandleSignals()                             {}
