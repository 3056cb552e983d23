package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// The embedded default (make run) signs its own tokens with a development
// key: an Ed25519 key made on first start and kept in the data folder. Its
// tokens are issued by DevIssuer for DevAudience; nothing else trusts them.
const (
	DevIssuer   = "answerback-dev"
	DevAudience = "answerback"
	// DevKeyFile is the development key's file name within the data folder.
	DevKeyFile = "dev-signing-key.jwk"
	// devKeyIDPrefix marks a key as a development key.
	devKeyIDPrefix = "answerback-dev-"
)

// ErrNotDevelopment: the key is not a development key, so development
// tokens cannot be minted with it.
var ErrNotDevelopment = errors.New("not a development key")

// DevKey is the embedded default's signing key.
type DevKey struct{ private jwk.Key }

// LoadOrCreateDevKey reads dataDir's development key, making one (mode
// 0600) on first use.
func LoadOrCreateDevKey(dataDir string) (*DevKey, error) {
	path := filepath.Join(dataDir, DevKeyFile)
	if k, err := LoadDevKey(path); !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := jwk.Import(priv)
	if err != nil {
		return nil, err
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	_ = key.Set(jwk.KeyIDKey, devKeyIDPrefix+fmt.Sprintf("%x", tp[:8]))
	_ = key.Set(jwk.AlgorithmKey, jwa.EdDSA())
	_ = key.Set(jwk.KeyUsageKey, "sig")
	b, err := json.MarshalIndent(key, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("development key: %w", err)
	}
	return &DevKey{key}, nil
}

// LoadDevKey reads a development key file; a key that is not one (its key
// ID lacks the development mark) is refused with ErrNotDevelopment.
func LoadDevKey(path string) (*DevKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("development key %s: %w", path, err)
	}
	if kid, _ := key.KeyID(); !strings.HasPrefix(kid, devKeyIDPrefix) {
		return nil, fmt.Errorf("%s: %w", path, ErrNotDevelopment)
	}
	if _, err := jwk.PublicKeyOf(key); err != nil || key.KeyType() != jwa.OKP() {
		return nil, fmt.Errorf("%s: %w: want an Ed25519 private key", path, ErrNotDevelopment)
	}
	return &DevKey{key}, nil
}

// PublicSet is the JWKS a gateway verifies development tokens with.
func (k *DevKey) PublicSet() (jwk.Set, error) {
	pub, err := jwk.PublicKeyOf(k.private)
	if err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	return set, nil
}

// WriteJWKS writes PublicSet to path as JSON, readable by every user (public
// keys only: a gateway may run as another user), and returns the settings
// that make a gateway process trust it: AUTH_JWKS_FILE, AUTH_ISSUER and
// AUTH_AUDIENCE, as NAME=value.
func (k *DevKey) WriteJWKS(path string) (gatewayEnv []string, err error) {
	set, err := k.PublicSet()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil { //nolint:gosec // public keys, read by the gateways' user
		return nil, err
	}
	return []string{"AUTH_JWKS_FILE=" + path, "AUTH_ISSUER=" + DevIssuer, "AUTH_AUDIENCE=" + DevAudience}, nil
}

// Verifier returns a gateway's verifier of development tokens.
func (k *DevKey) Verifier() (*Verifier, error) {
	set, err := k.PublicSet()
	if err != nil {
		return nil, err
	}
	return NewWithKeys(Config{Issuer: DevIssuer, Audience: DevAudience}, set)
}

// Mint signs a development token for tenant with scopes, valid for ttl.
func (k *DevKey) Mint(subject, tenant string, scopes []string, ttl time.Duration) (string, error) {
	if !ValidTenant(tenant) {
		return "", fmt.Errorf("tenant %q: want 1 to 64 lowercase letters, digits, '-' or '_'", tenant)
	}
	for _, s := range scopes {
		if !knownScope(s) {
			return "", fmt.Errorf("unknown scope %q: want some of %s", s, strings.Join(AllScopes, ", "))
		}
	}
	now := time.Now()
	tok, err := jwt.NewBuilder().
		Issuer(DevIssuer).Audience([]string{DevAudience}).Subject(subject).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(ttl)).
		Claim("tenant", tenant).Claim("scope", strings.Join(scopes, " ")).
		Build()
	if err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), k.private))
	if err != nil {
		return "", err
	}
	return string(signed), nil
}

func knownScope(s string) bool {
	for _, known := range AllScopes {
		if s == known {
			return true
		}
	}
	return false
}
