package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/service"
)

func init() { register(newTokenCmd); register(newDevKeyCmd) }

// devJWKSFile is the public key set devkey writes beside the development
// key, for gateways' AUTH_JWKS_FILE.
const devJWKSFile = "jwks.json"

func newDevKeyCmd(a *App) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "devkey --data DIR",
		Short: "Create a development signing key and its JWKS (docker compose's first step)",
		Long: `devkey makes a development signing key in DIR (kept if it exists) and writes
its public key set to DIR/jwks.json, for gateways started with
AUTH_JWKS_FILE=DIR/jwks.json AUTH_ISSUER=answerback-dev AUTH_AUDIENCE=answerback.
abctl token --data DIR then mints tokens they accept. Development only: it
refuses (exit 4) when ANSWERBACK_ENV is "production".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv("ANSWERBACK_ENV") == "production" {
				return withCode(ExitRefused, errors.New("ANSWERBACK_ENV is production: no development keys"))
			}
			key, err := auth.LoadOrCreateDevKey(dataDir)
			if err != nil {
				return err
			}
			path := filepath.Join(dataDir, devJWKSFile)
			if _, err := key.WriteJWKS(path); err != nil {
				return err
			}
			return a.Print(map[string]any{"jwks": path, "issuer": auth.DevIssuer, "audience": auth.DevAudience}, func(t *Table) {
				t.Row("JWKS", "ISSUER", "AUDIENCE")
				t.Row(path, auth.DevIssuer, auth.DevAudience)
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", envOr("ANSWERBACK_DATA_DIR", ".data"), "folder of the development key (env ANSWERBACK_DATA_DIR)")
	return cmd
}

func newTokenCmd(a *App) *cobra.Command {
	var (
		tenant, scopes, subject, dataDir string
		ttl                              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --tenant T [--scopes s1,s2]",
		Short: "Mint a development bearer token (make run only)",
		Long: `token signs a bearer token for the gateway of the embedded default (make
run) with its development key, kept in the data folder. It prints the token
alone, for export TOKEN=$(abctl token --tenant acme).

It works in development only: it refuses (exit 4) when the data folder has
no development key, when the key there is not a development key, or when
ANSWERBACK_ENV is "production". Production tokens come from your identity
provider; gateways there trust its JWKS (AUTH_JWKS_URL), never this key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return usageErrorf("--tenant is required")
			}
			if ttl <= 0 || ttl > 30*24*time.Hour {
				return usageErrorf("--ttl %s: want more than 0 and at most 720h", ttl)
			}
			if os.Getenv("ANSWERBACK_ENV") == "production" {
				return withCode(ExitRefused, errors.New("ANSWERBACK_ENV is production: development tokens are refused; get a token from your identity provider"))
			}
			path := filepath.Join(dataDir, auth.DevKeyFile)
			key, err := auth.LoadDevKey(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return withCode(ExitRefused, fmt.Errorf("no development key at %s: tokens are minted for make run's gateways only (start make run, or set --data to its folder)", path))
			case errors.Is(err, auth.ErrNotDevelopment):
				return withCode(ExitRefused, err)
			case err != nil:
				return err
			}
			list := service.List(scopes)
			token, err := key.Mint(subject, tenant, list, ttl)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			if a.JSON {
				return a.Print(map[string]any{"token": token, "tenant": tenant, "scopes": list, "expiresAt": time.Now().Add(ttl).UTC()}, nil)
			}
			_, err = fmt.Fprintln(a.Out, token)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant the token speaks for (required)")
	f.StringVar(&scopes, "scopes", "orders:write,orders:read,catalog:admin", "scopes, comma-separated: orders:write, orders:read, catalog:admin")
	f.StringVar(&subject, "subject", "developer", "the token's subject (sub)")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	f.StringVar(&dataDir, "data", envOr("ANSWERBACK_DATA_DIR", ".data"), "make run's data folder, which holds the development key (env ANSWERBACK_DATA_DIR)")
	return cmd
}
