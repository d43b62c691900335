package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/eventrelay/eventrelay/relay"
	"google.golang.org/grpc/metadata"
)

// Token is a subscriber or producer credential: sent as `authorization: Bearer <token>`.
type Token struct {
	// Name identifies the token in logs; never the value.
	Name string
	// Value is the secret token.
	Value []byte
	// Sources the token may read (and publish to); empty or "*" means every source.
	Sources []string
	// Publish allows EventService.Publish.
	Publish bool
	// Groups are the consumer groups the token may join (Subscribe with a group) and settle
	// (Acknowledge, Nack, ModifyAckDeadline): group names or globs ("*" any run of
	// characters, "?" one). Empty: every group when the token may read every source (Sources
	// empty or "*"), else none.
	Groups []string
	// MaxSubscriptions bounds the subscriptions the token holds open at once; 0: no bound
	// but the server's.
	MaxSubscriptions int
	// Console lets the token open the web console (on the admin listener), which then shows
	// only what the token may read.
	Console bool
}

// Principal is an authenticated caller of EventService.
type Principal struct {
	Name    string
	all     bool
	sources map[string]bool
	publish bool
	// allGroups: any group; else groups are the globs of the groups the caller may use.
	allGroups bool
	groups    []string
	// maxSubs is the token's bound on open subscriptions (0: none).
	maxSubs int
	console bool
}

// CanRead reports whether the caller may read source.
func (p *Principal) CanRead(source string) bool { return p.all || p.sources[source] }

// CanUseGroup reports whether the caller may join and settle consumer group.
func (p *Principal) CanUseGroup(group string) bool {
	if p.allGroups {
		return true
	}
	for _, g := range p.groups {
		if relay.Glob(g, group) {
			return true
		}
	}
	return false
}

// CanPublish reports whether the caller may publish to source.
func (p *Principal) CanPublish(source string) bool { return p.publish && p.CanRead(source) }

// CanOpenConsole reports whether the caller may use the web console.
func (p *Principal) CanOpenConsole() bool { return p.console }

// Auth authenticates EventService callers by bearer token. With no tokens, every caller is
// allowed everything.
type Auth struct {
	tokens []Token
	// digests are the SHA-256 of the token values: comparing fixed-length digests keeps
	// the comparison constant-time in the length of the tokens too.
	digests [][sha256.Size]byte
}

// AuthOptions configure NewAuth.
type AuthOptions struct {
	// Tokens are the bearer tokens; none: every caller is allowed everything.
	Tokens []Token
}

// NewAuth returns an Auth over opts.Tokens.
func NewAuth(opts AuthOptions) *Auth {
	a := &Auth{tokens: opts.Tokens}
	for _, t := range opts.Tokens {
		a.digests = append(a.digests, sha256.Sum256(t.Value))
	}
	return a
}

// Open reports whether no tokens are configured.
func (a *Auth) Open() bool { return a == nil || len(a.tokens) == 0 }

var openPrincipal = &Principal{Name: "anonymous", all: true, publish: true, allGroups: true, console: true}

// AuthenticateHTTP checks the bearer token of an HTTP request's Authorization header, as
// Authenticate does for gRPC metadata.
func (a *Auth) AuthenticateHTTP(r *http.Request) (*Principal, error) {
	if a.Open() {
		return openPrincipal, nil
	}
	return a.Authenticate(metadata.NewIncomingContext(r.Context(), metadata.MD{"authorization": r.Header.Values("Authorization")}))
}

// Authenticate checks the bearer token in ctx's incoming metadata. Every configured token is
// compared in constant time, so timing says nothing about which one (if any) matched.
func (a *Auth) Authenticate(ctx context.Context) (*Principal, error) {
	if a.Open() {
		return openPrincipal, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var presented string
	for _, v := range md.Get("authorization") {
		if t, ok := cutBearer(v); ok {
			presented = t
			break
		}
	}
	if presented == "" {
		return nil, relay.Errorf(relay.CodeUnauthenticated, "missing bearer token: send authorization: Bearer <token>")
	}
	var match *Token
	d := sha256.Sum256([]byte(presented))
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(d[:], a.digests[i][:]) == 1 && match == nil {
			match = &a.tokens[i]
		}
	}
	if match == nil {
		return nil, relay.Errorf(relay.CodeUnauthenticated, "invalid token")
	}
	p := &Principal{Name: match.Name, publish: match.Publish, sources: map[string]bool{}, groups: match.Groups,
		maxSubs: match.MaxSubscriptions, console: match.Console}
	for _, s := range match.Sources {
		if s == "*" {
			p.all = true
		}
		p.sources[s] = true
	}
	if len(match.Sources) == 0 {
		p.all = true
	}
	// A token restricted to some sources uses only the groups it lists; an unrestricted one
	// without a list uses every group.
	p.allGroups = len(match.Groups) == 0 && p.all
	return p, nil
}

func cutBearer(v string) (string, bool) {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:]), true
	}
	return "", false
}

// checkSettle authorizes settling the delivery an ack id names: the caller must read its
// source and use its group.
func checkSettle(p *Principal, a relay.AckID) error {
	if err := checkRead(p, a.Partition.Source); err != nil {
		return err
	}
	return checkGroup(p, a.Group)
}

func checkGroup(p *Principal, group string) error {
	if !p.CanUseGroup(group) {
		return relay.Errorf(relay.CodePermissionDenied, "token %q may not use consumer group %q (auth.tokens[].groups)", p.Name, group)
	}
	return nil
}

func checkRead(p *Principal, source string) error {
	if !p.CanRead(source) {
		return relay.Errorf(relay.CodePermissionDenied, "token %q may not read source %q", p.Name, source)
	}
	return nil
}
