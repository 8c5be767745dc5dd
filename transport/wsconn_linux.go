package transport

import (
	"syscall"
	"unsafe"
)

// sendNow writes p to the socket fd without waiting, with send(2) rather
// than write(2): a socket's write goes through the file layer first
// (vfs_write, fdget_pos, sock_write_iter: 8% of a pinned server's CPU in
// a hub fan-out, perf), send goes to the socket directly. MSG_NOSIGNAL:
// a connection the client reset fails with EPIPE, without a SIGPIPE.
//
// A raw system call, without the runtime's entersyscall/exitsyscall: a
// send with MSG_DONTWAIT never waits, so the P need not be handed off.
// With them, a fan-out making one send after another (GOMAXPROCS 1, a
// pinned server) kept the runtime's sysmon waking every 20 µs to look for
// a P to retake: 6.3% of the server's CPU in context switches, 0.9% with
// the raw call (perf).
func sendNow(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
