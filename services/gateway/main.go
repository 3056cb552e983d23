// Command gateway serves the REST API: it turns requests into commands and
// answers each with the reply derived by the read side.
//
// Configuration (environment, flags override): KAFKA_BROKERS, DATABASE_URL,
// TOPIC_PREFIX, HTTP_ADDR (default :8080), INSTANCE_ID (default
// "<host>-<random>": each instance has a reply topic of its own), REPLY_WAIT, RATE_LIMIT,
// METRICS_ADDR (Prometheus metrics at /metrics; default off).
//
// Authentication (required): AUTH_JWKS_FILE or AUTH_JWKS_URL (the issuer's
// public keys), AUTH_ISSUER, AUTH_AUDIENCE; optional AUTH_ALGORITHMS
// (comma-separated allow-list), AUTH_TENANT_CLAIM (default "tenant").
//
// Kafka TLS and SASL: KAFKA_TLS*, KAFKA_SASL_* (see service.KafkaSecurityConfig);
// PostgreSQL TLS: sslmode, sslrootcert, sslcert and sslkey in DATABASE_URL.
//
// On SIGTERM it stops accepting connections, lets in-flight requests finish,
// and deletes its reply topic; a second signal exits at once.
//
// `gateway healthcheck` probes a running instance's /healthz on HTTP_ADDR
// (the image's HEALTHCHECK).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/gateway/server"
)

func main() {
	service.Main(service.Binary{Name: "gateway", Setup: func(s *service.Setup) service.Run {
		dsn := s.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
		addr := s.String("http-addr", "HTTP_ADDR", ":8080", "HTTP listen address")
		instance := s.String("instance-id", "INSTANCE_ID", service.Hostname()+"-"+randomSuffix(), "this instance's name (its reply topic is replies.<name>)")
		wait := s.Duration("reply-wait", "REPLY_WAIT", 5*time.Second, "how long a request waits for its reply before answering 202")
		rate := s.Int("rate-limit", "RATE_LIMIT", 2000, "most /v1 requests a second per tenant on this gateway; past it 429 (negative: no limit)")
		authConfig := authFlags(s.Flags)
		s.HealthAddr = addr // /healthz is served on the API's address
		return func(ctx context.Context, p service.Process) error {
			verifier, err := auth.New(ctx, authConfig())
			if err != nil {
				return service.Usage(fmt.Errorf("authentication not configured: set AUTH_JWKS_FILE or AUTH_JWKS_URL, AUTH_ISSUER and AUTH_AUDIENCE: %w", err))
			}
			defer verifier.Close()
			return run(ctx, p, *dsn, *addr, *instance, *wait, *rate, verifier)
		}
	}})
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

func run(ctx context.Context, p service.Process, dsn, addr, instance string, wait time.Duration, rate int, verifier *auth.Verifier) error {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return service.Usage(err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgx defaults to max(4, CPUs) connections; every request reads the
		// view or records a key, so a busy gateway needs more.
		poolCfg.MaxConns = 32
	}
	// Each connection names its request's tenant: on a role of the
	// gateway's own, PostgreSQL's row-level security then shows it that
	// tenant's rows only (database.GrantGateway).
	server.TenantWall(poolCfg)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	gw, err := server.New(ctx, server.Config{
		InstanceID: instance, Brokers: p.Brokers, TopicPrefix: p.TopicPrefix, Pool: pool,
		DefaultWait: wait, MaxWait: max(wait, 30*time.Second), RateLimit: rate, Auth: verifier, Logger: p.Log,
		ClientOpts: p.KafkaOpts,
	})
	if err != nil {
		return err
	}
	return server.Serve(ctx, gw, addr)
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
