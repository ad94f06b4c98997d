// Package reaper collects a process's children: the one wait4(-1) loop
// that a master, a CLI that wraps generations, and a test harness each
// need, and the helpers around it.
//
// Who waits. In a process that starts generations, exactly one piece of
// code may call wait: a second one — exec.Cmd.Wait, os.Process.Wait, a
// wait4 for one pid — would steal a child's exit status from whoever
// tracks it, or block on a child that the loop already reaped. So a
// Reaper reaps every child with wait4(-1, WNOHANG) and hands each exit to
// the function that was registered for that pid (Spawn, Track); a child
// nobody registered — an orphan reparented to us — is counted and
// reported to OnOrphan. Start children with syscall.StartProcess or
// os.StartProcess inside Spawn, never with os/exec, whose Wait would race
// the loop.
//
// Why Spawn holds a lock while the child starts: a child can exit before
// StartProcess returns its pid. The loop reaps it, finds the pid unknown
// and would count an orphan; instead it waits on the lock until Spawn has
// registered the pid, then delivers the exit to it.
//
// Orphans. A process that is PID 1 (a container's init) or a child
// subreaper (BecomeSubreaper, Linux) adopts every descendant orphaned by
// its parent's exit: a generation whose predecessor exited, a daemon that
// double-forked. They must be reaped too, or they stay zombies; the loop
// does it. (On the machines baton was written on, PID 1 reaped a zombie
// only after seconds: a subreaper keeps that out of the tests.)
//
// Wake-ups. SIGCHLD wakes the loop; signals coalesce, so a one-second tick
// catches an exit a merged signal could hide, and each wake-up reaps until
// wait4 finds nothing more.
//
// Await is for a process that runs no Reaper (a test harness): it waits
// for one pid and reaps it if it is ours.
//
// Platforms: the Reaper works on every Unix; BecomeSubreaper needs Linux
// (ErrNotSupported elsewhere); off Unix everything returns
// ErrNotSupported.
package reaper
