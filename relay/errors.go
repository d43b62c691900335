package relay

import (
	"errors"
	"fmt"
)

// Code classifies a domain error. The transport maps each code once, in one table, to a
// gRPC code and an HTTP status (see server.CodeOf).
type Code string

// Error codes.
const (
	CodeInvalid            Code = "invalid"             // malformed request: HTTP 400, INVALID_ARGUMENT
	CodeUnauthenticated    Code = "unauthenticated"     // missing/invalid signature or token: 401
	CodePermissionDenied   Code = "permission_denied"   // address or token not allowed: 403
	CodeNotFound           Code = "not_found"           // unknown source or event: 404
	CodeTooLarge           Code = "too_large"           // body over the source's limit: 413
	CodeUnsupportedMedia   Code = "unsupported_media"   // content type the provider never sends: 415
	CodeRateLimited        Code = "rate_limited"        // 429
	CodeUnavailable        Code = "unavailable"         // store unreachable: 503, UNAVAILABLE
	CodeOutOfRange         Code = "out_of_range"        // cursor older than retained history
	CodeResourceExhausted  Code = "resource_exhausted"  // subscriber fell behind
	CodeFailedPrecondition Code = "failed_precondition" // e.g. partition count mismatch
	CodeUnimplemented      Code = "unimplemented"
	CodeInternal           Code = "internal"
)

// Error is a domain error: a code, a message safe to show to a client, and optionally the
// underlying cause, which is never shown to clients.
type Error struct {
	Code    Code
	Message string
	// Reason is a short machine-readable detail for logs and metrics (for example
	// "stale" or "mismatch" for a failed verification). Never shown to clients of the ingress.
	Reason string
	// ResumeCursor, on a subscription's OUT_OF_RANGE or RESOURCE_EXHAUSTED, is the cursor to
	// resume from; the transport sends it to the client (gRPC: ErrorInfo metadata
	// "resume_cursor").
	ResumeCursor string
	Err          error
}

func (e *Error) Error() string {
	msg := string(e.Code) + ": " + e.Message
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted client-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with the given code and message that wraps cause. The cause is
// for logs only.
func WrapError(code Code, cause error, message string) *Error {
	return &Error{Code: code, Message: message, Err: cause}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal for any other
// non-nil error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the client-safe message of err: the message of the first *Error in its
// chain, or a generic text for any other error (internal details never reach a client).
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorReason returns the Reason of the first *Error in err's chain, or "".
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Verification failure reasons, used as Error.Reason with CodeUnauthenticated.
const (
	ReasonMissing   = "missing"   // signature, timestamp or token header absent
	ReasonMalformed = "malformed" // present but not parseable
	ReasonStale     = "stale"     // signed timestamp older than the tolerance
	ReasonFuture    = "future"    // signed timestamp further ahead than the tolerance
	ReasonMismatch  = "mismatch"  // no configured secret or key produced a matching signature
	ReasonNoSecret  = "no_secret" // the source has no usable secret: fail closed
)

// Unauthenticated is the one error a verifier returns for a rejected request: a generic
// client message and the reason for logs and metrics.
func Unauthenticated(reason string) *Error {
	return &Error{Code: CodeUnauthenticated, Message: "signature verification failed", Reason: reason}
}
