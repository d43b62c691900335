package relay

import (
	"net/http"
	"time"
)

// WebhookRequest is what a Verifier sees of one webhook delivery.
type WebhookRequest struct {
	// Method is the HTTP method, e.g. "POST".
	Method string
	// URL is the full public URL the provider called, as best known (scheme and host from the
	// source's configured url when set). Schemes that sign the URL (twilio, square, hubspot)
	// use the source's configured URL plus RawQuery.
	URL string
	// Path and RawQuery of the request as received.
	Path     string
	RawQuery string
	// Header holds the request headers (canonical keys).
	Header http.Header
	// ContentType is the Content-Type header as received.
	ContentType string
	// Body is the raw request body, byte for byte.
	Body []byte
}

// Verified is the result of a successful verification: what the provider's scheme says about
// the event. Empty fields are filled by the relay (id: UUIDv7, time: received time).
type Verified struct {
	// Provider and Scheme name what matched, e.g. "stripe" and "hmac-sha256".
	Provider string
	Scheme   string
	// KeyIndex is the position of the matching secret in the source's Secrets; KeyID its id.
	KeyIndex int
	KeyID    string
	// SignedTime is the timestamp covered by the signature, zero when the scheme has none.
	SignedTime time.Time

	// ID is the provider's event or delivery id, the dedupe key.
	ID string
	// Type is the provider's event type.
	Type string
	// Subject is what the event is about, when extractable.
	Subject string
	// Time is the provider's event time, zero when unknown.
	Time time.Time
	// Headers are the provider headers worth keeping (lower-case names), never secrets.
	Headers map[string]string

	// Handshake, when non-nil, is a provider handshake (Slack url_verification, Twitch
	// webhook_callback_verification, Zoom endpoint.url_validation, Discord PING) to be answered
	// with this response. Nothing is stored.
	Handshake *Handshake
}

// Handshake is a response body the relay sends instead of storing an event.
type Handshake struct {
	ContentType string
	Body        []byte
}

// Verifier verifies webhooks of one source. Implementations are safe for concurrent use.
type Verifier interface {
	// Verify checks req's signature over the raw bytes at time now and extracts the event
	// attributes. A rejected request returns an *Error with CodeUnauthenticated (see
	// Unauthenticated) and a Reason; a body the provider could not have sent returns
	// CodeInvalid or CodeUnsupportedMedia.
	Verify(req *WebhookRequest, now time.Time) (*Verified, error)
}

// EndpointChallenger is implemented by verifiers of providers that verify an endpoint with a
// GET challenge (Meta's hub.challenge). query holds the request's query parameters.
type EndpointChallenger interface {
	// Challenge returns the response to a GET verification, or an error with
	// CodeUnauthenticated when the verify token does not match.
	Challenge(query map[string][]string) (*Handshake, error)
}
