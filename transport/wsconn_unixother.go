//go:build unix && !linux

package transport

import "syscall"

// sendNow writes p to the non-blocking socket fd without waiting.
func sendNow(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }
