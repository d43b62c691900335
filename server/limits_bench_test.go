package server

import (
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// BenchmarkWatchedSend is the cost watchSends adds to each send of a subscription (a
// delivery of the fan-out path): the send itself does nothing here.
func BenchmarkWatchedSend(b *testing.B) {
	send, stop := watchSends(func(*relay.Message) error { return nil }, 30*time.Second, func(error) {})
	defer stop()
	m := &relay.Message{}
	b.ReportAllocs()
	for b.Loop() {
		_ = send(m)
	}
}
