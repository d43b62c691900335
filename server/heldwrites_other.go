//go:build !linux

package server

import (
	"net"
	"time"
)

// setUserTimeout does nothing where grpc-go does not set TCP_USER_TIMEOUT either.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
