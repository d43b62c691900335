package server

import (
	"context"
	"errors"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc/tap"
)

// Interrupting a blocked Send.
//
// grpc-go's SendMsg blocks while a stream's write quota and flow-control window are used up
// (a client that stopped reading), and the handler cannot end it through the stream's
// context, which grpc-go owns. The tap handle below, installed on every server
// NewGRPCServer builds, gives each Subscribe stream a context of its own that the handler
// may cancel (streamAborter): grpc-go's write quota waits on that context, so a blocked
// SendMsg returns at once and the handler ends the stream with its status. What was already
// queued for the client is still delivered, ahead of that status.

type abortKey struct{}

// errAborted is the cause of a stream context cancelled by its own handler.
var errAborted = errors.New("stream interrupted by the server")

// tapAbortable is the server's tap handle: Subscribe streams get a cancellable context.
func tapAbortable(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != eventrelayv1.EventService_Subscribe_FullMethodName {
		return ctx, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, abortKey{}, cancel), nil
}

// streamAborter returns the function that makes a blocked SendMsg on ctx's stream return,
// or nil when the stream has no such context (a server not built by NewGRPCServer).
func streamAborter(ctx context.Context) func() {
	cancel, ok := ctx.Value(abortKey{}).(context.CancelCauseFunc)
	if !ok {
		return nil
	}
	return func() { cancel(errAborted) }
}

// aborted reports whether ctx's stream was interrupted by its handler (rather than ended by
// the client).
func aborted(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errAborted) }
