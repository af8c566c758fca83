//go:build !(linux || darwin)

package backend

import "net"

// connAlive cannot peek on this platform. A pooled connection that the server closed
// is then found out when writing to it fails (sent again on a new connection) or when
// its response does not come (an error, as with net/http's Transport for a POST).
func connAlive(net.Conn) bool { return true }
