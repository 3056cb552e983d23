package auth

import (
	"context"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// BenchmarkVerify: what authentication adds to a /v1 request, per
// algorithm: a token's first request ("first": the signature verified) and
// its next ones ("again": answered from the cache) (go test -bench Verify
// ./libs/auth).
func BenchmarkVerify(b *testing.B) {
	is := newIssuer(b)
	is.addKey("rsa", "rsa")
	is.addKey("ec", "ec")
	is.addKey("ed", "ed25519")
	v := verifierFor(b, is, "rsa", "ec", "ed")
	for _, c := range []struct {
		name, kid string
		alg       jwa.SignatureAlgorithm
	}{{"RS256", "rsa", jwa.RS256()}, {"ES256", "ec", jwa.ES256()}, {"EdDSA", "ed", jwa.EdDSA()}} {
		token := is.sign(c.kid, c.alg, good())
		b.Run(c.name+"/first", func(b *testing.B) {
			for b.Loop() {
				v.cache = verifiedCache{}
				if _, err := v.Verify(context.Background(), token); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/again", func(b *testing.B) {
			for b.Loop() {
				if _, err := v.Verify(context.Background(), token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
