//go:build !unix

package transport

import "syscall"

// sysRead is never reached without a poller (pollerWorks is false, so
// nothing parks and nothing reads a socket directly): it keeps the
// package building where a socket is not a file descriptor (Windows).
func sysRead(uintptr, []byte) (int, error) { return 0, syscall.EINVAL }
