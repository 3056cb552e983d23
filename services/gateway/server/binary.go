package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/gateway/internal/wall"
)

// Embedded is what a process that runs gateways in-process
// (service.Launch) may set besides their flags; the binary sets nothing.
type Embedded struct {
	// Pool, when set, is the database to use instead of DATABASE_URL's; its
	// config should have the tenant wall (TenantWall).
	Pool *pgxpool.Pool
	// Listener, when set, is served instead of HTTP_ADDR (port 0 in tests).
	Listener net.Listener
}

// Binary is the gateway binary: its settings — DATABASE_URL, HTTP_ADDR
// (default :8080), INSTANCE_ID (default "<host>-<random>": each instance
// has a reply topic of its own), REPLY_WAIT, READ_TIMEOUT, MAX_IN_FLIGHT, RATE_LIMIT and
// the token issuer's (AUTH_*, required) — and its Run.
func Binary(e Embedded) service.Binary {
	return service.Binary{Name: "gateway", Setup: func(s *service.Setup) service.Run {
		dsn := s.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
		addr := s.String("http-addr", "HTTP_ADDR", ":8080", "HTTP listen address")
		instance := s.String("instance-id", "INSTANCE_ID", service.Hostname()+"-"+randomSuffix(), "this instance's name (its reply topic is replies.<name>)")
		wait := s.Duration("reply-wait", "REPLY_WAIT", 5*time.Second, "how long a request waits for its reply before answering 202")
		readTimeout := s.Duration("read-timeout", "READ_TIMEOUT", 3*time.Second, "bound of each PostgreSQL read made for a request; past it 503 with Retry-After")
		inFlight := s.Int("max-in-flight", "MAX_IN_FLIGHT", 2048, "most commands this gateway waits on at once; past it 503 with Retry-After")
		rate := s.Int("rate-limit", "RATE_LIMIT", 2000, "most /v1 requests a second per tenant on this gateway; past it 429 (negative: no limit)")
		authConfig := authFlags(s.Flags)
		s.HealthAddr = addr // /healthz is served on the API's address
		return func(ctx context.Context, p service.Process) error {
			if e.Listener != nil {
				defer e.Listener.Close() // also when the gateway cannot start: its clients are refused, not left waiting
			}
			if *readTimeout <= 0 {
				return service.Usage(fmt.Errorf("read-timeout %s: want a positive duration", *readTimeout))
			}
			if *inFlight < 1 {
				return service.Usage(fmt.Errorf("max-in-flight %d: want at least 1", *inFlight))
			}
			verifier, err := auth.New(ctx, authConfig())
			if err != nil {
				return service.Usage(fmt.Errorf("authentication not configured: set AUTH_JWKS_FILE or AUTH_JWKS_URL, AUTH_ISSUER and AUTH_AUDIENCE: %w", err))
			}
			defer verifier.Close()
			pool, release, err := service.Database(ctx, e.Pool, *dsn, gatewayPool(*dsn))
			if err != nil {
				return err
			}
			defer release()
			gw, err := New(ctx, Config{
				InstanceID: *instance, Brokers: p.Brokers, TopicPrefix: p.TopicPrefix, Pool: pool,
				DefaultWait: *wait, MaxWait: max(*wait, 30*time.Second), MaxInFlight: *inFlight, ReadTimeout: *readTimeout, RateLimit: *rate, Auth: verifier, Logger: p.Log,
				ClientOpts: p.KafkaOpts,
			})
			if err != nil {
				return err
			}
			if e.Listener != nil {
				return ServeListener(ctx, gw, e.Listener)
			}
			return Serve(ctx, gw, *addr)
		}
	}}
}

// gatewayPool configures a gateway's own pool: more connections than pgx's
// default, and the tenant wall.
func gatewayPool(dsn string) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		if !strings.Contains(dsn, "pool_max_conns") {
			// pgx defaults to max(4, CPUs) connections; every request reads the
			// view or records a key, so a busy gateway needs more.
			cfg.MaxConns = 32
		}
		// Each connection names its request's tenant: on a role of the
		// gateway's own, PostgreSQL's row-level security then shows it that
		// tenant's rows only (database.GrantGateway).
		wall.Pool(cfg)
	}
}

// TenantWall puts the tenant wall on a pool's config (package wall): for a
// process that embeds gateways and hands them its pool (Embedded.Pool).
func TenantWall(cfg *pgxpool.Config) { wall.Pool(cfg) }

// WithTenant returns ctx naming tenant for the tenant wall, as the gateway
// names each authenticated request's.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return wall.WithTenant(ctx, tenant)
}

// authFlags defines the token verifier's settings; call the result after parsing.
func authFlags(f service.Flags) func() auth.Config {
	file := f.String("auth-jwks-file", "AUTH_JWKS_FILE", "", "JSON Web Key Set file of the token issuer's public keys (re-read when a token names an unknown key)")
	url := f.String("auth-jwks-url", "AUTH_JWKS_URL", "", "JSON Web Key Set URL of the token issuer (fetched at start, refreshed)")
	issuer := f.String("auth-issuer", "AUTH_ISSUER", "", "required iss of tokens")
	audience := f.String("auth-audience", "AUTH_AUDIENCE", "", "required aud of tokens")
	algs := f.String("auth-algorithms", "AUTH_ALGORITHMS", strings.Join(auth.DefaultAlgorithms, ","), "allowed signature algorithms (asymmetric only)")
	claim := f.String("auth-tenant-claim", "AUTH_TENANT_CLAIM", "tenant", "the claim that names the tenant")
	return func() auth.Config {
		return auth.Config{JWKSFile: *file, JWKSURL: *url, Issuer: *issuer, Audience: *audience,
			Algorithms: service.List(*algs), TenantClaim: *claim}
	}
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
