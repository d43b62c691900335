// Package verify authenticates webhook deliveries: one relay.Verifier per source, built by
// New from the source's provider and options, and the matching signer (Sign, SignWithKey)
// for tests and for relayctl send. It imports only the standard library and relay.
//
// # Providers
//
// SourceConfig.Provider names the scheme (Providers lists them). Named providers are presets
// of one signature engine: where the signature is carried, the signed bytes (a template over
// {body} {timestamp} {id} {url} {method}), the MAC, the timestamp and its tolerance. "raw" is
// the request body byte for byte; form bodies are verified over their raw bytes too.
//
//	provider          signature                                           signed bytes                       tolerance
//	hmac              X-Signature (header): hex|base64 HMAC-SHA1/256/512  template, default {body}           5 min with timestamp_header
//	stripe            Stripe-Signature: t=..,v1=..[,v1=..]                {t}.{raw}                          300 s
//	standardwebhooks  webhook-signature: v1,<b64> v1a,<b64>               {id}.{ts}.{raw}                    5 min
//	svix              the same under svix-id, -timestamp, -signature      {id}.{ts}.{raw}                    5 min
//	github            X-Hub-Signature-256: sha256=<hex>                   raw                                -
//	gitlab            X-Gitlab-Token, or Standard Webhooks headers        - or {id}.{ts}.{raw}               - or 5 min
//	bitbucket         X-Hub-Signature: sha256=<hex>                       raw                                -
//	slack             X-Slack-Signature: v0=<hex>                         v0:{ts}:{raw}                      5 min
//	twilio            X-Twilio-Signature: base64 HMAC-SHA1                {url} + sorted form params         -
//	shopify           X-Shopify-Hmac-Sha256: base64                       raw                                -
//	square            X-Square-Hmacsha256-Signature: base64               {url}{raw}                         -
//	zoom              X-Zm-Signature: v0=<hex>                            v0:{ts}:{raw}                      none by default
//	twitch            Twitch-Eventsub-Message-Signature: sha256=<hex>     {id}{ts}{raw}                      10 min
//	linear            Linear-Signature: <hex>                             raw (ts: body webhookTimestamp)    60 s
//	paddle            Paddle-Signature: ts=..;h1=..[;h1=..]               {ts}:{raw}                         5 s
//	hubspot           X-HubSpot-Signature-v3: base64                      {METHOD}{url}{raw}{ts}             300 s
//	                  X-HubSpot-Signature (v1, v2): hex SHA-256           secret+raw, secret+METHOD+url+raw  -
//	intercom          X-Hub-Signature: sha1=<hex>                         raw                                -
//	discord           X-Signature-Ed25519: hex Ed25519                    {ts}{raw}                          none by default
//	sendgrid          X-Twilio-Email-Event-Webhook-Signature: ECDSA       {ts}{raw}                          none by default
//	mailgun           body signature {timestamp, token, signature}        {timestamp}{token}                 none by default
//	meta              X-Hub-Signature-256: sha256=<hex>                   raw                                -
//	basic             Authorization: Basic                                -                                  -
//	token             header (default Authorization: Bearer) or query     -                                  -
//
// facebook, instagram and whatsapp are aliases of meta; Verified.Provider is the configured
// name. The comment on each provider's definition in the source (hmac.go, stripe.go,
// standardwebhooks.go, twilio.go, hubspot.go, mailgun.go, asymmetric.go, token.go) gives its
// details.
//
// # Secrets
//
// Every secret of a source may match (rotation); Verified.KeyIndex and KeyID name the one
// that did. Secrets are used as configured, except:
//
//   - stripe: the whole "whsec_..." string is the key, as bytes;
//   - standardwebhooks, svix, gitlab signing tokens: "whsec_" + base64, the key is the decoded
//     bytes; "whpk_" + base64 is an Ed25519 public key for v1a signatures;
//   - discord: the application's Ed25519 public key, hex;
//   - sendgrid: the ECDSA P-256 verification key, base64 SPKI DER (or PEM);
//   - basic: "user:password".
//
// A source whose secrets are all absent, empty or unparseable still builds, and refuses every
// request with ReasonNoSecret: Problems reports it (and other start-up warnings).
//
// # Options
//
// Options a provider does not read are errors, so a misplaced option is caught at start-up.
//
//	header            hmac: signature header (default X-Signature); token: token header
//	algorithm         hmac: sha1, sha256 (default) or sha512
//	encoding          hmac: hex (default) or base64
//	prefix            hmac: prefix of the signature value, e.g. "v1="; optional in requests, and
//	                  "<algorithm>=" (e.g. "sha256=") is accepted too
//	template          hmac: the signed bytes, e.g. "{timestamp}.{body}"; must contain {body};
//	                  default {body}, or {timestamp}.{body} with timestamp_header
//	timestamp_header  hmac: header of the signed timestamp (unix s, ms or RFC 3339)
//	id_header         header of the event id (hmac: also the value of {id})
//	url               twilio, square, hubspot, hmac with {url}: the public URL the provider
//	                  signs, without query (the request's query is appended); when unset the
//	                  request URL as received is used
//	tolerance         schemes with a signed timestamp: overrides the provider's tolerance, and
//	                  enables the check for those without one (zoom, discord, sendgrid, mailgun)
//	query_param       token: query parameter carrying the token
//	verify_token      meta: the token of the GET subscription challenge
//
// id_field, type_field, type_header, subject_field and time_field (JSON dotted paths, or form
// field names) apply to every provider and override what its extraction finds; for hmac,
// token and basic id_field defaults to "id" and type_field to "type".
//
// # Verification
//
// Verify takes its clock as a parameter. A signed timestamp older than the tolerance is
// ReasonStale, further ahead ReasonFuture. Every rejection is relay.Unauthenticated with a
// reason (missing, malformed, stale, future, mismatch, no_secret) and a generic message that
// never contains a secret or a signature. MACs are compared with hmac.Equal; tokens by their
// SHA-256 digests in constant time. A content type the provider never sends is
// CodeUnsupportedMedia (see AcceptsContentType).
//
// The Verified result carries the provider's event id (the dedupe key), type, subject and
// time, and the provider headers worth keeping under lower-case names (never signature or
// credential headers). Handshakes (Slack url_verification and ssl_check, Twitch
// webhook_callback_verification, Zoom endpoint.url_validation, Discord PING) are answered only
// after the signature verifies, through Verified.Handshake; a Handshake with an empty
// ContentType and Body (Discord's webhook-events PING) is answered with 204 No Content. The
// meta verifier implements relay.EndpointChallenger for the GET hub.challenge.
package verify
