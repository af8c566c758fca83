//go:build linux || darwin

package backend

import (
	"errors"
	"net"
	"syscall"
)

// connAlive reports whether a pooled connection can carry another request: the server
// has not closed it (a keep-alive timeout, a restart) and sent nothing unasked. It
// peeks without blocking, one system call.
func connAlive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read is the one healthy answer; 0 bytes is the server's close,
		// and bytes before a request are a protocol error.
		alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
