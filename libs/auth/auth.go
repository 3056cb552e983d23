// Package auth verifies the bearer JWTs of the gateway's /v1 API with
// lestrrat-go/jwx: the signature against a JSON Web Key Set (a file or a
// URL, re-read when a token names a key the set lacks, so keys can rotate),
// the algorithm against an allow-list of asymmetric ones (never "none", never
// HMAC: a public key can never be used as a shared secret), and the iss, aud,
// exp and nbf claims. A verified token becomes a Principal: its subject, its
// tenant (from a configurable claim) and its scopes.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// The scopes that gate the API's routes.
const (
	ScopeOrdersWrite  = "orders:write"
	ScopeOrdersRead   = "orders:read"
	ScopeCatalogAdmin = "catalog:admin"
)

// AllScopes lists every scope of the API.
var AllScopes = []string{ScopeOrdersWrite, ScopeOrdersRead, ScopeCatalogAdmin}

// DefaultAlgorithms is the allow-list when Config.Algorithms is empty.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}

// MaxTokenBytes bounds a token's length; a longer one is refused unread.
const MaxTokenBytes = 8 << 10

// Config configures a Verifier.
type Config struct {
	// JWKSFile or JWKSURL (exactly one) holds the public keys tokens are
	// signed with. Each key needs a "kid"; tokens must name theirs.
	JWKSFile string
	JWKSURL  string
	// Issuer and Audience are the required iss and aud. Both required.
	Issuer   string
	Audience string
	// Algorithms is the allow-list of JWS algorithms; default
	// DefaultAlgorithms. "none" and the HMAC algorithms are refused.
	Algorithms []string
	// TenantClaim names the claim that holds the tenant; default "tenant".
	TenantClaim string
	// ClockSkew is the leeway on exp, nbf and iat; default 30s.
	ClockSkew time.Duration
	// RefreshInterval is how often a JWKS URL is fetched again, and the least
	// time between two early re-reads caused by a token with an unknown key
	// ID; default 5 minutes (early re-reads: at most one every 10 seconds).
	RefreshInterval time.Duration
	// Clock returns now; default time.Now (tests move it).
	Clock func() time.Time
}

// Principal is who a verified token speaks for.
type Principal struct {
	Subject string
	Tenant  string
	Scopes  []string
}

// Has reports whether p holds any of the scopes.
func (p Principal) Has(scopes ...string) bool {
	for _, s := range scopes {
		if slices.Contains(p.Scopes, s) {
			return true
		}
	}
	return false
}

// ErrInvalidToken wraps every reason a token is refused; its message is safe
// to return to the client (it never contains the token or a key).
var ErrInvalidToken = errors.New("invalid token")

// Verifier verifies tokens. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	algs  map[string]jwa.SignatureAlgorithm
	keys  keySource
	cache verifiedCache // tokens verified and still valid (cache.go)
}

// New returns a Verifier; with a JWKS URL, the keys are fetched before it
// returns and refreshed until Close or until ctx ends.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if (cfg.JWKSFile == "") == (cfg.JWKSURL == "") {
		return nil, errors.New("auth: set exactly one of the JWKS file and the JWKS URL")
	}
	algs, err := allowList(cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	var keys keySource
	if cfg.JWKSFile != "" {
		keys, err = newFileKeys(cfg.JWKSFile, cfg.RefreshInterval)
	} else {
		keys, err = newURLKeys(ctx, cfg.JWKSURL, cfg.RefreshInterval)
	}
	if err != nil {
		return nil, err
	}
	return &Verifier{cfg: cfg, algs: algs, keys: keys}, nil
}

// NewWithKeys returns a Verifier over a fixed set of public keys (the
// embedded default's development key, tests); cfg's JWKS settings are ignored.
func NewWithKeys(cfg Config, set jwk.Set) (*Verifier, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	algs, err := allowList(cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	return &Verifier{cfg: cfg, algs: algs, keys: staticKeys{set}}, nil
}

// allowList resolves the algorithm names, refusing "none" and HMAC.
func allowList(names []string) (map[string]jwa.SignatureAlgorithm, error) {
	algs := map[string]jwa.SignatureAlgorithm{}
	for _, name := range names {
		alg, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok {
			return nil, fmt.Errorf("auth: unknown algorithm %q", name)
		}
		if alg.IsSymmetric() || alg == jwa.NoSignature() {
			return nil, fmt.Errorf("auth: algorithm %q is not allowed: only asymmetric signatures are verified", name)
		}
		algs[name] = alg
	}
	return algs, nil
}

func (c *Config) setDefaults() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("auth: the issuer is required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("auth: the audience is required"))
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	if c.TenantClaim == "" {
		c.TenantClaim = "tenant"
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 5 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return errors.Join(errs...)
}

// Close stops refreshing the keys.
func (v *Verifier) Close() { v.keys.close() }

// Verify checks raw (the compact JWS after "Bearer ") and returns whom it
// speaks for, or an error wrapping ErrInvalidToken. A token verified before
// is answered from a cache while it is valid and its key is in the set.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	if len(raw) > MaxTokenBytes {
		return Principal{}, invalid("token longer than %d bytes", MaxTokenBytes)
	}
	p, sum, ok := v.cached(ctx, raw)
	if ok {
		return p, nil
	}
	// The header first, unverified, only to choose the key: the algorithm
	// must be on the allow-list and the key ID known.
	msg, err := jws.ParseString(raw)
	if err != nil {
		return Principal{}, invalid("not a compact JWS")
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return Principal{}, invalid("want exactly one signature")
	}
	hdr := sigs[0].ProtectedHeaders()
	alg, ok := hdr.Algorithm()
	if !ok {
		return Principal{}, invalid("no algorithm")
	}
	allowed, ok := v.algs[alg.String()]
	if !ok {
		return Principal{}, invalid("algorithm %q not allowed", alg.String())
	}
	kid, ok := hdr.KeyID()
	if !ok || kid == "" {
		return Principal{}, invalid("no key ID (kid)")
	}
	key, err := v.keys.lookup(ctx, kid)
	if err != nil {
		return Principal{}, err
	}
	if !keyFits(key, allowed) {
		return Principal{}, invalid("key %q does not fit algorithm %q", kid, alg.String())
	}
	tok, err := jwt.ParseString(raw,
		jwt.WithKey(allowed, key),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithRequiredClaim("exp"),
		jwt.WithAcceptableSkew(v.cfg.ClockSkew),
		jwt.WithClock(jwt.ClockFunc(v.cfg.Clock)),
	)
	if err != nil {
		return Principal{}, invalid("%s", claimError(err))
	}
	if p, err = v.principal(tok); err != nil {
		return Principal{}, err
	}
	exp, _ := tok.Expiration() // required above
	nbf, _ := tok.NotBefore()
	v.cache.put(sum, verified{principal: p, kid: kid, notBefore: nbf, expires: exp})
	return p, nil
}

// keyFits reports whether key's type (and its own "alg", when it names one)
// agrees with alg: an RSA key verifies RS/PS, an EC key ES, an OKP key EdDSA.
func keyFits(key jwk.Key, alg jwa.SignatureAlgorithm) bool {
	if own, ok := key.Algorithm(); ok && own.String() != alg.String() {
		return false
	}
	name := alg.String()
	switch key.KeyType() {
	case jwa.RSA():
		return strings.HasPrefix(name, "RS") || strings.HasPrefix(name, "PS")
	case jwa.EC():
		return strings.HasPrefix(name, "ES")
	case jwa.OKP():
		return name == "EdDSA" || name == "Ed25519"
	}
	return false
}

// claimError names which check refused the token, in words safe for the client.
func claimError(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "token expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "wrong issuer"
	case errors.Is(err, jwt.InvalidAudienceError()):
		return "wrong audience"
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return "issued in the future (iat)"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "missing a required claim (exp)"
	}
	return "signature or claims invalid"
}

func (v *Verifier) principal(tok jwt.Token) (Principal, error) {
	var p Principal
	p.Subject, _ = tok.Subject()
	var tenant string
	if err := tok.Get(v.cfg.TenantClaim, &tenant); err != nil {
		return Principal{}, invalid("claim %q missing or not a string", v.cfg.TenantClaim)
	}
	if !ValidTenant(tenant) {
		return Principal{}, invalid("claim %q: want 1 to 64 lowercase letters, digits, '-' or '_'", v.cfg.TenantClaim)
	}
	p.Tenant = tenant
	// OAuth 2.0 writes scopes as one space-separated string in "scope"
	// (RFC 8693 §4.2); some issuers use an array in "scp".
	var scope string
	if tok.Has("scope") {
		if err := tok.Get("scope", &scope); err != nil {
			return Principal{}, invalid(`claim "scope" is not a string`)
		}
		p.Scopes = strings.Fields(scope)
	} else if tok.Has("scp") {
		var scp any
		_ = tok.Get("scp", &scp)
		switch x := scp.(type) {
		case string:
			p.Scopes = strings.Fields(x)
		case []any:
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return Principal{}, invalid(`claim "scp" is neither a string nor an array of strings`)
				}
				p.Scopes = append(p.Scopes, s)
			}
		default:
			return Principal{}, invalid(`claim "scp" is neither a string nor an array of strings`)
		}
	}
	return p, nil
}

// ValidTenant accepts tenant names: 1 to 64 lowercase ASCII letters, digits,
// '-' or '_' — safe in record keys, SQL values, logs and metric labels.
func ValidTenant(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, c := range t {
		lowerOrDigit := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !lowerOrDigit && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}
