package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/answerback/answerback/libs/auth"
)

// Every /v1 route of an Answerback gateway wants a bearer token. The bench
// signs its own with a development key made in its work folder, for one
// tenant: the catalog it seeds and the orders it drives belong to it.
const (
	benchTenant = "bench"
	// benchTokenTTL outlasts the longest run.
	benchTokenTTL = 24 * time.Hour
)

// gatewayAuth makes (or reads) the development key in dir and writes its
// public keys beside it; it returns the environment that points a gateway
// process at them and a token for the bench's tenant with every scope.
func gatewayAuth(dir string) (env []string, token string, err error) {
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		return nil, "", err
	}
	if env, err = key.WriteJWKS(filepath.Join(dir, "dev-jwks.json")); err != nil {
		return nil, "", err
	}
	if token, err = benchToken(key); err != nil {
		return nil, "", err
	}
	return env, token, nil
}

// benchToken is a token of key for the bench's tenant with every scope.
func benchToken(key *auth.DevKey) (string, error) {
	token, err := key.Mint("bench", benchTenant, auth.AllScopes, benchTokenTTL)
	if err != nil {
		return "", fmt.Errorf("minting the bench's token: %w", err)
	}
	return token, nil
}

// devstackToken waits until the embedded default at base answers (it makes
// its development key in dataDir before it listens), then mints the bench's
// token with that key.
func devstackToken(ctx context.Context, base, dataDir string) (string, error) {
	err := retrying(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return err
		}
		return do(req, http.StatusNoContent)
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the embedded default: %w", err)
	}
	key, err := auth.LoadDevKey(filepath.Join(dataDir, auth.DevKeyFile))
	if err != nil {
		return "", fmt.Errorf("the embedded default's development key: %w", err)
	}
	return benchToken(key)
}

// authorize makes req carry token, if there is one (the floors and the
// Watermill peer check none).
func authorize(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
