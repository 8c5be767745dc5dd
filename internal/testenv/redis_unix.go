//go:build unix

package testenv

import "syscall"

// Freeze stops the server's process with SIGSTOP until Thaw: the kernel
// still accepts connections (up to the listen backlog) and takes what is
// written on them, and nothing is answered, as from a Redis that hangs.
// Stop (and the test's end) kills a frozen server all the same.
func (r *Redis) Freeze() { r.signal(syscall.SIGSTOP) }

// Thaw resumes a server stopped by Freeze.
func (r *Redis) Thaw() { r.signal(syscall.SIGCONT) }
