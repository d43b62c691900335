// Package server is eventrelay's transport: the gRPC services, the grpc-gateway wiring of the
// HTTP ingress, HTTP middleware (limits, allowlists, auth) and the one table that maps domain
// errors to gRPC codes and HTTP statuses.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/eventrelay/eventrelay/relay"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorDomain is the ErrorInfo domain of eventrelay's errors.
const errorDomain = "eventrelay.io"

// codeTable is the one mapping from domain error codes to gRPC codes and HTTP statuses.
var codeTable = map[relay.Code]struct {
	grpc codes.Code
	http int
}{
	relay.CodeInvalid:            {codes.InvalidArgument, http.StatusBadRequest},
	relay.CodeUnauthenticated:    {codes.Unauthenticated, http.StatusUnauthorized},
	relay.CodePermissionDenied:   {codes.PermissionDenied, http.StatusForbidden},
	relay.CodeNotFound:           {codes.NotFound, http.StatusNotFound},
	relay.CodeTooLarge:           {codes.InvalidArgument, http.StatusRequestEntityTooLarge},
	relay.CodeUnsupportedMedia:   {codes.InvalidArgument, http.StatusUnsupportedMediaType},
	relay.CodeRateLimited:        {codes.ResourceExhausted, http.StatusTooManyRequests},
	relay.CodeUnavailable:        {codes.Unavailable, http.StatusServiceUnavailable},
	relay.CodeOutOfRange:         {codes.OutOfRange, http.StatusBadRequest},
	relay.CodeResourceExhausted:  {codes.ResourceExhausted, http.StatusTooManyRequests},
	relay.CodeFailedPrecondition: {codes.FailedPrecondition, http.StatusPreconditionFailed},
	relay.CodeUnimplemented:      {codes.Unimplemented, http.StatusNotImplemented},
	relay.CodeInternal:           {codes.Internal, http.StatusInternalServerError},
}

// grpcToDomain maps gRPC codes raised outside the domain (by the gateway, by grpc-go) back to
// domain codes, so that HTTP statuses come from the same table.
var grpcToDomain = map[codes.Code]relay.Code{
	codes.InvalidArgument:    relay.CodeInvalid,
	codes.Unauthenticated:    relay.CodeUnauthenticated,
	codes.PermissionDenied:   relay.CodePermissionDenied,
	codes.NotFound:           relay.CodeNotFound,
	codes.ResourceExhausted:  relay.CodeResourceExhausted,
	codes.Unavailable:        relay.CodeUnavailable,
	codes.OutOfRange:         relay.CodeOutOfRange,
	codes.FailedPrecondition: relay.CodeFailedPrecondition,
	codes.Unimplemented:      relay.CodeUnimplemented,
	codes.Canceled:           relay.CodeUnavailable,
	codes.DeadlineExceeded:   relay.CodeUnavailable,
}

// HTTPStatus returns the HTTP status of a domain code.
func HTTPStatus(code relay.Code) int {
	if m, ok := codeTable[code]; ok {
		return m.http
	}
	return http.StatusInternalServerError
}

// GRPCCode returns the gRPC code of a domain code.
func GRPCCode(code relay.Code) codes.Code {
	if m, ok := codeTable[code]; ok {
		return m.grpc
	}
	return codes.Internal
}

// toStatus turns any error into a gRPC status error that is safe to send to a client: the
// domain message and code (as an ErrorInfo detail), never a raw Redis or internal error. The
// cause of internal and unavailable errors is logged here, once.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isDomain(err) {
		return err // already a status (e.g. from grpc-go)
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "canceled")
	}
	if errors.Is(err, context.DeadlineExceeded) && !isDomain(err) {
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	code := relay.ErrorCode(err)
	switch code {
	case relay.CodeInternal:
		log.ErrorContext(ctx, "request failed", "code", string(code), "err", err)
	case relay.CodeUnavailable:
		// Expected while Redis is down or relayd shuts down (one line per request): the
		// store watcher logs the outage itself at WARN.
		log.WarnContext(ctx, "request failed", "code", string(code), "err", err)
	}
	st := status.New(GRPCCode(code), relay.ErrorMessage(err))
	info := &errdetails.ErrorInfo{Reason: string(code), Domain: errorDomain}
	var de *relay.Error
	if errors.As(err, &de) && de.ResumeCursor != "" {
		info.Metadata = map[string]string{"resume_cursor": de.ResumeCursor}
	}
	if d, derr := st.WithDetails(info); derr == nil {
		st = d
	}
	return st.Err()
}

func isDomain(err error) bool {
	var e *relay.Error
	return errors.As(err, &e)
}

// domainCodeOf recovers the domain code of a status error (from its ErrorInfo detail, else
// from the gRPC code).
func domainCodeOf(st *status.Status) relay.Code {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			return relay.Code(info.Reason)
		}
	}
	if c, ok := grpcToDomain[st.Code()]; ok {
		return c
	}
	return relay.CodeInternal
}
