// Package syncbuf is a bytes.Buffer safe for concurrent writers and readers: where tests
// collect the log or output of a server or process that writes from several goroutines.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
