package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// issuer is a test identity provider: keys by ID, tokens signed with them.
type issuer struct {
	t    testing.TB
	keys map[string]jwk.Key // private, by kid
}

func newIssuer(t testing.TB) *issuer { return &issuer{t: t, keys: map[string]jwk.Key{}} }

// addKey makes a key of kind "rsa", "ec" or "ed25519" under kid.
func (is *issuer) addKey(kid, kind string) jwk.Key {
	is.t.Helper()
	var raw any
	var err error
	switch kind {
	case "rsa":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ec":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		dk, derr := LoadOrCreateDevKey(is.t.TempDir())
		raw, err = dk.private, derr
	}
	if err != nil {
		is.t.Fatal(err)
	}
	k, ok := raw.(jwk.Key)
	if !ok {
		if k, err = jwk.Import(raw); err != nil {
			is.t.Fatal(err)
		}
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	is.keys[kid] = k
	return k
}

// jwks is the public set of the issuer's keys, as JSON.
func (is *issuer) jwks(kids ...string) []byte {
	set := jwk.NewSet()
	for _, kid := range kids {
		pub, err := jwk.PublicKeyOf(is.keys[kid])
		if err != nil {
			is.t.Fatal(err)
		}
		_ = set.AddKey(pub)
	}
	b, _ := json.Marshal(set)
	return b
}

type claims struct {
	iss, aud, tenant, scope string
	exp, nbf                time.Time
	noExp                   bool
}

func good() claims {
	return claims{iss: "https://id.example", aud: "answerback", tenant: "acme", scope: "orders:read orders:write",
		exp: time.Now().Add(time.Hour), nbf: time.Now().Add(-time.Minute)}
}

func (is *issuer) sign(kid string, alg jwa.SignatureAlgorithm, c claims) string {
	is.t.Helper()
	b := jwt.NewBuilder().Issuer(c.iss).Audience([]string{c.aud}).Subject("user-1").NotBefore(c.nbf)
	if !c.noExp {
		b = b.Expiration(c.exp)
	}
	if c.tenant != "" {
		b = b.Claim("tenant", c.tenant)
	}
	if c.scope != "" {
		b = b.Claim("scope", c.scope)
	}
	tok, err := b.Build()
	if err != nil {
		is.t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, is.keys[kid]))
	if err != nil {
		is.t.Fatal(err)
	}
	return string(signed)
}

// jwksFile is a JWKS file's path and a function that writes the issuer's
// keys of the given IDs to it.
func (is *issuer) jwksFile(t testing.TB) (string, func(kids ...string)) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	return path, func(kids ...string) {
		t.Helper()
		if err := os.WriteFile(path, is.jwks(kids...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func verifierFor(t testing.TB, is *issuer, kids ...string) *Verifier {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, is.jwks(kids...), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(context.Background(), Config{JWKSFile: path, Issuer: "https://id.example", Audience: "answerback", ClockSkew: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// unsigned forges a token with the given header and claims, and signature.
func forge(header, payload map[string]any, sig []byte) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	return enc(header) + "." + enc(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestVerifyMatrix: one good token passes; each way a token can be wrong is
// refused with ErrInvalidToken and a reason naming the check.
func TestVerifyMatrix(t *testing.T) {
	is := newIssuer(t)
	is.addKey("rsa-1", "rsa")
	is.addKey("ec-1", "ec")
	is.addKey("ed-1", "ed25519")
	v := verifierFor(t, is, "rsa-1", "ec-1", "ed-1")

	for alg, kid := range map[string]string{"RS256": "rsa-1", "PS256": "rsa-1", "ES256": "ec-1", "EdDSA": "ed-1"} {
		a, _ := jwa.LookupSignatureAlgorithm(alg)
		p, err := v.Verify(context.Background(), is.sign(kid, a, good()))
		if err != nil {
			t.Fatalf("%s: good token refused: %v", alg, err)
		}
		if p.Tenant != "acme" || p.Subject != "user-1" || !p.Has(ScopeOrdersRead) || p.Has(ScopeCatalogAdmin) {
			t.Fatalf("%s: principal %+v", alg, p)
		}
	}

	rsaPub, _ := jwk.PublicKeyOf(is.keys["rsa-1"])
	var rawPub rsa.PublicKey
	_ = jwk.Export(rsaPub, &rawPub)
	pubJSON, _ := json.Marshal(rsaPub)
	hsKey, _ := jwk.Import(pubJSON) // the public key's bytes as an HMAC secret: the classic confusion
	is.keys["hs"] = hsKey
	_ = hsKey.Set(jwk.KeyIDKey, "rsa-1")

	with := func(f func(*claims)) claims { c := good(); f(&c); return c }
	cases := map[string]struct {
		token string
		want  string
	}{
		"expired":         {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.exp = time.Now().Add(-time.Minute) })), "expired"},
		"no exp":          {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.noExp = true })), "exp"},
		"not yet valid":   {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.nbf = time.Now().Add(time.Hour) })), "nbf"},
		"wrong issuer":    {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.iss = "https://evil.example" })), "issuer"},
		"wrong audience":  {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.aud = "someone-else" })), "audience"},
		"no tenant":       {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.tenant = "" })), "tenant"},
		"bad tenant":      {is.sign("rsa-1", jwa.RS256(), with(func(c *claims) { c.tenant = "Acme Corp/../x" })), "tenant"},
		"HS256 confusion": {is.sign("hs", jwa.HS256(), good()), "not allowed"},
		"alg none":        {forge(map[string]any{"alg": "none", "kid": "rsa-1"}, map[string]any{"iss": "https://id.example", "aud": "answerback", "tenant": "acme", "exp": time.Now().Add(time.Hour).Unix()}, nil), ""},
		"EC alg, RSA key": {forge(map[string]any{"alg": "ES256", "kid": "rsa-1"}, map[string]any{"iss": "https://id.example"}, []byte("x")), "does not fit"},
		"unknown kid":     {forge(map[string]any{"alg": "RS256", "kid": "nope"}, map[string]any{}, []byte("x")), "unknown key ID"},
		"no kid":          {forge(map[string]any{"alg": "RS256"}, map[string]any{}, []byte("x")), "kid"},
		"bad signature":   {is.sign("rsa-1", jwa.RS256(), good())[:200] + "A" + is.sign("rsa-1", jwa.RS256(), good())[201:], ""},
		"signed by stranger": {func() string {
			other := newIssuer(t)
			other.addKey("rsa-1", "rsa")
			return other.sign("rsa-1", jwa.RS256(), good())
		}(), "signature"},
		"garbage":   {"not.a.jwt", ""},
		"too long":  {strings.Repeat("a", MaxTokenBytes+1), "longer"},
		"two parts": {"a.b", ""},
	}
	for name, c := range cases {
		_, err := v.Verify(context.Background(), c.token)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err %v, want ErrInvalidToken", name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q does not name %q", name, err, c.want)
		}
		if strings.Contains(err.Error(), c.token) && len(c.token) > 20 {
			t.Errorf("%s: the error repeats the token", name)
		}
	}
}

// TestAllowListRefusesSymmetric: HMAC and "none" cannot be allowed.
func TestAllowListRefusesSymmetric(t *testing.T) {
	for _, alg := range []string{"HS256", "none", "XX999"} {
		if _, err := NewWithKeys(Config{Issuer: "i", Audience: "a", Algorithms: []string{alg}}, jwk.NewSet()); err == nil {
			t.Errorf("%s allowed", alg)
		}
	}
	if _, err := New(context.Background(), Config{Issuer: "i", Audience: "a"}); err == nil {
		t.Error("no JWKS: no error")
	}
	if _, err := New(context.Background(), Config{JWKSFile: "x", JWKSURL: "y", Issuer: "i", Audience: "a"}); err == nil {
		t.Error("both JWKS sources: no error")
	}
}

// TestScopeClaims: "scope" as a space-separated string and "scp" as an array.
func TestScopeClaims(t *testing.T) {
	is := newIssuer(t)
	is.addKey("ec-1", "ec")
	v := verifierFor(t, is, "ec-1")
	tok, _ := jwt.NewBuilder().Issuer("https://id.example").Audience([]string{"answerback"}).Expiration(time.Now().Add(time.Hour)).
		Claim("tenant", "t1").Claim("scp", []string{"catalog:admin"}).Build()
	signed, _ := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), is.keys["ec-1"]))
	p, err := v.Verify(context.Background(), string(signed))
	if err != nil || !p.Has(ScopeCatalogAdmin) || p.Has(ScopeOrdersRead) {
		t.Fatalf("scp array: %+v %v", p, err)
	}
}

// TestFileKeysRotate: a key added to the JWKS file is honoured without a
// restart; a key removed from it stops being honoured at the next read.
func TestFileKeysRotate(t *testing.T) {
	is := newIssuer(t)
	is.addKey("k1", "ec")
	is.addKey("k2", "ec")
	path, write := is.jwksFile(t)
	write("k1")
	v, err := New(context.Background(), Config{JWKSFile: path, Issuer: "https://id.example", Audience: "answerback", RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), is.sign("k2", jwa.ES256(), good())); err == nil {
		t.Fatal("k2 honoured before it was published")
	}
	write("k1", "k2")
	// The early re-read for an unknown kid was just spent on k2's first try.
	fk := v.keys.(*fileKeys)
	fk.mu.Lock()
	fk.earlyAt = time.Time{}
	fk.mu.Unlock()
	if _, err := v.Verify(context.Background(), is.sign("k2", jwa.ES256(), good())); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	write("k2")
	fk.mu.Lock()
	fk.loadedAt = time.Time{} // the refresh interval passed
	fk.mu.Unlock()
	if _, err := v.Verify(context.Background(), is.sign("k1", jwa.ES256(), good())); err == nil {
		t.Fatal("k1 honoured after it was withdrawn")
	}
}

// TestURLKeysRotate: keys from a JWKS URL; a token with a new key ID makes
// the set be fetched again at once, a flood of unknown IDs does not.
func TestURLKeysRotate(t *testing.T) {
	is := newIssuer(t)
	is.addKey("k1", "rsa")
	is.addKey("k2", "rsa")
	var published atomic.Value
	published.Store(is.jwks("k1"))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(published.Load().([]byte))
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := New(ctx, Config{JWKSURL: srv.URL, Issuer: "https://id.example", Audience: "answerback", RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(ctx, is.sign("k1", jwa.RS256(), good())); err != nil {
		t.Fatalf("k1: %v", err)
	}
	published.Store(is.jwks("k1", "k2"))
	if _, err := v.Verify(ctx, is.sign("k2", jwa.RS256(), good())); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	before := fetches.Load()
	for range 50 {
		_, _ = v.Verify(ctx, forge(map[string]any{"alg": "RS256", "kid": "forged"}, map[string]any{}, []byte("x")))
	}
	if extra := fetches.Load() - before; extra > 1 {
		t.Errorf("50 unknown key IDs caused %d fetches, want at most 1", extra)
	}
}

// TestDevKey: make run's key is made once, kept, and mints tokens its own
// verifier accepts; a key that is not a development key is refused.
func TestDevKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k1.Mint("dev", "demo", []string{ScopeOrdersRead}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v, err := k2.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(context.Background(), tok); err != nil || p.Tenant != "demo" {
		t.Fatalf("dev token: %+v %v", p, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, DevKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := k1.Mint("dev", "demo", []string{"admin:everything"}, time.Minute); err == nil {
		t.Error("unknown scope minted")
	}
	is := newIssuer(t)
	is.addKey("prod-1", "ed25519")
	b, _ := json.Marshal(is.keys["prod-1"])
	prod := filepath.Join(t.TempDir(), "prod.jwk")
	_ = os.WriteFile(prod, b, 0o600)
	if _, err := LoadDevKey(prod); !errors.Is(err, ErrNotDevelopment) {
		t.Errorf("a production key loaded as a development key: %v", err)
	}
}
