package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/verify"
)

var sendCommand = &command{
	name:     "send",
	synopsis: "--source S --provider P --secret SECRET [--type T] [--id ID] [--header K=V]... [--print] [FILE | - | --data JSON]",
	summary:  "sign a payload exactly as a provider would and POST it to relayd",
	doc: `
Signs the payload (FILE, - for standard input, or --data) with the provider's scheme and
POSTs it to <url>/v1/webhooks/<source>, as the provider itself would: the same signature,
timestamp and id headers, over the same bytes. Prints the HTTP status and the stored event's id
("200 OK event_id=evt_1 duplicate=false"); a rejected webhook prints the status and the
relay's message and exits 1.

--provider is any shared-secret provider of relayd (hmac, stripe, standardwebhooks, svix,
github, gitlab, bitbucket, slack, twilio, shopify, square, zoom, twitch, linear, paddle,
hubspot, intercom, mailgun, meta, basic, token); for discord, sendgrid and the v1a signatures of
standardwebhooks give --private-key instead of --secret. The provider options must match the
source's configuration in relayd (--header-name, --algorithm, --encoding, --prefix,
--template, --timestamp-header, --id-header, --type-header, --query-param for hmac and token;
--public-url for twilio, square and hubspot when the source has url set).

The payload is sent byte for byte; relayctl never rewrites it, except where the provider's
scheme itself puts the signature in the body (mailgun's "signature" object, linear's
"webhookTimestamp"). --type and --id are sent only where the provider carries them in headers
(github X-GitHub-Event/X-GitHub-Delivery, gitlab, bitbucket, shopify, twitch, the id header of
standardwebhooks, svix, twilio and linear, and hmac/token sources with --type-header or
--id-header); for the others (stripe, slack, ...) the type and id come from the payload, and
relayctl says so instead of applying them.

--secret may be a literal, env:NAME or file:PATH (one trailing newline trimmed), like relayd's
configuration. --print prints the signed request as a curl command instead of sending it
(timestamped signatures go stale after the provider's tolerance, typically 5 minutes).`,
	setup: setupSend,
}

// headerCarried lists, per provider, the headers the provider sends the event id and type in
// (what relay/verify reads them from).
var headerCarried = map[string]struct{ id, typ string }{
	"github":           {"X-GitHub-Delivery", "X-GitHub-Event"},
	"gitlab":           {"Idempotency-Key", "X-Gitlab-Event"},
	"bitbucket":        {"X-Request-UUID", "X-Event-Key"},
	"shopify":          {"X-Shopify-Webhook-Id", "X-Shopify-Topic"},
	"twitch":           {"Twitch-Eventsub-Message-Id", "Twitch-Eventsub-Subscription-Type"},
	"standardwebhooks": {"Webhook-Id", ""},
	"svix":             {"Svix-Id", ""},
	"twilio":           {"I-Twilio-Idempotency-Token", ""},
	"linear":           {"Linear-Delivery", ""},
}

func setupSend(fs *flag.FlagSet, e *env) runner {
	var (
		base, source, provider, secret, privateKey string
		typ, id, data, contentType                 string
		headers                                    stringList
		print                                      bool
		timeout                                    time.Duration
		cfg                                        relay.SourceConfig
		opts                                       = verify.OptionsOf(&cfg)
	)
	fs.StringVar(&base, "url", e.envOr("RELAY_URL", "http://localhost:8080"), "relayd's HTTP `URL` ($RELAY_URL); a URL ending in /v1/webhooks/<source> is used as is")
	fs.StringVar(&source, "source", "", "source `name` (the path segment of /v1/webhooks/<source>)")
	fs.StringVar(&provider, "provider", "hmac", "the source's `provider`")
	fs.StringVar(&secret, "secret", "", "the source's shared `secret`: literal, env:NAME or file:PATH")
	fs.StringVar(&privateKey, "private-key", "", "private `key` for discord (hex seed), sendgrid (base64 DER or PEM), standardwebhooks/svix v1a (whsk_...); literal, env:NAME or file:PATH")
	fs.StringVar(&typ, "type", "", "event `type`, sent in the provider's type header where it has one")
	fs.StringVar(&id, "id", "", "event/delivery `id`, sent in the provider's id header where it has one")
	fs.Var(&headers, "header", "extra request header `K=V` (repeatable)")
	fs.StringVar(&data, "data", "", "the payload, inline (instead of FILE)")
	fs.StringVar(&contentType, "content-type", "", "Content-Type `type` (default application/json for a JSON payload, else the provider's usual type)")
	fs.BoolVar(&print, "print", false, "print the signed request as a curl command instead of sending it")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "HTTP request timeout")
	fs.StringVar(&opts.Header, "header-name", "", "signature header (hmac, default X-Signature) or token header (token)")
	fs.StringVar(&opts.Algorithm, "algorithm", "", "hmac: sha1, sha256 (default) or sha512")
	fs.StringVar(&opts.Encoding, "encoding", "", "hmac: hex (default) or base64")
	fs.StringVar(&opts.Prefix, "prefix", "", "hmac: signature prefix, e.g. v1=")
	fs.StringVar(&opts.Template, "template", "", "hmac: signed bytes template, e.g. {timestamp}.{body}")
	fs.StringVar(&opts.TimestampHeader, "timestamp-header", "", "hmac: header of the signed timestamp")
	fs.StringVar(&opts.IDHeader, "id-header", "", "hmac, token, basic: header carrying the event id (where --id goes)")
	fs.StringVar(&opts.TypeHeader, "type-header", "", "hmac, token, basic: header carrying the event type (where --type goes)")
	fs.StringVar(&opts.QueryParam, "query-param", "", "token: query parameter carrying the token")
	fs.StringVar(&opts.BodyFormat, "body-format", "", "the source's body_format (json, form, multipart, xml, raw) where the provider offers a choice")
	fs.BoolVar(&opts.UnsignedID, "unsigned-id", false, "hmac: the source's unsigned_id (an --id-header the template does not sign)")
	fs.StringVar(&cfg.URL, "public-url", "", "twilio, square, hubspot, hmac with {url}: the public `URL` the source's url option names (default: the request URL)")
	tlsf := addTLSFlags(fs, false)

	return func(ctx context.Context, args []string) error {
		target, err := webhookURL(base, &source)
		if err != nil {
			return err
		}
		body, err := readPayload(e, data, args)
		if err != nil {
			return err
		}
		cfg.Name, cfg.Provider = source, provider
		var key crypto.Signer
		switch {
		case privateKey != "":
			v, err := resolveSecret(e, privateKey, "--private-key")
			if err != nil {
				return err
			}
			if key, err = verify.ParsePrivateKey(provider, string(v)); err != nil {
				return usagef("--private-key: %v", err)
			}
		case secret != "":
			v, err := resolveSecret(e, secret, "--secret")
			if err != nil {
				return err
			}
			opts.Secrets = []relay.Secret{{Value: v}}
		default:
			return usagef("--secret is required (or --private-key for a public-key provider)")
		}
		if _, err := verify.New(&cfg); err != nil {
			return usagef("%v", err)
		}

		h := http.Header{}
		for _, kv := range headers {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				k, v, ok = strings.Cut(kv, ":")
			}
			if !ok || strings.TrimSpace(k) == "" {
				return usagef("--header %q: want NAME=VALUE", kv)
			}
			h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		idHeader, typeHeader := carriers(&cfg)
		for _, a := range []struct{ flag, value, header, what string }{{"--id", id, idHeader, "id"}, {"--type", typ, typeHeader, "type"}} {
			switch {
			case a.value == "":
			case a.header != "":
				h.Set(a.header, a.value)
			default:
				fmt.Fprintf(e.stderr, "relayctl send: note: %s sends the event %s in the payload, not in a header: %s is not applied (the payload is sent as is)\n", provider, a.what, a.flag)
			}
		}
		if contentType == "" {
			contentType = h.Get("Content-Type") // from --header
		}
		if contentType == "" && json.Valid(body) && verify.SourceAccepts(&relay.SourceConfig{Provider: provider, Verify: &verify.Options{BodyFormat: opts.BodyFormat}}, "application/json") {
			contentType = "application/json"
		}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		u, _ := url.Parse(target)
		req := &relay.WebhookRequest{Method: http.MethodPost, URL: target, Path: u.Path, RawQuery: u.RawQuery,
			Header: h, ContentType: contentType, Body: body}
		if key != nil {
			err = verify.SignWithKey(&cfg, key, req, e.now())
		} else {
			err = verify.Sign(&cfg, req, e.now())
		}
		if err != nil {
			return fmt.Errorf("signing: %w", err)
		}
		u.RawQuery = req.RawQuery
		if print {
			return printCurl(e.stdout, u.String(), req.Header, req.Body)
		}
		client, err := tlsf.httpClient(timeout)
		if err != nil {
			return err
		}
		return post(ctx, e, client, u.String(), req.Header, req.Body)
	}
}

// webhookURL returns the webhook URL of source under base; a base that already ends in
// /v1/webhooks/<name> is used as is and names the source when --source is empty.
func webhookURL(base string, source *string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("--url %q: want http(s)://host[:port]", base)
	}
	if name, ok := strings.CutPrefix(u.Path, "/v1/webhooks/"); ok && name != "" {
		if *source == "" {
			*source = name
		} else if *source != name {
			return "", usagef("--url names source %q, --source %q", name, *source)
		}
		return u.String(), nil
	}
	if *source == "" {
		return "", usagef("--source is required")
	}
	if !relay.ValidSourceName(*source) {
		return "", usagef("--source %q: must match [a-z0-9][a-z0-9_-]{0,62}", *source)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/v1/webhooks/" + *source
	u.RawPath = ""
	return u.String(), nil
}

// readPayload reads the payload from --data, FILE or "-" (standard input).
func readPayload(e *env, data string, args []string) ([]byte, error) {
	switch {
	case len(args) > 1:
		return nil, usagef("one payload FILE at most, got %d arguments", len(args))
	case len(args) == 1 && data != "":
		return nil, usagef("give the payload as FILE or --data, not both")
	case len(args) == 1 && args[0] == "-":
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	case len(args) == 1:
		b, err := os.ReadFile(args[0])
		if err != nil {
			return nil, usagef("payload: %v", err)
		}
		return b, nil
	case data != "":
		return []byte(data), nil
	}
	return nil, usagef("a payload is needed: FILE, - for standard input, or --data")
}

// resolveSecret resolves a literal, env:NAME or file:PATH secret value.
func resolveSecret(e *env, v, flagName string) ([]byte, error) {
	switch {
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		s := e.getenv(name)
		if s == "" {
			return nil, usagef("%s: environment variable %s is not set", flagName, name)
		}
		return []byte(s), nil
	case strings.HasPrefix(v, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(v, "file:"))
		if err != nil {
			return nil, usagef("%s: %v", flagName, err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
	return []byte(v), nil
}

// carriers returns the headers the source's provider reads the event id and type from ("" for
// the payload).
func carriers(cfg *relay.SourceConfig) (idHeader, typeHeader string) {
	if c, ok := headerCarried[strings.ToLower(cfg.Provider)]; ok {
		return c.id, c.typ
	}
	o := verify.OptionsOf(cfg)
	return o.IDHeader, o.TypeHeader
}

// printCurl writes the signed request as a curl command line.
func printCurl(w io.Writer, target string, h http.Header, body []byte) error {
	if bytes.IndexByte(body, 0) >= 0 {
		return errors.New("--print: the payload contains NUL bytes, which a shell argument cannot carry")
	}
	var b strings.Builder
	b.WriteString("curl -sS -X POST " + shellQuote(target))
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			b.WriteString(" \\\n  -H " + shellQuote(k+": "+v))
		}
	}
	b.WriteString(" \\\n  --data-binary " + shellQuote(string(body)) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// post sends the signed request and prints the relay's answer.
func post(ctx context.Context, e *env, client *http.Client, target string, h http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = h.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(answer))
		if json.Unmarshal(answer, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	var ok struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	if json.Unmarshal(answer, &ok) == nil && ok.EventID != "" {
		fmt.Fprintf(e.stdout, "%s event_id=%s duplicate=%t\n", resp.Status, ok.EventID, ok.Duplicate)
		return nil
	}
	// A provider handshake (Slack url_verification, ...): the relay's answer is the body.
	fmt.Fprintf(e.stdout, "%s\n", resp.Status)
	if len(answer) > 0 {
		fmt.Fprintf(e.stdout, "%s\n", bytes.TrimRight(answer, "\n"))
	}
	return nil
}
