package redistest

import "syscall"

// procAttr kills redis-server when the test process dies, so a crashed test run leaves no
// server behind.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
