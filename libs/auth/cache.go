package auth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedCacheSize bounds the tokens a Verifier remembers; past it the
// cache starts afresh (a client's next request verifies its token again).
const verifiedCacheSize = 10_000

// verified is what a Verifier remembers of a token it verified: whom it
// speaks for, the key that signed it, and when it is valid.
type verified struct {
	principal Principal
	kid       string
	notBefore time.Time // zero: no nbf claim
	expires   time.Time
}

// verifiedCache remembers tokens verified, by their SHA-256, so that a
// client's next request with the same token costs a hash and a lookup
// rather than a signature verification. A remembered token is accepted only
// while it is valid (nbf and exp, with the clock skew) and its key is still
// in the key set: a rotated-out key invalidates it as verification would.
type verifiedCache struct {
	mu     sync.Mutex
	tokens map[[sha256.Size]byte]verified
}

func (c *verifiedCache) get(raw string) (verified, [sha256.Size]byte, bool) {
	sum := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.tokens[sum]
	return v, sum, ok
}

func (c *verifiedCache) put(sum [sha256.Size]byte, v verified) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil || len(c.tokens) >= verifiedCacheSize {
		c.tokens = make(map[[sha256.Size]byte]verified)
	}
	c.tokens[sum] = v
}

func (c *verifiedCache) drop(sum [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tokens, sum)
}

// cached answers Verify for a token verified before and still valid; ok is
// false when the token must be verified in full.
func (v *Verifier) cached(ctx context.Context, raw string) (p Principal, sum [sha256.Size]byte, ok bool) {
	hit, sum, found := v.cache.get(raw)
	if !found {
		return Principal{}, sum, false
	}
	now, skew := v.cfg.Clock(), v.cfg.ClockSkew
	if now.After(hit.expires.Add(skew)) || !hit.notBefore.IsZero() && now.Before(hit.notBefore.Add(-skew)) {
		v.cache.drop(sum)
		return Principal{}, sum, false
	}
	if _, err := v.keys.lookup(ctx, hit.kid); err != nil {
		v.cache.drop(sum)
		return Principal{}, sum, false
	}
	return hit.principal, sum, true
}
