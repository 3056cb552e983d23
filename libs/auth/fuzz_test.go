package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// FuzzVerify feeds arbitrary bytes to the token parsing path: it must never
// panic, refuse every input with ErrInvalidToken, and admit only a token
// that carries the good token's claims (a change that survives is one that
// does not alter what was signed, such as unused trailing bits of base64).
func FuzzVerify(f *testing.F) {
	is := newIssuer(f)
	is.addKey("ec-1", "ec")
	is.addKey("rsa-1", "rsa")
	v := verifierFor(f, is, "ec-1", "rsa-1")
	goodES := is.sign("ec-1", jwa.ES256(), good())
	f.Add(goodES)
	f.Add(is.sign("rsa-1", jwa.RS256(), good()))
	f.Add(forge(map[string]any{"alg": "none", "kid": "ec-1"}, map[string]any{"tenant": "acme"}, nil))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add(strings.Repeat(".", 100))
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), ErrInvalidToken.Error()) {
				t.Fatalf("refusal %q does not wrap ErrInvalidToken", err)
			}
			return
		}
		if p.Tenant != "acme" || p.Subject != "user-1" || !p.Has(ScopeOrdersRead, ScopeOrdersWrite) || p.Has(ScopeCatalogAdmin) {
			t.Fatalf("admitted a token with other claims: %+v", p)
		}
	})
}
