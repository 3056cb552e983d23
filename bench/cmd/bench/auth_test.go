package main

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/answerback/answerback/libs/auth"
)

// The environment the bench gives its gateway processes verifies the
// bench's token, read as the gateway reads it (AUTH_JWKS_FILE, AUTH_ISSUER,
// AUTH_AUDIENCE), for the bench's tenant with every scope.
func TestGatewayAuthVerifiesBenchToken(t *testing.T) {
	dir := t.TempDir()
	env, token, err := gatewayAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	v, err := auth.New(context.Background(), auth.Config{JWKSFile: vars["AUTH_JWKS_FILE"], Issuer: vars["AUTH_ISSUER"], Audience: vars["AUTH_AUDIENCE"]})
	if err != nil {
		t.Fatalf("a gateway with %v: %v", env, err)
	}
	defer v.Close()
	p, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("the bench's token: %v", err)
	}
	if p.Tenant != benchTenant || !slices.Equal(p.Scopes, auth.AllScopes) {
		t.Fatalf("principal %+v, want tenant %q with scopes %v", p, benchTenant, auth.AllScopes)
	}

	// A second deployment of the run reuses the key: earlier tokens still verify.
	_, again, err := gatewayAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), again); err != nil {
		t.Fatalf("the second deployment's token: %v", err)
	}
	if _, err := auth.LoadDevKey(filepath.Join(dir, auth.DevKeyFile)); err != nil {
		t.Fatalf("the key in the work folder: %v", err)
	}
}

func TestAuthorize(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/v1/catalog", nil)
	authorize(req, "")
	if h := req.Header.Get("Authorization"); h != "" {
		t.Fatalf("no token: Authorization %q, want none", h)
	}
	authorize(req, "abc")
	if h := req.Header.Get("Authorization"); h != "Bearer abc" {
		t.Fatalf("Authorization %q, want %q", h, "Bearer abc")
	}
}
