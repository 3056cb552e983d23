package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/services/gateway/internal/wall"
)

type principalKey struct{}

// authenticate admits a /v1 request with a valid bearer token (RFC 6750)
// and puts its principal in the context; otherwise it answers 401 with a
// WWW-Authenticate challenge. The token comes from the Authorization header
// or, on the live view's route only, from the access_token query parameter:
// a browser's EventSource cannot send headers.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r)
		if !ok {
			challenge(w, `Bearer realm="answerback"`, "unauthorized", "a bearer token is required",
				"send Authorization: Bearer <JWT>")
			return
		}
		p, err := g.cfg.Auth.Verify(r.Context(), raw)
		if err != nil {
			detail := "the token was refused"
			if errors.Is(err, auth.ErrInvalidToken) {
				detail = err.Error() // safe: names the failed check, never the token
			}
			challenge(w, `Bearer realm="answerback", error="invalid_token", error_description="`+quoteSafe(detail)+`"`,
				"unauthorized", "invalid bearer token", detail)
			return
		}
		// The tenant wall shows this request's connections its tenant's rows only.
		ctx := wall.WithTenant(context.WithValue(r.Context(), principalKey{}, p), p.Tenant)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// bearerToken reads the request's token; a request that sends more than
// one (two headers, or a header and the parameter) has none.
func bearerToken(r *http.Request) (string, bool) {
	headers := r.Header.Values("Authorization")
	param, hasParam := r.URL.Query()["access_token"]
	if hasParam && !strings.HasSuffix(r.URL.Path, "/stream") {
		return "", false
	}
	switch {
	case len(headers) == 1 && !hasParam:
		scheme, token, found := strings.Cut(headers[0], " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		token = strings.TrimSpace(token)
		return token, token != ""
	case len(headers) == 0 && len(param) == 1 && param[0] != "":
		return param[0], true
	}
	return "", false
}

// requireScope answers 403 to a principal that holds none of scopes: the
// token is good, but not for this route.
func requireScope(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !principalOf(r).Has(scopes...) {
				want := strings.Join(scopes, " ")
				challenge(w, `Bearer realm="answerback", error="insufficient_scope", scope="`+want+`"`,
					"forbidden", "the token lacks the scope this route needs", "want one of: "+want)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func challenge(w http.ResponseWriter, wwwAuthenticate, problemType, title, detail string) {
	w.Header().Set("WWW-Authenticate", wwwAuthenticate)
	writeProblem(w, &envelope.Problem{Type: problemType, Title: title, Detail: detail})
}

// quoteSafe makes s fit in a quoted-string of a challenge.
func quoteSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if c == '"' || c == '\\' || c < 0x20 || c > 0x7e {
			return '\''
		}
		return c
	}, s)
}

// principalOf is the authenticated principal of a /v1 request.
func principalOf(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// tenantOf is the request's tenant, from its token. Everything the request
// reads or writes is scoped by it; another tenant's data is "not found".
func tenantOf(r *http.Request) string { return principalOf(r).Tenant }
