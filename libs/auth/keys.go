package auth

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// earlyRefreshEvery bounds how often a token naming an unknown key ID makes
// the key set be read again before its time: forged key IDs must not turn
// into a flood of reads of the issuer's JWKS.
const earlyRefreshEvery = 10 * time.Second

// keySource yields the public key with a key ID, reading the set again
// (at most every earlyRefreshEvery) when the ID is unknown: an issuer that
// rotates publishes the new key before signing with it.
type keySource interface {
	lookup(ctx context.Context, kid string) (jwk.Key, error)
	close()
}

// staticKeys is a fixed set.
type staticKeys struct{ set jwk.Set }

func (s staticKeys) lookup(_ context.Context, kid string) (jwk.Key, error) {
	if k, ok := s.set.LookupKeyID(kid); ok {
		return k, nil
	}
	return nil, invalid("unknown key ID %q", kid)
}

func (staticKeys) close() {}

// refresher holds a set and reads it again through load when its interval
// has passed, and through loadNow (early) for an unknown key ID.
type refresher struct {
	load, loadNow func(ctx context.Context) (jwk.Set, error)
	interval      time.Duration

	mu       sync.Mutex
	set      jwk.Set
	loadedAt time.Time
	earlyAt  time.Time
}

func (r *refresher) lookup(ctx context.Context, kid string) (jwk.Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.loadedAt) >= r.interval {
		r.reload(ctx, r.load, now)
	}
	if k, ok := r.set.LookupKeyID(kid); ok {
		return k, nil
	}
	if now.Sub(r.earlyAt) >= earlyRefreshEvery {
		r.earlyAt = now
		r.reload(ctx, r.loadNow, now)
		if k, ok := r.set.LookupKeyID(kid); ok {
			return k, nil
		}
	}
	return nil, invalid("unknown key ID %q", kid)
}

// reload replaces the set; a failed read keeps the last good one (the
// issuer's JWKS being briefly unreachable must not lock every client out).
func (r *refresher) reload(ctx context.Context, load func(context.Context) (jwk.Set, error), now time.Time) {
	set, err := load(ctx)
	if err != nil {
		return
	}
	r.set, r.loadedAt = set, now
}

// newFileKeys reads a JWKS file; the file is read again every interval and
// for an unknown key ID, so replacing it rotates the keys without a restart.
func newFileKeys(path string, interval time.Duration) (*fileKeys, error) {
	load := func(context.Context) (jwk.Set, error) { return readJWKS(path) }
	set, err := load(context.Background())
	if err != nil {
		return nil, err
	}
	return &fileKeys{refresher{load: load, loadNow: load, interval: interval, set: set, loadedAt: time.Now()}}, nil
}

type fileKeys struct{ refresher }

func (*fileKeys) close() {}

func readJWKS(path string) (jwk.Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	return publicOnly(set)
}

// publicOnly refuses a set without keys, and drops private parts: a
// verifier needs none, and must not keep any in memory.
func publicOnly(set jwk.Set) (jwk.Set, error) {
	if set.Len() == 0 {
		return nil, fmt.Errorf("auth: the JWKS holds no keys")
	}
	return jwk.PublicSetOf(set)
}

// urlKeys fetches a JWKS URL through jwx's cache, which refetches it in
// the background every interval (or as the response's Cache-Control says,
// within [interval/5, interval]).
type urlKeys struct {
	refresher
	cache  *jwk.Cache
	cancel context.CancelFunc
}

func newURLKeys(ctx context.Context, url string, interval time.Duration) (*urlKeys, error) {
	ctx, cancel := context.WithCancel(ctx)
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKS cache: %w", err)
	}
	regCtx, regCancel := context.WithTimeout(ctx, 10*time.Second)
	defer regCancel()
	if err := cache.Register(regCtx, url, jwk.WithMinInterval(interval/5), jwk.WithMaxInterval(interval)); err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKS URL %s: %w", url, err)
	}
	lookup := func(ctx context.Context) (jwk.Set, error) {
		set, err := cache.Lookup(ctx, url)
		if err != nil {
			return nil, err
		}
		return publicOnly(set)
	}
	refetch := func(ctx context.Context) (jwk.Set, error) {
		set, err := cache.Refresh(ctx, url)
		if err != nil {
			return nil, err
		}
		return publicOnly(set)
	}
	set, err := lookup(regCtx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKS URL %s: %w", url, err)
	}
	// The cache keeps its copy fresh: ours follows it every second, and an
	// unknown key ID asks it to refetch at once.
	return &urlKeys{
		refresher: refresher{load: lookup, loadNow: refetch, interval: time.Second, set: set, loadedAt: time.Now()},
		cache:     cache, cancel: cancel,
	}, nil
}

func (u *urlKeys) close() { u.cancel() }
