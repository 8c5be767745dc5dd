//go:build unix

package transport

import "syscall"

// sysRead is read(2) on a socket's descriptor.
func sysRead(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }
