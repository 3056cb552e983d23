package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/answerback/answerback/libs/auth"
)

// abctl token mints development tokens that make run's gateways accept, and
// refuses where there is no development key or in production.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	if r := abctl(t, "", "token", "--tenant", "acme", "--data", dir); r.code != ExitRefused || !strings.Contains(r.errOut, "no development key") {
		t.Fatalf("no key: exit %d %s, want %d", r.code, r.errOut, ExitRefused)
	}
	key, err := auth.LoadOrCreateDevKey(dir) // what make run does at start
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := key.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	r := abctl(t, "", "token", "--tenant", "acme", "--scopes", "orders:read", "--data", dir)
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	p, err := verifier.Verify(context.Background(), strings.TrimSpace(r.out))
	if err != nil || p.Tenant != "acme" || !p.Has(auth.ScopeOrdersRead) || p.Has(auth.ScopeOrdersWrite) {
		t.Fatalf("minted token: %+v %v", p, err)
	}
	var out struct {
		Token  string   `json:"token"`
		Scopes []string `json:"scopes"`
	}
	r = abctl(t, "", "token", "--tenant", "globex", "--data", dir, "--json")
	if err := json.Unmarshal([]byte(r.out), &out); err != nil || len(out.Scopes) != 3 {
		t.Fatalf("--json: %q %v", r.out, err)
	}
	if p, err := verifier.Verify(context.Background(), out.Token); err != nil || p.Tenant != "globex" {
		t.Fatalf("--json token: %+v %v", p, err)
	}

	for name, args := range map[string][]string{
		"unknown scope": {"--tenant", "acme", "--scopes", "root"},
		"bad tenant":    {"--tenant", "Acme Corp"},
		"no tenant":     {},
		"ttl too long":  {"--tenant", "acme", "--ttl", "8760h"},
	} {
		if r := abctl(t, "", append([]string{"token", "--data", dir}, args...)...); r.code != ExitUsage {
			t.Errorf("%s: exit %d, want %d (%s)", name, r.code, ExitUsage, r.errOut)
		}
	}

	t.Setenv("ANSWERBACK_ENV", "production")
	if r := abctl(t, "", "token", "--tenant", "acme", "--data", dir); r.code != ExitRefused {
		t.Errorf("production: exit %d, want %d", r.code, ExitRefused)
	}
	t.Setenv("ANSWERBACK_ENV", "")

	// A key that is not a development key is never used to mint.
	b, _ := os.ReadFile(filepath.Join(dir, auth.DevKeyFile))
	other := t.TempDir()
	_ = os.WriteFile(filepath.Join(other, auth.DevKeyFile), []byte(strings.Replace(string(b), "answerback-dev-", "prod-", 1)), 0o600)
	if r := abctl(t, "", "token", "--tenant", "acme", "--data", other); r.code != ExitRefused {
		t.Errorf("a production key: exit %d, want %d (%s)", r.code, ExitRefused, r.errOut)
	}
}

// abctl devkey makes the key and the JWKS a gateway verifies its tokens with.
func TestDevKey(t *testing.T) {
	dir := t.TempDir()
	if r := abctl(t, "", "devkey", "--data", dir, "--json"); r.code != ExitOK {
		t.Fatalf("devkey: exit %d %s", r.code, r.errOut)
	}
	v, err := auth.New(context.Background(), auth.Config{JWKSFile: filepath.Join(dir, "jwks.json"), Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	r := abctl(t, "", "token", "--tenant", "acme", "--data", dir)
	if p, err := v.Verify(context.Background(), strings.TrimSpace(r.out)); err != nil || p.Tenant != "acme" {
		t.Fatalf("a token of the devkey's key: %+v %v", p, err)
	}
	t.Setenv("ANSWERBACK_ENV", "production")
	if r := abctl(t, "", "devkey", "--data", t.TempDir()); r.code != ExitRefused {
		t.Errorf("production: exit %d, want %d", r.code, ExitRefused)
	}
}
