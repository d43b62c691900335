package client

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// OutOfRangeError ends Receive when the position to resume from is older than what relayd
// still retains: events were lost to retention. ResumeCursor resumes from the oldest
// retained event (accepting the loss).
type OutOfRangeError struct {
	Message      string
	ResumeCursor string
	err          error
}

func (e *OutOfRangeError) Error() string { return "client: out of range: " + e.Message }

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *OutOfRangeError) GRPCStatus() *status.Status { return status.Convert(e.err) }

func (e *OutOfRangeError) Unwrap() error { return e.err }

// StatusError is an error relayd answered that resuming does not fix (permission, a bad
// argument, a group setting conflict, ...). Code is the gRPC code.
type StatusError struct {
	Code    codes.Code
	Message string
	err     error
}

func (e *StatusError) Error() string { return fmt.Sprintf("client: %s: %s", e.Code, e.Message) }

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *StatusError) GRPCStatus() *status.Status { return status.Convert(e.err) }

func (e *StatusError) Unwrap() error { return e.err }

// statusError turns a gRPC error into an *OutOfRangeError or a *StatusError.
func statusError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.OutOfRange {
		oe := &OutOfRangeError{Message: st.Message(), err: err}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				oe.ResumeCursor = info.GetMetadata()["resume_cursor"]
			}
		}
		return oe
	}
	return &StatusError{Code: st.Code(), Message: st.Message(), err: err}
}

// retryable reports whether resuming fixes a stream error: relayd went away, restarted or
// is unreachable (UNAVAILABLE), cut a reader that fell behind (RESOURCE_EXHAUSTED), or the
// stream broke (ABORTED, INTERNAL on a reset connection, UNKNOWN, DEADLINE_EXCEEDED), went
// silent (errStale), ended (errEnded), or ran on a connection the client replaced
// (errReplaced).
func retryable(err error) bool {
	if errors.Is(err, errStale) || errors.Is(err, errEnded) || errors.Is(err, errReplaced) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown, codes.DeadlineExceeded:
		return true
	}
	return false
}

var (
	errStale = errors.New("no heartbeat for three intervals")
	errEnded = errors.New("the stream ended")
	// errReplaced breaks a stream whose connection the client replaced (Client.renew, after
	// another stream on it went silent).
	errReplaced = errors.New("the connection was replaced")
	// errFailed ends a stream after a handler or cursor-store failure (Receive returns that).
	errFailed = errors.New("receive failed")
)
