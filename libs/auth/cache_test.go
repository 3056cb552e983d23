package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// TestVerifiedTokensCached: a token verified once is answered from the
// cache with the same principal, and still refused as soon as verification
// would refuse it: past its expiry, before its nbf, or once its key has left
// the key set.
func TestVerifiedTokensCached(t *testing.T) {
	is := newIssuer(t)
	is.addKey("k1", "ec")
	is.addKey("k2", "ec")
	path, write := is.jwksFile(t)
	write("k1", "k2")
	now := time.Now()
	v, err := New(context.Background(), Config{JWKSFile: path, Issuer: "https://id.example", Audience: "answerback",
		ClockSkew: time.Second, RefreshInterval: time.Hour, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := good()
	c.exp, c.nbf = now.Add(time.Minute), now.Add(-time.Minute)
	token := is.sign("k1", jwa.ES256(), c)
	first, err := v.Verify(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, hit := v.cache.get(token); !hit {
		t.Fatal("a verified token was not cached")
	}
	again, err := v.Verify(ctx, token)
	if err != nil || again.Tenant != first.Tenant || again.Subject != first.Subject || len(again.Scopes) != len(first.Scopes) {
		t.Fatalf("cached verification: %+v, %v; want %+v", again, err, first)
	}

	now = now.Add(2 * time.Minute) // past exp and the skew
	if _, err := v.Verify(ctx, token); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token from the cache: %v, want ErrInvalidToken", err)
	}
	now = now.Add(-2 * time.Minute)

	early := good()
	early.exp, early.nbf = now.Add(time.Hour), now.Add(-time.Second/2)
	token2 := is.sign("k2", jwa.ES256(), early)
	if _, err := v.Verify(ctx, token2); err != nil {
		t.Fatal(err)
	}
	now = now.Add(-10 * time.Second) // the clock went back: before nbf and the skew
	if _, err := v.Verify(ctx, token2); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token before its nbf from the cache: %v, want ErrInvalidToken", err)
	}
	now = now.Add(10 * time.Second)

	if _, err := v.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	write("k2") // k1 withdrawn
	fk := v.keys.(*fileKeys)
	fk.mu.Lock()
	fk.loadedAt = time.Time{} // the refresh interval passed
	fk.mu.Unlock()
	if _, err := v.Verify(ctx, token); err == nil {
		t.Fatal("a cached token honoured after its key was withdrawn")
	}
}
